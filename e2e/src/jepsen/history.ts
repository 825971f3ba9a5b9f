/**
 * A Jepsen-style history of operations on services through the control API: each operation is an
 * `invoke` event followed by one completion: `ok` (acknowledged), `fail` (definitely not applied)
 * or `info` (outcome unknown: it may or may not have been applied, now or later). An operation
 * still pending when the history is read counts as `info`. Time comes from the caller (any
 * monotonic clock in ms), so the recorder is pure and the checker's tests build histories by hand.
 */

/** What the checker sees of a service: the fields the workload writes. */
export interface ServiceView {
  id: string;
  /** Replicas of a replicated service; -1 for a global one. */
  replicas: number;
  /** The value of the service label `LABEL` ('' when unset). */
  label: string;
  /** The value of env `V` in the task spec ('' when unset). */
  env: string;
  /** `Service.create_request_id`: the request id of the create that made it. */
  requestId: string;
}

/** The label the workload's updates set. */
export const LABEL = 'jepsen';

export type Op =
  | { f: 'create'; service: string; requestId: string; replicas: number; label: string; env: string; global?: boolean }
  | { f: 'update'; service: string; field: 'label' | 'env'; value: string }
  | { f: 'scale'; service: string; replicas: number }
  | { f: 'remove'; service: string }
  /** `service inspect` of one service (`service`), or `service ls` of the run's services (none). */
  | { f: 'read'; service?: string };

export type OpResult =
  | { f: 'create'; id: string }
  /**
   * What a read saw, by service name: a view, or null for "not there". An inspect names one
   * service; a list (`complete`) says of every other service of the run that it was not there.
   */
  | { f: 'read'; services: Record<string, ServiceView | null>; complete: boolean }
  | { f: 'done' };

export type EventType = 'invoke' | 'ok' | 'fail' | 'info';

export interface HistoryEvent {
  /** Position in the history. */
  index: number;
  type: EventType;
  /** The client (Jepsen's process). */
  process: number;
  /** ms on the recorder's clock. */
  time: number;
  op: Op;
  result?: OpResult;
  /** Why it failed, or why its outcome is unknown. */
  error?: string;
}

/** One operation with its completion: call and ret times (ret Infinity when the outcome is unknown). */
export interface CompletedOp {
  process: number;
  op: Op;
  type: 'ok' | 'fail' | 'info';
  result?: OpResult;
  error?: string;
  call: number;
  ret: number;
  /** Index of the invoke event. */
  index: number;
}

export interface Pending {
  ok(result?: OpResult): void;
  fail(error: string): void;
  info(error: string): void;
}

export class Recorder {
  readonly events: HistoryEvent[] = [];
  private readonly open = new Set<number>();

  constructor(private readonly now: () => number) {}

  /** Records the invocation; the returned handle records its one completion (a second is an error). */
  invoke(process: number, op: Op): Pending {
    if (this.open.has(process)) throw new Error(`history: client ${process} invoked ${op.f} with an operation still pending (a client runs one at a time)`);
    this.open.add(process);
    this.push({ type: 'invoke', process, op });
    let done = false;
    const complete = (type: 'ok' | 'fail' | 'info', extra: { result?: OpResult; error?: string }) => {
      if (done) throw new Error(`history: client ${process}'s ${op.f} of ${'service' in op ? op.service : 'services'} completed twice`);
      done = true;
      this.open.delete(process);
      this.push({ type, process, op, ...extra });
    };
    return {
      ok: (result = { f: 'done' }) => complete('ok', { result }),
      fail: (error) => complete('fail', { error }),
      info: (error) => complete('info', { error }),
    };
  }

  private push(e: Omit<HistoryEvent, 'index' | 'time'>): void {
    this.events.push({ index: this.events.length, time: this.now(), ...e });
  }

  /** The history as JSON lines (one event a line), for a file beside a failed run. */
  jsonLines(): string {
    return this.events.map((e) => JSON.stringify(e)).join('\n') + '\n';
  }
}

/**
 * Pairs each invoke with its completion. An invoke with none (the run stopped meanwhile) is
 * `info`; `info` operations get ret = Infinity (they may take effect at any time after the call).
 * A completion without an invoke, or a second invoke of a client with one pending, is an error.
 */
export function completedOps(events: readonly HistoryEvent[]): CompletedOp[] {
  const pending = new Map<number, HistoryEvent>();
  const out: CompletedOp[] = [];
  const close = (inv: HistoryEvent, type: CompletedOp['type'], ret: number, e?: HistoryEvent) =>
    out.push({ process: inv.process, op: inv.op, type, call: inv.time, ret: type === 'info' ? Infinity : ret, index: inv.index, ...(e?.result ? { result: e.result } : {}), ...(e?.error ? { error: e.error } : {}) });
  for (const e of events) {
    if (e.type === 'invoke') {
      if (pending.has(e.process)) throw new Error(`history: event ${e.index}: client ${e.process} invoked an operation while another was pending`);
      pending.set(e.process, e);
      continue;
    }
    const inv = pending.get(e.process);
    if (!inv) throw new Error(`history: event ${e.index}: a ${e.type} of client ${e.process} with no operation pending`);
    pending.delete(e.process);
    close(inv, e.type, e.time, e);
  }
  for (const inv of pending.values()) close(inv, 'info', Infinity, { ...inv, error: 'still pending when the history ended' });
  return out.sort((a, b) => a.index - b.index);
}
