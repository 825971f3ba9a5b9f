/**
 * `swarmd --metrics-addr HOST:PORT`: Prometheus text at http://HOST:PORT/metrics (prom-client).
 * The instruments updated as things happen are in @swarmd/common's metrics; this module adds the
 * gauges read from state at scrape time: on managers the cluster as the store has it (nodes,
 * tasks, services, leader flag, Raft term and indexes); on every node the tasks running and each
 * task container's CPU and memory from its cgroup.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import { SwarmError, ErrorCode, describeError } from '@swarmd/common/errors';
import { metricsRegistry } from '@swarmd/common/metrics';
import type { Logger } from '@swarmd/common/logger';
import { NodeState, TaskState } from '@swarmd/proto';
import type { Manager } from '@swarmd/manager';
import { nodeStateName, taskStateName } from '@swarmd/manager/events/derive';
import { readCgroupStats, type ContainerInfo } from '@swarmd/runtime';
import { LABEL_SERVICE_NAME, LABEL_TASK } from '@swarmd/node-agent';

/** What the scrape-time gauges read: the daemon's current manager (if any) and its containers. */
export interface MetricsSources {
  manager(): Manager | undefined;
  /** This node's containers (undefined: the node runs no tasks). */
  containers(): Promise<ContainerInfo[]> | undefined;
  hostname: string;
}

const TASK_STATES = (Object.values(TaskState) as unknown[]).filter((v): v is TaskState => typeof v === 'number' && v >= 0);
const NODE_STATES = (Object.values(NodeState) as unknown[]).filter((v): v is NodeState => typeof v === 'number' && v >= 0);

let registered = false;

/** Registers the scrape-time gauges on the process registry (once per process). */
export function registerStateMetrics(src: MetricsSources): void {
  if (registered) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, 'metrics: the state gauges are registered already in this process');
  registered = true;
  const registers = [metricsRegistry];
  // The process (prom-client's default set names some gauges *_total, which promtool refuses).
  new Gauge({
    name: 'swarmd_process_resident_memory_bytes',
    help: 'Resident memory of the swarmd process',
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'swarmd_process_heap_used_bytes',
    help: 'V8 heap in use by the swarmd process',
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Counter({
    name: 'swarmd_process_cpu_seconds_total',
    help: 'CPU time (user and system) used by the swarmd process',
    registers,
    collect() {
      const u = process.cpuUsage();
      this.reset();
      this.inc((u.user + u.system) / 1e6);
    },
  });
  new Gauge({
    name: 'swarmd_process_start_time_seconds',
    help: 'When the swarmd process started (unix seconds)',
    registers,
  }).set(Math.round(Date.now() / 1000 - process.uptime()));
  new Gauge({
    name: 'swarmd_manager_leader',
    help: '1 on the manager that is the Raft leader, 0 on other managers and on workers',
    registers,
    collect() {
      this.set(src.manager()?.isLeader() ? 1 : 0);
    },
  });
  const raftGauge = (name: string, help: string, pick: (s: ReturnType<NonNullable<Manager['raft']>['status']>) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const m = src.manager();
        this.set(m?.raft ? pick(m.raft.status()) : 0); // 0 too on an etcd-backed manager
      },
    });
  raftGauge('swarmd_raft_term', 'The current Raft term of this manager (0 on workers)', (s) => s.term);
  raftGauge('swarmd_raft_commit_index', 'The highest Raft log index known committed by this manager', (s) => s.commit);
  raftGauge('swarmd_raft_applied_index', 'The highest Raft log index applied to the store of this manager', (s) => s.applied);
  new Gauge({
    name: 'swarmd_raft_state_disk_unwritable',
    help: "1 while this manager's state disk refuses Raft's writes (full, out of quota or failing: it acknowledges and accepts no write until they succeed again), else 0",
    registers,
    collect() {
      this.set(src.manager()?.raft?.diskError ? 1 : 0);
    },
  });
  /** A gauge of objects by state: every state present, 0 for those no object is in. */
  const byState = (name: string, help: string, all: readonly string[], states: (m: Manager) => string[]) =>
    new Gauge({
      name,
      help,
      labelNames: ['state'] as const,
      registers,
      collect() {
        this.reset();
        const m = src.manager();
        if (!m) return;
        const counts = new Map<string, number>(all.map((s) => [s, 0]));
        for (const k of states(m)) counts.set(k, (counts.get(k) ?? 0) + 1);
        for (const [state, v] of counts) this.set({ state }, v);
      },
    });
  byState(
    'swarmd_nodes',
    'Nodes of the cluster by state (unknown, down, ready, disconnected), as the store has them (managers only)',
    NODE_STATES.map(nodeStateName),
    (m) => m.store.view((tx) => tx.find('node')).map((n) => nodeStateName(n.status?.state)),
  );
  byState(
    'swarmd_tasks',
    'Tasks of the cluster by observed state (new, pending, ..., running, ..., failed), as the store has them (managers only)',
    TASK_STATES.map(taskStateName),
    (m) => m.store.view((tx) => tx.find('task')).map((t) => taskStateName(t.status?.state)),
  );
  new Gauge({
    name: 'swarmd_services',
    help: 'Services of the cluster (managers only)',
    registers,
    collect() {
      this.reset();
      const m = src.manager();
      if (m) this.set(m.store.view((tx) => tx.find('service')).length);
    },
  });

  // Per node: task containers and their cgroup usage; one read of the containers per scrape.
  let scrape: Promise<TaskUsage[]> | undefined;
  const usage = (): Promise<TaskUsage[]> => (scrape ??= taskUsage(src).finally(() => setTimeout(() => (scrape = undefined), 100)));
  new Gauge({
    name: 'swarmd_node_tasks_running',
    help: 'Task containers running on this node',
    registers,
    async collect() {
      this.reset();
      if (src.containers() === undefined) return;
      this.set((await usage()).length);
    },
  });
  const labelNames = ['service', 'task', 'node'] as const;
  new Counter({
    name: 'swarmd_task_cpu_seconds_total',
    help: "CPU time used by a task's container, all CPUs (cgroup cpuacct / cpu.stat)",
    labelNames,
    registers,
    async collect() {
      this.reset();
      for (const u of await usage()) this.inc(u.labels, u.cpuSeconds);
    },
  });
  new Gauge({
    name: 'swarmd_task_memory_usage_bytes',
    help: "Memory used by a task's container, without inactive file cache (as docker stats)",
    labelNames,
    registers,
    async collect() {
      this.reset();
      for (const u of await usage()) this.set(u.labels, u.memoryBytes);
    },
  });
}

interface TaskUsage {
  labels: { service: string; task: string; node: string };
  cpuSeconds: number;
  memoryBytes: number;
}

async function taskUsage(src: MetricsSources): Promise<TaskUsage[]> {
  const list = (await src.containers()) ?? [];
  const out: TaskUsage[] = [];
  for (const c of list) {
    const task = c.spec.labels?.[LABEL_TASK];
    if (c.status !== 'running' || !task) continue;
    const s = await readCgroupStats(c.cgroupsPath).catch(() => undefined);
    if (!s) continue;
    out.push({ labels: { service: c.spec.labels?.[LABEL_SERVICE_NAME] ?? '', task, node: src.hostname }, cpuSeconds: s.cpuUsageNs / 1e9, memoryBytes: s.memoryBytes });
  }
  return out;
}

/** Serves the registry at http://addr/metrics until closed. */
export async function serveMetrics(addr: string, logger: Logger): Promise<Server> {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(addr.slice(i + 1));
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    metricsRegistry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metricsRegistry.contentType }).end(text),
      (err: unknown) => {
        logger.warn('metrics scrape failed', { error: describeError(err) });
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics: ${describeError(err)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new SwarmError(ErrorCode.UNAVAILABLE, `--metrics-addr ${addr}: cannot listen: ${describeError(err)}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  logger.info('metrics served', { url: `http://${addr}/metrics` });
  return server;
}
