/**
 * A seeded chaos run: a 3+2 local cluster (managers' state dirs on small tmpfs), a steady stream
 * of service creates, scales and updates, and a schedule of faults drawn from the seed, one at a
 * time: each held for a while under the writes, healed, then every invariant checked (acknowledged
 * writes, slots, orphans) within a bound. On a failure the error carries the seed and the schedule
 * so the run replays (`npm run chaos -- --seed S --minutes M`). The writes between faults follow
 * their own seeded stream; how many land in each step depends on the machine's speed.
 */
import { Prng } from 'raft-ts/testing/prng';
import { startLocalCluster, type LocalCluster, type Scope } from '../cluster/local-cluster.js';
import { Faults, type Undo } from '../faults/faults.js';
import { converge } from '../invariants/invariants.js';
import { Ledger } from '../invariants/ledger.js';

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

/** A steady stream of writes (one at a time) from its own seeded stream, recorded in the ledger. */
class Writer {
  private readonly r: Prng;
  private next = 0;
  private version = 0;
  private stopped = true;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    seed: number,
    private readonly c: LocalCluster,
    readonly ledger: Ledger,
  ) {
    this.r = new Prng(seed ^ 0x5eed);
  }

  /** One write: create while there are few services, else scale or update one. */
  async one(): Promise<void> {
    const names = [...this.ledger.services.keys()];
    const replicated = [...this.ledger.services.values()].filter((s) => s.mode === 'replicated').map((s) => s.name);
    const roll = this.r.next();
    if (names.length < 2 || (names.length < 4 && roll < 0.15)) {
      const global = names.length > 0 && !names.some((n) => this.ledger.services.get(n)?.mode === 'global') && this.r.chance(0.3);
      await this.ledger.create(`s${++this.next}`, global ? 'global' : 'replicated', this.r.range(1, 3), this.c.image);
    } else if (roll < 0.6 && replicated.length) {
      await this.ledger.scale(replicated[this.r.int(replicated.length)], this.r.range(0, 5));
    } else {
      await this.ledger.update(names[this.r.int(names.length)], String(++this.version));
    }
  }

  start(): void {
    this.stopped = false;
    this.loop = (async () => {
      while (!this.stopped) {
        await this.one();
        await new Promise((res) => setTimeout(res, 500 + this.r.int(1500)));
      }
    })();
  }

  /** Stops after the write in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
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
  log: (line: string) => void;
}

export interface StepResult {
  step: Step;
  /** ms from the heal until every invariant held. */
  convergedMs: number;
  writes: number;
  failedWrites: number;
}

export interface ChaosReport {
  seed: number;
  steps: StepResult[];
  writes: number;
  failedWrites: number;
}

/** Runs the chaos for `minutes` (the step in progress finishes); throws with seed and schedule on a failure. */
export async function runChaos(scope: Scope, o: ChaosOptions): Promise<ChaosReport> {
  const boundS = o.boundS ?? 120;
  const plan = schedule(o.seed, { withKnownDefects: o.withKnownDefects ?? false });
  const done: StepResult[] = [];
  const replay = () => `seed ${o.seed} (replay: npm run chaos -- --seed ${o.seed} --minutes ${o.minutes}${o.withKnownDefects ? ' --with-known-defects' : ''}); schedule so far:\n${done.map((d, i) => `  ${i + 1}. ${describeStep(d.step)}: converged in ${(d.convergedMs / 1000).toFixed(1)} s`).join('\n')}`;
  const c = await startLocalCluster(scope, o.name ?? `chaos-${o.seed % 100000}`, o.net, 3, 2, { tmpfsStateDirs: MANAGERS });
  const faults = new Faults(scope, c);
  const ledger = new Ledger(c);
  const writer = new Writer(o.seed, c, ledger);
  o.log(`chaos: seed ${o.seed}, ${o.minutes} min, cluster ${c.name} on ${o.net}.0/24`);
  const deadline = Date.now() + o.minutes * 60_000;
  for (let i = 0; Date.now() < deadline; i++) {
    const step = plan[i % plan.length];
    const writesBefore = ledger.results.length;
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
      convergedMs = await converge(c, ledger, boundS);
    } catch (e) {
      throw new Error(`chaos step ${i + 1} (${describeStep(step)}): ${(e as Error).message}\n${replay()}`, { cause: e });
    }
    const stepWrites = ledger.results.slice(writesBefore);
    const result = { step, convergedMs, writes: stepWrites.length, failedWrites: stepWrites.filter((w) => !w.ok).length };
    done.push(result);
    o.log(`chaos: step ${i + 1}: ${describeStep(step)}: converged ${(convergedMs / 1000).toFixed(1)} s after the heal; ${result.writes} writes, ${result.failedWrites} failed${result.failedWrites ? ` (${stepWrites.filter((w) => !w.ok).map((w) => `${w.op}: ${w.message}`).join('; ').slice(0, 400)})` : ''}`);
  }
  return { seed: o.seed, steps: done, writes: ledger.results.length, failedWrites: ledger.results.filter((w) => !w.ok).length };
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
