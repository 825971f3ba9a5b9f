/**
 * The checker of a service history (history.ts) against a final read of the store. Pure: a
 * history and a final state in, violations and counts out.
 *
 * What the control API promises, and so what is checked (e2e/README.md, "Jepsen-style checker"):
 * - Writes (create, update, scale, remove) are Raft log entries, checked again when applied and
 *   acknowledged once applied on the leader, so they take effect in one order, each between its
 *   call and its answer: a history of writes is linearizable. A write whose outcome is unknown may
 *   take effect at any time after its call, or never; one that failed definitely never does.
 * - Reads (`GetService`, `ListServices`) are served by the leader (followers forward them) after a
 *   ReadIndex round (controlapi/control.ts): it confirms with a majority that it still leads, then
 *   waits until it has applied up to the read index. A leader cut off, resumed from SIGSTOP or
 *   newly elected refuses the read (or a new leader answers it) rather than answer from an older
 *   state. So every read taken during the run must be linearizable with the writes and the final
 *   read: one that is not is a `not-linearizable` violation (`readsLinearizable`, the default;
 *   `readsLinearizable: false` only counts them in `staleReads`, for a control API without ReadIndex).
 * - The final read is taken once the faults have healed and the cluster has converged (every
 *   invariant held in two reads 3 s apart), so it is checked as a linearizable read after every
 *   operation.
 *
 * The properties, each a violation when broken:
 * - `lost-write`: per service, the acknowledged writes, the unknown ones (which may or may not
 *   have happened) and the final read must be linearizable as one register (Wing & Gong's search
 *   with Lowe's cache, raft-ts's checker): no acknowledged create, update, scale or remove is
 *   missing from (or undone in) the final state, unless a later write explains it.
 * - `duplicate`: one create (every attempt with one request id) makes at most one service: its
 *   acknowledgements name one id, the final state and every read show that id for the name, no
 *   two services share a name or a request id, and a retry is never refused as "already exists".
 * - `failed-write-applied`: a create whose attempts all failed definitely is in no read and not in
 *   the final state; the value of an update that failed definitely is seen nowhere (update values
 *   are unique per operation).
 * - `phantom-read`: a read shows a service whose create had not been called before the read
 *   returned, or a label or env value no write had been called to set by then.
 * - `not-linearizable` (unless `readsLinearizable: false`): a read taken during the run that fits
 *   no linearization of the writes and the final read (a stale read).
 */
import { checkOperations, type Model, type Operation } from 'raft-ts/testing/linearizability';
import { completedOps, type CompletedOp, type HistoryEvent, type Op, type ServiceView } from './history.js';

export type Property = 'lost-write' | 'duplicate' | 'failed-write-applied' | 'phantom-read' | 'not-linearizable';

export interface Violation {
  property: Property;
  service: string;
  message: string;
}

export interface FinalState {
  /** When it was read (after every operation's call). */
  time: number;
  /** Every service of the run present (an array: two of one name would be a duplicate). */
  services: (ServiceView & { name: string })[];
}

export interface CheckOptions {
  /** Fail reads taken during the run that are not linearizable (default true; false: counted only). */
  readsLinearizable?: boolean;
  /** Search steps per service before a linearizability answer is "undecided" (default 2,000,000). */
  maxSteps?: number;
}

export interface Counts {
  ops: number;
  ok: number;
  fail: number;
  unknown: number;
  reads: number;
  /** By operation: `create: 12 (10 ok, 1 fail, 1 unknown)`. */
  byKind: Record<string, { ok: number; fail: number; unknown: number }>;
}

export interface CheckResult {
  valid: boolean;
  violations: Violation[];
  counts: Counts;
  /** Reads taken during the run (each service a read shows, counted once per service). */
  readsChecked: number;
  /** Of those, reads that fit no linearization (a stale answer): violations unless readsLinearizable is false. */
  staleReads: number;
  /** A few of them, described. */
  staleExamples: string[];
  /** Services whose search ran out of steps (neither proved nor refuted). */
  undecided: string[];
}

/** The register of one service: absent (null) or the fields written. */
type State = { replicas: number; label: string; env: string } | null;
type Input = { kind: 'write'; op: Op; acked: boolean } | { kind: 'read'; view: ServiceView | null };
type Output = 'ok' | ServiceView | null;

const model: Model<State, Input, Output | undefined> = {
  partition: (ops) => [ops.slice()],
  init: () => null,
  step(state, input) {
    if (input.kind === 'read') {
      const v = input.view;
      if (v === null) return state === null ? state : undefined;
      return state !== null && state.replicas === v.replicas && state.label === v.label && state.env === v.env ? state : undefined;
    }
    const op = input.op;
    switch (op.f) {
      case 'create':
        // A create of a name that exists with this request id returns it (a retry): no change.
        return state ?? { replicas: op.global ? -1 : op.replicas, label: op.label, env: op.env };
      case 'remove':
        return null;
      case 'update':
      case 'scale': {
        // Acknowledged: the service was there. Unknown: on a missing service it did nothing.
        if (state === null) return input.acked ? undefined : null;
        if (op.f === 'scale') return { ...state, replicas: op.replicas };
        return op.field === 'label' ? { ...state, label: op.value } : { ...state, env: op.value };
      }
      case 'read':
        return state;
    }
  },
  stateKey: (s) => (s === null ? '-' : `${s.replicas}|${s.label}|${s.env}`),
};

const serviceOf = (op: Op): string | undefined => ('service' in op ? op.service : undefined);

function counts(ops: readonly CompletedOp[]): Counts {
  const byKind: Counts['byKind'] = {};
  const c: Counts = { ops: ops.length, ok: 0, fail: 0, unknown: 0, reads: 0, byKind };
  for (const o of ops) {
    const k = (byKind[o.op.f] ??= { ok: 0, fail: 0, unknown: 0 });
    const outcome = o.type === 'info' ? 'unknown' : o.type;
    c[outcome]++;
    k[outcome]++;
    if (o.op.f === 'read') c.reads++;
  }
  return c;
}

export function describeOp(o: CompletedOp): string {
  const op = o.op;
  const what =
    op.f === 'create'
      ? `create ${op.service} (request ${op.requestId.slice(0, 8)}, ${op.global ? 'global' : `${op.replicas} replicas`}, label ${op.label}, V=${op.env})`
      : op.f === 'update'
        ? `update ${op.service} ${op.field === 'label' ? 'label' : 'V'}=${op.value}`
        : op.f === 'scale'
          ? `scale ${op.service}=${op.replicas}`
          : op.f === 'remove'
            ? `remove ${op.service}`
            : `read ${op.service ?? '(ls)'}`;
  const outcome = o.type === 'ok' ? 'ok' : o.type === 'fail' ? `failed (${o.error ?? ''})` : `unknown (${o.error ?? ''})`;
  const span = `${o.call.toFixed(0)}–${o.ret === Infinity ? '∞' : o.ret.toFixed(0)} ms`;
  return `client ${o.process}: ${what}: ${outcome} [${span}]`;
}

const viewText = (v: ServiceView | null | undefined) => (v ? `${v.replicas} replicas, label ${v.label || '(none)'}, V=${v.env || '(none)'}` : 'absent');

/** Every read's view of each service it covers (a list covers every service of the run). */
function readViews(o: CompletedOp, names: readonly string[]): [string, ServiceView | null][] {
  if (o.type !== 'ok' || o.result?.f !== 'read') return [];
  const r = o.result;
  return r.complete ? names.map((n) => [n, r.services[n] ?? null]) : Object.entries(r.services);
}

/** Checks a history against the final state; see the file's comment for what each property means. */
export function check(events: readonly HistoryEvent[], final: FinalState, o: CheckOptions = {}): CheckResult {
  const ops = completedOps(events);
  const violations: Violation[] = [];
  const add = (property: Property, service: string, message: string) => violations.push({ property, service, message });
  const names = [...new Set([...ops.map((x) => serviceOf(x.op)).filter((n): n is string => n !== undefined), ...final.services.map((s) => s.name)])].sort();
  const finalOf = new Map<string, ServiceView & { name: string }>();
  for (const s of final.services) {
    const before = finalOf.get(s.name);
    if (before) add('duplicate', s.name, `two services named ${s.name} in the final state: ${before.id} and ${s.id}`);
    finalOf.set(s.name, s);
  }
  const byRequest = new Map<string, string>();
  for (const s of final.services) {
    if (!s.requestId) continue;
    const other = byRequest.get(s.requestId);
    if (other) add('duplicate', s.name, `services ${other} and ${s.name} were both made by create request ${s.requestId}`);
    byRequest.set(s.requestId, s.name);
  }
  let readsChecked = 0;
  let staleReads = 0;
  const staleExamples: string[] = [];
  const undecided: string[] = [];
  for (const name of names) {
    const mine = ops.filter((x) => serviceOf(x.op) === name);
    const writes = mine.filter((x) => x.op.f !== 'read');
    const creates = writes.filter((x): x is CompletedOp & { op: Extract<Op, { f: 'create' }> } => x.op.f === 'create');
    const reads = ops.flatMap((x) => readViews(x, names).filter(([n]) => n === name).map(([, v]) => ({ o: x, v })));
    const fin = finalOf.get(name) ?? null;

    // duplicate: one id per create, a retry never refused as existing
    const ackedIds = new Set(creates.filter((x) => x.type === 'ok' && x.result?.f === 'create').map((x) => (x.result as { id: string }).id));
    if (ackedIds.size > 1) add('duplicate', name, `the create of ${name} was acknowledged with ${ackedIds.size} different services: ${[...ackedIds].join(', ')}`);
    const id = [...ackedIds][0];
    if (id !== undefined) {
      if (fin && fin.id !== id) add('duplicate', name, `${name} is service ${fin.id} in the final state, but its create was acknowledged as ${id}`);
      for (const r of reads) if (r.v && r.v.id !== id) add('duplicate', name, `a read saw ${name} as service ${r.v.id}, but its create was acknowledged as ${id}: ${describeOp(r.o)}`);
    }
    const requestIds = new Set(creates.map((x) => x.op.requestId));
    if (fin && fin.requestId && requestIds.size && !requestIds.has(fin.requestId)) add('duplicate', name, `${name} in the final state was made by create request ${fin.requestId}, which no create of this run sent`);
    for (const x of creates) if (x.type === 'fail' && /already exists|already in use|ALREADY_EXISTS/i.test(x.error ?? '')) add('duplicate', name, `a create of ${name} was refused as already existing although only its own request id ever created that name (a retry must return the service): ${describeOp(x)}`);

    // failed-write-applied
    if (creates.length && creates.every((x) => x.type === 'fail')) {
      if (fin) add('failed-write-applied', name, `${name} is in the final state, but every create of it failed definitely: ${creates.map(describeOp).join('; ')}`);
      for (const r of reads) if (r.v) add('failed-write-applied', name, `a read saw ${name}, but every create of it failed definitely: ${describeOp(r.o)}`);
    }
    for (const x of writes) {
      if (x.type !== 'fail' || x.op.f !== 'update') continue;
      const { field, value } = x.op;
      const seen = (v: ServiceView | null | undefined) => !!v && (field === 'label' ? v.label : v.env) === value;
      if (seen(fin)) add('failed-write-applied', name, `the final state of ${name} has ${field} ${value}, written only by an update that failed definitely: ${describeOp(x)}`);
      for (const r of reads) if (seen(r.v)) add('failed-write-applied', name, `a read saw ${field} ${value} on ${name}, written only by an update that failed definitely: ${describeOp(x)}; the read: ${describeOp(r.o)}`);
    }

    // phantom-read: every value seen was asked for before the read returned (values of writes that
    // failed definitely are failed-write-applied above)
    for (const r of reads) {
      if (!r.v) continue;
      const before = writes.filter((x) => x.call <= r.o.ret);
      if (!before.some((x) => x.op.f === 'create')) {
        add('phantom-read', name, `a read saw ${name} before any create of it was called: ${describeOp(r.o)}`);
        continue;
      }
      const wrote = (field: 'label' | 'env', value: string) =>
        before.some((x) => (x.op.f === 'create' && x.op[field] === value) || (x.op.f === 'update' && x.op.field === field && x.op.value === value));
      if (!wrote('label', r.v.label)) add('phantom-read', name, `a read saw label ${r.v.label} on ${name}, which no write had been called to set: ${describeOp(r.o)}`);
      if (!wrote('env', r.v.env)) add('phantom-read', name, `a read saw V=${r.v.env} on ${name}, which no write had been called to set: ${describeOp(r.o)}`);
    }

    // lost-write: the writes (acknowledged and unknown) and the final read as one register
    const possible = writes.filter((x) => x.type !== 'fail');
    const toOp = (x: CompletedOp): Operation<Input, Output | undefined> => ({ clientId: x.process, input: { kind: 'write', op: x.op, acked: x.type === 'ok' }, output: x.type === 'ok' ? 'ok' : undefined, call: x.call, ret: x.ret });
    const base = [...possible.map(toOp), { clientId: -1, input: { kind: 'read' as const, view: fin }, output: fin, call: final.time, ret: final.time }];
    const hard = checkOperations(model, base, { maxSteps: o.maxSteps });
    if (hard.outcome === 'illegal') {
      const acked = writes.filter((x) => x.type === 'ok');
      add(
        'lost-write',
        name,
        `the final state of ${name} (${viewText(fin)}) follows from no order of its writes: acknowledged ${acked.length ? acked.map(describeOp).join('; ') : 'none'}${possible.length > acked.length ? `; unknown outcome: ${possible.filter((x) => x.type === 'info').map(describeOp).join('; ')}` : ''}`,
      );
      continue;
    }
    if (hard.outcome === 'unknown') {
      undecided.push(name);
      continue;
    }
    // reads taken during the run: added one at a time (by call); one that breaks the check is stale
    const accepted = [...base];
    for (const r of [...reads].sort((a, b) => a.o.call - b.o.call)) {
      readsChecked++;
      const candidate = [...accepted, { clientId: r.o.process, input: { kind: 'read' as const, view: r.v }, output: r.v, call: r.o.call, ret: r.o.ret }];
      const res = checkOperations(model, candidate, { maxSteps: o.maxSteps });
      if (res.outcome === 'illegal') {
        staleReads++;
        const text = `${name}: ${describeOp(r.o)} saw ${viewText(r.v)}`;
        if (staleExamples.length < 5) staleExamples.push(text);
        if (o.readsLinearizable !== false) add('not-linearizable', name, `a read fits no linearization of the writes of ${name}: ${text}`);
      } else if (res.outcome === 'unknown') {
        if (!undecided.includes(name)) undecided.push(name);
      } else accepted.push(candidate[candidate.length - 1]);
    }
  }
  return { valid: violations.length === 0, violations, counts: counts(ops), readsChecked, staleReads, staleExamples, undecided };
}

/** One line of figures: ops, ok, fail, unknown, reads checked, stale reads. */
export function summary(r: CheckResult): string {
  const c = r.counts;
  const kinds = Object.entries(c.byKind)
    .map(([k, v]) => `${k} ${v.ok + v.fail + v.unknown} (${v.ok} ok, ${v.fail} fail, ${v.unknown} unknown)`)
    .join(', ');
  return `${c.ops} ops: ${c.ok} ok, ${c.fail} fail, ${c.unknown} unknown [${kinds}]; ${r.readsChecked} reads checked, ${r.staleReads} stale; ${r.violations.length} violations${r.undecided.length ? `; undecided: ${r.undecided.join(', ')}` : ''}`;
}
