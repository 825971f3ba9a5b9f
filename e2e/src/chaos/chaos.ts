/**
 * A seeded chaos run: a 3+2 local cluster (managers' state dirs on small tmpfs), concurrent
 * clients (jepsen/workload.ts) creating, updating, scaling, removing and reading services, and a
 * schedule of faults drawn from the seed, one at a time: each held for a while under the clients,
 * healed, then every invariant checked (the Jepsen checker's properties of the history so far
 * against the store, slots, orphans) within a bound; at the end the checker runs over the whole
 * history. On a failure the error carries the seed and the schedule so the run replays (`npm run
 * chaos -- --seed S --minutes M`). The clients follow their own seeded streams; how many
 * operations land in each step depends on the machine's speed.
 */
import { writeFile } from 'node:fs/promises';
import { Service } from '@swarmd/proto';
import { Prng } from 'raft-ts/testing/prng';
import { startLocalCluster, type Scope } from '../cluster/local-cluster.js';
import { Faults, type Undo } from '../faults/faults.js';
import { converge, snapshot, type Snapshot } from '../invariants/invariants.js';
import { check, summary, type CheckResult, type FinalState } from '../jepsen/checker.js';
import { completedOps, type HistoryEvent } from '../jepsen/history.js';
import { viewOf, Workload } from '../jepsen/workload.js';

export type FaultKind = 'kill-swarmd' | 'kill-host' | 'partition' | 'loss' | 'pause' | 'full-disk' | 'slow-link';
export const FAULT_KINDS: readonly FaultKind[] = ['kill-swarmd', 'kill-host', 'partition', 'loss', 'pause', 'full-disk', 'slow-link'];
/**
 * Faults of known defects, left out of a schedule unless asked for (`--with-known-defects`): none
 * now (a full state disk, once one, is survived: the manager refuses writes and recovers).
 */
export const KNOWN_DEFECTS: readonly FaultKind[] = [];

export interface Step {
  kind: FaultKind;
  /** Hosts the fault hits (m1, w2...). */
  hosts: string[];
  /** Loss percentage, or link rate in kbit/s. */
  amount?: number;
  /** Seconds the fault is held under the writes. */
  holdS: number;
}

const MANAGERS = ['m1', 'm2', 'm3'];
const HOSTS = [...MANAGERS, 'w1', 'w2'];

/** The fault schedule of a seed: enough steps for any run length (a run stops at its deadline). */
export function schedule(seed: number, o: { withKnownDefects?: boolean; steps?: number } = {}): Step[] {
  const r = new Prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[r.int(xs.length)];
  const kinds = FAULT_KINDS.filter((k) => o.withKnownDefects || !KNOWN_DEFECTS.includes(k));
  const out: Step[] = [];
  for (let i = 0; i < (o.steps ?? 200); i++) {
    const kind = pick(kinds);
    const holdS = r.range(5, 15);
    switch (kind) {
      case 'kill-swarmd':
      case 'kill-host':
        out.push({ kind, hosts: [pick(HOSTS)], holdS });
        break;
      case 'partition': {
        // one manager (the majority keeps serving), or one manager with a worker
        const side = [pick(MANAGERS), ...(r.chance(0.4) ? [pick(['w1', 'w2'])] : [])];
        out.push({ kind, hosts: side, holdS });
        break;
      }
      case 'loss':
        out.push({ kind, hosts: HOSTS, amount: pick([2, 5, 10, 20]), holdS });
        break;
      case 'pause':
      case 'full-disk':
        out.push({ kind, hosts: [pick(MANAGERS)], holdS });
        break;
      case 'slow-link':
        out.push({ kind, hosts: [pick(HOSTS)], amount: pick([256, 1024]), holdS });
        break;
    }
  }
  return out;
}

export function describeStep(s: Step): string {
  const amount = s.kind === 'loss' ? ` ${s.amount}%` : s.kind === 'slow-link' ? ` ${s.amount} kbit/s` : '';
  return `${s.kind}${amount} ${s.hosts.join('+')} for ${s.holdS} s`;
}

export async function applyFault(f: Faults, s: Step): Promise<Undo> {
  const host = s.hosts[0];
  switch (s.kind) {
    case 'kill-swarmd':
      return f.killSwarmd(host);
    case 'kill-host':
      return f.killHost(host);
    case 'partition':
      return f.partition(s.hosts);
    case 'loss':
      return f.loss(s.amount ?? 5);
    case 'pause':
      return f.pause(host);
    case 'full-disk':
      return f.fillDisk(host);
    case 'slow-link':
      return f.slowLink(host, s.amount ?? 256);
  }
}

export interface ChaosOptions {
  seed: number;
  minutes: number;
  /** First three octets of the cluster's /24. */
  net: string;
  name?: string;
  /** Seconds the cluster has to converge after each healed fault (default 120). */
  boundS?: number;
  /** Also draw the faults of KNOWN_DEFECTS. */
  withKnownDefects?: boolean;
  /** Concurrent clients (default 4). */
  clients?: number;
  /** Write the history there (JSON lines), whatever the outcome. */
  historyFile?: string;
  log: (line: string) => void;
}

export interface StepResult {
  step: Step;
  /** ms from the heal until every invariant held. */
  convergedMs: number;
  /** Operations completed in the step, and how they ended. */
  ops: number;
  ok: number;
  fail: number;
  unknown: number;
}

export interface ChaosReport {
  seed: number;
  steps: StepResult[];
  /** The Jepsen checker over the whole history and the final state. */
  check: CheckResult;
}

/** The run's services in a store read, as the checker's final state. */
export function finalOf(s: Snapshot, prefix: string, time: number): FinalState {
  const services = s.services.map((j) => viewOf(Service.fromJSON(j))).filter((v) => v.name.startsWith(prefix));
  return { time, services };
}

/** The checker's violations against a store read, one line each (what converge polls). */
function historyProblems(events: readonly HistoryEvent[], prefix: string, now: () => number): (s: Snapshot) => string[] {
  return (s) => check(events, finalOf(s, prefix, now())).violations.map((v) => `${v.property}: ${v.message}`);
}

/** Runs the chaos for `minutes` (the step in progress finishes); throws with seed and schedule on a failure. */
export async function runChaos(scope: Scope, o: ChaosOptions): Promise<ChaosReport> {
  const boundS = o.boundS ?? 120;
  const plan = schedule(o.seed, { withKnownDefects: o.withKnownDefects ?? false });
  const done: StepResult[] = [];
  const replay = () => `seed ${o.seed} (replay: npm run chaos -- --seed ${o.seed} --minutes ${o.minutes}${o.withKnownDefects ? ' --with-known-defects' : ''}); schedule so far:\n${done.map((d, i) => `  ${i + 1}. ${describeStep(d.step)}: converged in ${(d.convergedMs / 1000).toFixed(1)} s`).join('\n')}`;
  const c = await startLocalCluster(scope, o.name ?? `chaos-${o.seed % 100000}`, o.net, 3, 2, { tmpfsStateDirs: MANAGERS });
  const faults = new Faults(scope, c);
  const prefix = 'j';
  const now = () => performance.now();
  const clients = o.clients ?? 4;
  const writer = await Workload.open({ clients, seed: o.seed, contextPath: c.contextPath, image: c.image, prefix, now });
  scope.teardown(() => writer.close());
  const events = writer.recorder.events;
  if (o.historyFile) {
    const file = o.historyFile;
    scope.teardown(() => writeFile(file, writer.recorder.jsonLines()));
  }
  const written = historyProblems(events, prefix, now);
  o.log(`chaos: seed ${o.seed}, ${o.minutes} min, ${clients} clients, cluster ${c.name} on ${o.net}.0/24`);
  const deadline = Date.now() + o.minutes * 60_000;
  for (let i = 0; Date.now() < deadline; i++) {
    const step = plan[i % plan.length];
    const eventsBefore = events.length;
    writer.start();
    try {
      await new Promise((res) => setTimeout(res, 2000));
      const undo = await applyFault(faults, step);
      await new Promise((res) => setTimeout(res, step.holdS * 1000));
      await undo();
    } catch (e) {
      await writer.stop();
      throw new Error(`chaos step ${i + 1} (${describeStep(step)}) failed: ${(e as Error).message}\n${replay()}`, { cause: e });
    }
    await writer.stop();
    let convergedMs: number;
    try {
      convergedMs = await converge(c, written, boundS);
    } catch (e) {
      throw new Error(`chaos step ${i + 1} (${describeStep(step)}): ${(e as Error).message}\n${replay()}`, { cause: e });
    }
    // the clients stopped: every operation of the step has completed
    const stepOps = completedOps(events).filter((x) => x.index >= eventsBefore);
    const count = (type: string) => stepOps.filter((x) => x.type === type).length;
    const result = { step, convergedMs, ops: stepOps.length, ok: count('ok'), fail: count('fail'), unknown: count('info') };
    done.push(result);
    const failed = stepOps.filter((x) => x.type !== 'ok').map((x) => `${x.op.f} ${'service' in x.op ? (x.op.service ?? '') : ''}: ${x.type === 'info' ? 'unknown' : 'failed'}: ${x.error ?? ''}`);
    o.log(`chaos: step ${i + 1}: ${describeStep(step)}: converged ${(convergedMs / 1000).toFixed(1)} s after the heal; ${result.ops} ops, ${result.ok} ok, ${result.fail} failed, ${result.unknown} unknown${failed.length ? ` (${failed.join('; ').slice(0, 400)})` : ''}`);
  }
  // the last converge found every invariant holding: this read is the final state
  const result = check(events, finalOf(await snapshot(c), prefix, now()));
  o.log(`chaos: checker: ${summary(result)}`);
  for (const v of result.violations) o.log(`chaos: checker: ${v.property}: ${v.message}`);
  for (const x of result.staleExamples) o.log(`chaos: checker: stale read: ${x}`);
  return { seed: o.seed, steps: done, check: result };
}

/** A Scope for a run outside ava: teardowns run last first by `close`. */
export class RunScope implements Scope {
  passed = false;
  private readonly fns: (() => void | Promise<void>)[] = [];
  constructor(private readonly out: (line: string) => void) {}
  teardown(fn: () => void | Promise<void>): void {
    this.fns.push(fn);
  }
  log(...values: unknown[]): void {
    this.out(values.map(String).join(' '));
  }
  async close(): Promise<void> {
    for (const fn of this.fns.reverse()) await Promise.resolve(fn()).catch((e: Error) => this.out(`teardown: ${e.message}`));
  }
}
