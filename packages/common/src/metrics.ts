/**
 * The process's Prometheus metrics (prom-client): one registry per swarmd process, served on
 * `swarmd --metrics-addr`. The instruments that code updates as things happen live here, so
 * every name is in one place (`swarmd_` prefix, base units in the name: seconds, bytes);
 * gauges read from state at scrape time (nodes by state, raft indexes, per-task cgroup usage)
 * are registered by the composition root (packages/swarmd) on the same registry.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const metricsRegistry = new Registry();

const fast = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const slow = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The instruments updated by managers and agents (no-ops when nobody scrapes). */
export const metrics = {
  raftProposalSeconds: new Histogram({
    name: 'swarmd_raft_proposal_duration_seconds',
    help: 'Time from proposing a store entry to Raft until it is committed and applied locally (leader)',
    labelNames: ['result'] as const,
    buckets: fast,
    registers: [metricsRegistry],
  }),
  storeLinearizableReadSeconds: new Histogram({
    name: 'swarmd_store_linearizable_read_duration_seconds',
    help: 'One linearizable read round of the control API (raft: a ReadIndex heartbeat round, then applied up to the read index; etcd: a linearizable etcd read, then applied up to it); concurrent reads share a round',
    labelNames: ['result'] as const,
    buckets: fast,
    registers: [metricsRegistry],
  }),
  storeTransactionSeconds: new Histogram({
    name: 'swarmd_store_transaction_duration_seconds',
    help: 'Time a store write transaction takes, from staging to applied (leader)',
    labelNames: ['result'] as const,
    buckets: fast,
    registers: [metricsRegistry],
  }),
  schedulerDecisions: new Counter({
    name: 'swarmd_scheduler_decisions_total',
    help: 'Scheduling decisions by result: assigned (a node was chosen) or unschedulable (left pending with a reason)',
    labelNames: ['result'] as const,
    registers: [metricsRegistry],
  }),
  schedulerDelaySeconds: new Histogram({
    name: 'swarmd_scheduler_delay_seconds',
    help: 'Time from a task being created to its assignment to a node',
    buckets: slow,
    registers: [metricsRegistry],
  }),
  dispatcherSessions: new Gauge({
    name: 'swarmd_dispatcher_sessions',
    help: 'Agent sessions open on this manager',
    registers: [metricsRegistry],
  }),
  dispatcherHeartbeats: new Counter({
    name: 'swarmd_dispatcher_heartbeats_total',
    help: 'Agent heartbeats received by this manager',
    registers: [metricsRegistry],
  }),
  dispatcherHeartbeatGapPeriods: new Histogram({
    name: 'swarmd_dispatcher_heartbeat_gap_periods',
    help: 'Time between two heartbeats of a node, in heartbeat periods (1: on time; a node is DOWN at 3)',
    buckets: [1.05, 1.1, 1.25, 1.5, 2, 2.5, 3],
    registers: [metricsRegistry],
  }),
  containerStarts: new Counter({
    name: 'swarmd_container_starts_total',
    help: 'Container starts on this node by result (ok, error)',
    labelNames: ['result'] as const,
    registers: [metricsRegistry],
  }),
  containerStartSeconds: new Histogram({
    name: 'swarmd_container_start_duration_seconds',
    help: 'Time to start a container: runc start until it runs, or, for one created and started by a single runc run, its whole create',
    buckets: fast,
    registers: [metricsRegistry],
  }),
  imagePulls: new Counter({
    name: 'swarmd_image_pulls_total',
    help: 'Image pulls on this node by result (ok, error); an image already present is not pulled',
    labelNames: ['result'] as const,
    registers: [metricsRegistry],
  }),
  imagePullSeconds: new Histogram({
    name: 'swarmd_image_pull_duration_seconds',
    help: 'Time to get an image (pull, or find it present)',
    labelNames: ['result'] as const,
    buckets: slow,
    registers: [metricsRegistry],
  }),
};

/** Seconds since `start` (a performance.now() reading). */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}

/** Times `fn` into a histogram with a result label of ok or error. */
export async function timed<T>(h: Histogram<'result'>, fn: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    const r = await fn();
    h.observe({ result: 'ok' }, secondsSince(start));
    return r;
  } catch (err) {
    h.observe({ result: 'error' }, secondsSince(start));
    throw err;
  }
}
