/**
 * Concurrent clients against a cluster's control API, each recording what it does in one
 * history (history.ts): service creates (with a request id; asked again with the same id after an
 * unknown outcome, and now and then after an acknowledgement, as a retry whose answer was lost), updates of a label or of env V (a unique value per operation, sent with the
 * version read: a read-modify-write asked again on a conflict), scales, removes, and reads
 * (inspect, ls). Each client talks to the managers through swarmctl's own client (`connectControl`:
 * it moves between the managers of the context as swarmctl does), starting at a different manager.
 * Its choices come from its own seeded stream; how many operations land depends on the machine.
 */
import { ErrorCode, SwarmError, grpcStatusOf } from '@swarmd/common';
import { connectControl, resolveConnection, type Connection, type Control } from '@swarmd/cli';
import { isConflict, mayHaveBeenApplied } from '@swarmd/cli/client/rpc';
import { ServiceSpec, UpdateConfig, type Service } from '@swarmd/proto';
import { Prng } from 'raft-ts/testing/prng';
import type { FinalState } from './checker.js';
import { LABEL, Recorder, type Op, type Pending, type ServiceView } from './history.js';

export interface WorkloadOptions {
  /** How many clients (each one operation at a time). */
  clients: number;
  seed: number;
  /** The context file listing every manager (`local up` writes it). */
  contextPath: string;
  image: string;
  /** Service names start with it (`j` → j0-1, j2-5...). */
  prefix?: string;
  /** ms between a client's operations (uniform in [min, max]). */
  pauseMs?: [number, number];
  /** ms on one clock for every event (default performance.now). */
  now?: () => number;
}

/** The checker's view of a service as the control API returns it. */
export function viewOf(s: Service): ServiceView & { name: string } {
  const mode = s.spec?.mode;
  const env = s.spec?.task?.container?.env.find((e) => e.startsWith('V='))?.slice(2) ?? '';
  return {
    name: s.spec?.annotations?.name ?? s.id,
    id: s.id,
    replicas: mode?.$case === 'replicated' ? Number(mode.replicated.replicas) : -1,
    label: s.spec?.annotations?.labels[LABEL] ?? '',
    env,
    requestId: s.createRequestId,
  };
}

const line = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 300);

/**
 * gRPC codes a manager answers only for a call it refused before applying anything: invalid
 * argument, not found, already exists, permission denied, failed precondition, aborted (out of
 * sequence), unauthenticated. INTERNAL or UNKNOWN (a handler that threw) may follow an applied
 * write: the e2e run found updates applied and then answered INTERNAL.
 */
const REFUSALS = new Set([3, 5, 6, 7, 9, 10, 16]);

/**
 * How a failed call ends in the history: `fail` (definitely not applied) for a refusal (above)
 * or swarmctl's "no manager could take the call" when no attempt may have been applied; `info`
 * (unknown outcome) for everything else, and whenever swarmctl's client says an attempt may have
 * been applied.
 */
export function outcomeOf(e: unknown): 'fail' | 'info' {
  if (mayHaveBeenApplied(e)) return 'info';
  if (e instanceof SwarmError) return e.code === ErrorCode.UNAVAILABLE || REFUSALS.has(grpcStatusOf[e.code]) ? 'fail' : 'info';
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' && REFUSALS.has(code) ? 'fail' : 'info';
}

const isNotFound = (e: unknown) => (e as { code?: unknown }).code === 5 || (e instanceof SwarmError && e.code === ErrorCode.NOT_FOUND);

/** A connection asking the context's managers starting at the `first`-th. */
function rotated(conn: Connection, first: number): Connection {
  const all = [conn, ...(conn.alternates ?? [])].map((c) => ({ ...c, alternates: undefined }));
  const k = first % all.length;
  const order = [...all.slice(k), ...all.slice(0, k)];
  return { ...order[0], alternates: order.slice(1) };
}

export class Workload {
  readonly recorder: Recorder;
  /** Services whose create was acknowledged and that no acknowledged remove took away. */
  private readonly pool = new Set<string>();
  private readonly globals = new Set<string>();
  private readonly controls: Control[] = [];
  private loops: Promise<void>[] = [];
  private stopped = true;
  private readonly prefix: string;
  private readonly now: () => number;

  private constructor(
    private readonly o: WorkloadOptions,
    conn: Connection,
  ) {
    this.prefix = o.prefix ?? 'j';
    this.now = o.now ?? (() => performance.now());
    this.recorder = new Recorder(this.now);
    for (let i = 0; i < o.clients; i++) this.controls.push(connectControl(rotated(conn, i)));
  }

  static async open(o: WorkloadOptions): Promise<Workload> {
    return new Workload(o, await resolveConnection({ context: o.contextPath }, {}));
  }

  /** Starts every client (again after a stop: the names and counters go on). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loops = this.controls.map((ctl, i) => this.loop(i, ctl));
  }

  /** Stops after each client's operation in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  close(): void {
    for (const c of this.controls) c.close();
  }

  /** The run's services now, as a final read for the checker (through the first client). */
  async finalState(): Promise<FinalState> {
    const services = await this.controls[0].listServices({ namePrefixes: [this.prefix] });
    return { time: this.now(), services: services.map(viewOf) };
  }

  private readonly rngs = new Map<number, Prng>();
  private readonly counters = new Map<number, number>();

  private async loop(client: number, ctl: Control): Promise<void> {
    let r = this.rngs.get(client);
    if (!r) this.rngs.set(client, (r = new Prng((this.o.seed * 7919 + client * 104729) >>> 0)));
    const [lo, hi] = this.o.pauseMs ?? [300, 1500];
    while (!this.stopped) {
      await this.one(client, ctl, r);
      await new Promise((res) => setTimeout(res, lo + r.int(hi - lo + 1)));
    }
  }

  private next(client: number): number {
    const n = (this.counters.get(client) ?? 0) + 1;
    this.counters.set(client, n);
    return n;
  }

  /** One operation, chosen from the client's stream. */
  private async one(client: number, ctl: Control, r: Prng): Promise<void> {
    const names = [...this.pool].sort();
    const roll = r.next();
    if (names.length < 3 || (names.length < 6 && roll < 0.12)) return this.create(client, ctl, r);
    const name = names[r.int(names.length)];
    const value = `c${client}.${this.next(client)}`;
    const kind = r.next();
    if (kind < 0.25) return this.update(client, ctl, { f: 'update', service: name, field: 'label', value });
    if (kind < 0.35) return this.update(client, ctl, { f: 'update', service: name, field: 'env', value });
    if (kind < 0.55 && !this.globals.has(name)) return this.update(client, ctl, { f: 'scale', service: name, replicas: r.int(4) });
    if (kind < 0.62 && names.length > 3) return this.remove(client, ctl, name);
    return this.read(client, ctl, r.chance(0.6) ? name : undefined);
  }

  /** A create, asked again with the same request id after an unknown outcome (up to 3 attempts). */
  private async create(client: number, ctl: Control, r: Prng): Promise<void> {
    const n = this.next(client);
    const name = `${this.prefix}${client}-${n}`;
    // one global service in a run: client 0's first
    const global = client === 0 && n === 1;
    const requestId = `${name}-${r.int(0x7fffffff).toString(16)}-${r.int(0x7fffffff).toString(16)}`;
    const op: Extract<Op, { f: 'create' }> = { f: 'create', service: name, requestId, replicas: 1 + r.int(2), label: `c${client}.${n}`, env: `c${client}.${n}`, ...(global ? { global } : {}) };
    const spec = ServiceSpec.fromPartial({
      annotations: { name, labels: { [LABEL]: op.label } },
      task: { container: { image: this.o.image, env: [`V=${op.env}`] } },
      mode: global ? { $case: 'global', global: {} } : { $case: 'replicated', replicated: { replicas: op.replicas } },
      update: UpdateConfig.fromPartial({ parallelism: 0 }),
    });
    for (let attempt = 1; attempt <= 3 && !(attempt > 1 && this.stopped); attempt++) {
      const p = this.recorder.invoke(client, op);
      try {
        const made = await ctl.createService(spec, true, requestId);
        p.ok({ f: 'create', id: made.service.id });
        // Now and then the same create again, as a client whose answer was lost would send it:
        // the manager must answer with the same service (the checker compares the ids). Before
        // the other clients know the service (a remove in between would let it be made again).
        if (r.chance(0.3)) await this.resend(client, ctl, op, spec);
        this.pool.add(name);
        if (global) this.globals.add(name);
        return;
      } catch (e) {
        if (outcomeOf(e) === 'fail') return p.fail(line(e));
        p.info(line(e));
      }
    }
  }

  /** A create asked again with its request id after it was acknowledged (a retry whose answer was lost). */
  private async resend(client: number, ctl: Control, op: Extract<Op, { f: 'create' }>, spec: ServiceSpec): Promise<void> {
    const p = this.recorder.invoke(client, op);
    try {
      p.ok({ f: 'create', id: (await ctl.createService(spec, true, op.requestId)).service.id });
    } catch (e) {
      this.finish(p, e, false);
    }
  }

  /**
   * An update of a label or V, or a scale: read, change, write with the version read; on a
   * conflict read and write again (5 attempts). After an attempt whose outcome was unknown, a read
   * that shows the operation's own (unique) value means that attempt was applied: done, not
   * written twice.
   */
  private async update(client: number, ctl: Control, op: Extract<Op, { f: 'update' | 'scale' }>): Promise<void> {
    const p = this.recorder.invoke(client, op);
    let maybe = false;
    const applied = (v: ServiceView) => op.f === 'update' && (op.field === 'label' ? v.label : v.env) === op.value;
    try {
      for (let attempt = 1; ; attempt++) {
        const svc = await ctl.getService(op.service);
        if (maybe && applied(viewOf(svc))) return p.ok();
        const spec = ServiceSpec.fromPartial(structuredClone(svc.spec!));
        if (op.f === 'scale') spec.mode = { $case: 'replicated', replicated: { replicas: op.replicas } };
        else if (op.field === 'label') spec.annotations!.labels[LABEL] = op.value;
        else spec.task!.container!.env = [...spec.task!.container!.env.filter((e) => !e.startsWith('V=')), `V=${op.value}`];
        try {
          await ctl.updateService({ serviceId: svc.id, version: svc.meta!.version, spec, noResolveImage: true });
          return p.ok();
        } catch (e) {
          maybe ||= mayHaveBeenApplied(e);
          if (!isConflict(e) || attempt >= 5) throw e;
        }
      }
    } catch (e) {
      this.finish(p, e, maybe);
    }
  }

  private async remove(client: number, ctl: Control, name: string): Promise<void> {
    const p = this.recorder.invoke(client, { f: 'remove', service: name });
    try {
      const svc = await ctl.getService(name);
      await ctl.removeService(svc.id);
      p.ok();
      this.pool.delete(name);
      this.globals.delete(name);
    } catch (e) {
      this.finish(p, e, false);
      if (isNotFound(e) && !mayHaveBeenApplied(e)) this.pool.delete(name);
    }
  }

  /** `service inspect NAME`, or `service ls` of the run's services. */
  private async read(client: number, ctl: Control, name: string | undefined): Promise<void> {
    const p = this.recorder.invoke(client, name === undefined ? { f: 'read' } : { f: 'read', service: name });
    try {
      if (name === undefined) {
        const all = (await ctl.listServices({ namePrefixes: [this.prefix] })).map(viewOf);
        return p.ok({ f: 'read', services: Object.fromEntries(all.map((v) => [v.name, v])), complete: true });
      }
      try {
        const v = viewOf(await ctl.getService(name));
        // an inspect by name could match another service by id prefix: only an exact name counts
        return p.ok({ f: 'read', services: { [name]: v.name === name ? v : null }, complete: false });
      } catch (e) {
        if (isNotFound(e)) return p.ok({ f: 'read', services: { [name]: null }, complete: false });
        throw e;
      }
    } catch (e) {
      p.fail(line(e)); // a read that failed changed nothing
    }
  }

  private finish(p: Pending, e: unknown, maybe: boolean): void {
    if (maybe || outcomeOf(e) === 'info') p.info(line(e));
    else p.fail(line(e));
  }
}
