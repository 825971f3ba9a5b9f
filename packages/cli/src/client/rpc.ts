/**
 * Unary calls to the managers as promises, moving to another manager when the one asked cannot
 * take the call (see `unaryCaller`), and the read-then-write retry on conflicts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { ErrorCode, ErrorReason, REASON_METADATA_KEY, SwarmError, grpcStatusOf } from '@swarmd/common/errors';

/** A generated client's unary method, in its (request, metadata, options, callback) form. */
type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: Res) => void) => grpc.ClientUnaryCall;
/** The names of a client's unary methods (streams and grpc.Client's own methods left out). */
export type UnaryName<C> = { [K in keyof C]: C[K] extends Unary<never, unknown> ? K : never }[keyof C] & string;
export type RequestOf<C, M extends keyof C> = C[M] extends Unary<infer Req, unknown> ? Req : never;
export type ResponseOf<C, M extends keyof C> = C[M] extends Unary<never, infer Res> ? Res : never;

/** Why a manager refused a call, when it said so (the `swarmd-reason` trailer): never read from the message. */
export function refusalReason(e: unknown): string | undefined {
  const md = (e as { metadata?: Partial<grpc.Metadata> } | undefined)?.metadata;
  const v = typeof md?.get === 'function' ? md.get(REASON_METADATA_KEY)[0] : undefined;
  return typeof v === 'string' ? v : undefined;
}

/**
 * A manager that knows no leader yet (an election is under way) refused the call before doing
 * anything (UNAVAILABLE with the NO_LEADER reason): asking again is safe.
 */
export function isNoLeaderYet(e: unknown): boolean {
  return codeOf(e) === grpc.status.UNAVAILABLE && refusalReason(e) === ErrorReason.NO_LEADER;
}

/** A write that raced another (a stale version: ABORTED). */
export function isConflict(e: unknown): boolean {
  return codeOf(e) === grpcStatusOf.CONFLICT;
}

function codeOf(e: unknown): number | undefined {
  return (e as { code?: number } | undefined)?.code;
}

/** Reads and writes again while the write raced another (ABORTED), up to `attempts` times in all. */
export async function retryOnConflict<T>(readAndWrite: () => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readAndWrite();
    } catch (e) {
      if (!isConflict(e) || attempt >= attempts) throw e;
    }
  }
}

/**
 * What to do after a failed attempt:
 * - `again`: the manager (or the cluster) is between leaders: NO_LEADER, LEADER_CHANGED,
 *   OUTCOME_UNKNOWN. Ask again (the next manager first), with a short backoff, until the deadline.
 * - `elsewhere`: this manager cannot take calls now: NO_QUORUM (it is in a minority),
 *   STATE_DISK_UNWRITABLE (its state disk is full or failing; it resumes on its own), a
 *   connection that failed, was reset or went silent (keepalive), an attempt past its own
 *   deadline. Ask the other managers; when every one failed this way, fail at once.
 * - `final`: the answer (an error of the call itself): give it to the caller.
 */
export type AttemptVerdict = 'again' | 'elsewhere' | 'final';

export function verdictOf(e: unknown, attemptTimedOut: boolean): AttemptVerdict {
  const code = codeOf(e);
  if (code === grpc.status.DEADLINE_EXCEEDED) return attemptTimedOut ? 'elsewhere' : 'final';
  if (code !== grpc.status.UNAVAILABLE) return 'final';
  const reason = refusalReason(e);
  if (reason === ErrorReason.NO_LEADER || reason === ErrorReason.LEADER_CHANGED || reason === ErrorReason.OUTCOME_UNKNOWN) return 'again';
  // Every manager shares the external store: another one cannot do better.
  if (reason === ErrorReason.STORE_UNAVAILABLE) return 'final';
  return 'elsewhere';
}

/** Errors of calls that may have been applied (an attempt's outcome was unknown): see mayHaveBeenApplied. */
const maybeApplied = new WeakSet<object>();

function markMaybeApplied<E>(e: E): E {
  if (typeof e === 'object' && e !== null) maybeApplied.add(e);
  return e;
}

/**
 * Whether a call that failed with `e` (thrown by a `unaryCaller` call) may have been applied: an
 * attempt's outcome was unknown (OUTCOME_UNKNOWN, a connection lost or an attempt past its
 * deadline after the request was sent), even when a later attempt got a definite answer (a
 * NOT_FOUND after the service was removed meanwhile). False: nothing was applied (every attempt
 * was refused before anything was done, or the call itself was refused). For the e2e history
 * recorder, which marks such calls as unknown outcomes.
 */
export function mayHaveBeenApplied(e: unknown): boolean {
  return typeof e === 'object' && e !== null && maybeApplied.has(e);
}

/** Whether a failed attempt may have been applied (a retry of a write must then be safe). */
export function outcomeUnknown(e: unknown, attemptTimedOut: boolean): boolean {
  const code = codeOf(e);
  if (code === grpc.status.DEADLINE_EXCEEDED) return attemptTimedOut;
  if (code !== grpc.status.UNAVAILABLE) return false;
  const reason = refusalReason(e);
  if (reason === ErrorReason.OUTCOME_UNKNOWN) return true;
  if (reason !== undefined) return false; // refused before anything was done
  // A connection that never opened sent nothing.
  return !/ECONNREFUSED|ENOENT|EACCES|No connection established|failed to connect/i.test(detailsOf(e));
}

function detailsOf(e: unknown): string {
  const x = e as { details?: string; message?: string } | undefined;
  return (x?.details || x?.message || String(e)).replace(/\s*Resolution note:.*$/s, '').trim();
}

/** One line on what an attempt got from a manager, for the message when none could take the call. */
export function attemptLine(e: unknown, attemptTimedOut: boolean, attemptMs: number): string {
  const d = detailsOf(e);
  if (attemptTimedOut) return `did not answer within ${(attemptMs / 1000).toFixed(0)} s (paused, overloaded or cut off?)`;
  if (codeOf(e) !== grpc.status.UNAVAILABLE || refusalReason(e)) return d;
  if (/ECONNRESET|Connection dropped|GOAWAY|RST_STREAM|socket hang up/i.test(d)) return `closed the connection (${d}): it stopped or restarted`;
  if (/keepalive|ping/i.test(d)) return `stopped answering (no reply to keepalive pings: paused or cut off?)`;
  const sock = /connect (ENOENT|ECONNREFUSED|EACCES) (\S+)/.exec(d);
  if (sock) {
    return sock[1] === 'EACCES'
      ? `cannot connect: permission denied (the control socket is root's: use sudo, or --host IP:PORT with an admin certificate)`
      : `cannot connect (${sock[1]}): is swarmd running there?`;
  }
  return d;
}

/** A manager swarmctl may ask, and how to name it in messages. */
export interface Endpoint<C> {
  label: string;
  client(): C;
}

/** How long a connection may take to open (the HTTP/2 handshake) before the manager is taken as silent. */
export const CONNECT_MS = 2_000;

/**
 * Waits for a client's channel to connect: `ready`; `failed` when the connection fails (the call
 * then fails at once with the reason); `silent` when it neither connects nor fails by `deadline`
 * (a paused process accepts the connection but never completes the handshake).
 */
export async function channelReadiness(client: grpc.Client, deadline: number): Promise<'ready' | 'failed' | 'silent'> {
  const ch = client.getChannel();
  for (let state = ch.getConnectivityState(true); ; state = ch.getConnectivityState(true)) {
    if (state === grpc.connectivityState.READY) return 'ready';
    if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) return 'failed';
    const changed = await new Promise<boolean>((resolve) => ch.watchConnectivityState(state, deadline, (e) => resolve(!e)));
    if (!changed) return 'silent';
  }
}

export interface CallOptions {
  /**
   * The longest one attempt may take before swarmctl asks another manager (default: `attemptMs`
   * of the caller). A manager that accepts connections but never answers (paused) is also caught
   * by keepalive pings within ~3 s.
   */
  attemptMs?: number;
  /**
   * A remove whose earlier attempt may have been applied (an unknown outcome) and whose retry
   * finds nothing (NOT_FOUND) is done: the earlier attempt removed it.
   */
  notFoundAfterUnknownIsDone?: boolean;
  /** A write that must not be repeated once its outcome is unknown: fail saying so instead. */
  unsafeToRepeat?: boolean;
}

/** Options of unaryCaller. */
export interface CallerOptions {
  /** The deadline of a whole call, retries included. */
  timeoutMs: number;
  /** The deadline of one attempt on one manager (default 6 s). */
  attemptMs?: number;
  /** Told which endpoint answered (the index in the list). */
  onAnswer?: (index: number) => void;
}

/**
 * Unary calls over a list of managers (the first that answered last is asked first). Every
 * attempt has its own deadline; a failed attempt is judged by `verdictOf`: asked again (the next
 * manager first) while the managers are between leaders, another manager asked when this one
 * cannot take calls, the answer returned otherwise. Writes are safe to ask again: creates carry a
 * request id, updates the version they read, removes treat NOT_FOUND after an unknown outcome as
 * done (packages/cli/README.md, "Failover").
 */
export function unaryCaller<C extends grpc.Client>(endpoints: readonly Endpoint<C>[], o: CallerOptions) {
  let current = 0;
  const defaultAttemptMs = o.attemptMs ?? 6_000;
  const once = <Req, Res>(client: C, method: Unary<Req, Res>, req: Req, deadline: number): Promise<Res> =>
    new Promise((resolve, reject) => {
      method.call(client, req, new grpc.Metadata(), { deadline }, (e, r) => (e ? reject(e) : resolve(r)));
    });
  return async <M extends UnaryName<C>>(name: M, req: RequestOf<C, M>, co: CallOptions = {}): Promise<ResponseOf<C, M>> => {
    const deadline = Date.now() + o.timeoutMs;
    const attemptMs = co.attemptMs ?? defaultAttemptMs;
    const down = new Map<number, string>(); // endpoints that cannot take calls now, and why
    const last = new Map<number, string>();
    let unknown = false;
    let lastErr: unknown;
    /** One attempt on endpoint i: the answer, or what to do next and the line to report. */
    const attempt = async (i: number): Promise<{ answer: ResponseOf<C, M> } | { verdict: AttemptVerdict; line: string }> => {
      const ep = endpoints[i];
      const attemptDeadline = Math.min(deadline, Date.now() + attemptMs);
      if ((await channelReadiness(ep.client(), Math.min(attemptDeadline, Date.now() + CONNECT_MS))) === 'silent') {
        return { verdict: 'elsewhere', line: `does not complete a connection within ${CONNECT_MS / 1000} s (paused, overloaded or cut off?)` };
      }
      try {
        return { answer: await once(ep.client(), ep.client()[name] as Unary<RequestOf<C, M>, ResponseOf<C, M>>, req, attemptDeadline) };
      } catch (e) {
        const timedOut = codeOf(e) === grpc.status.DEADLINE_EXCEEDED && attemptDeadline < deadline;
        if (unknown && co.notFoundAfterUnknownIsDone && codeOf(e) === grpc.status.NOT_FOUND) return { answer: {} as ResponseOf<C, M> };
        const verdict = verdictOf(e, timedOut);
        if (verdict === 'final') {
          // The call's own deadline passed: say what the managers did meanwhile (the attempt in
          // flight may have been applied).
          if (codeOf(e) === grpc.status.DEADLINE_EXCEEDED) throw markMaybeApplied(gaveUp(name, o.timeoutMs, endpoints, last, e));
          throw unknown ? markMaybeApplied(e) : e;
        }
        lastErr = e;
        unknown ||= outcomeUnknown(e, timedOut);
        const line = attemptLine(e, timedOut, attemptMs);
        if (unknown && co.unsafeToRepeat) {
          throw markMaybeApplied(
            new SwarmError(
              ErrorCode.UNAVAILABLE,
              `${ep.label}: ${line}; the call (${name}) may or may not have been applied and is not safe to repeat: check, then run it again if needed`,
              { cause: e, details: { summary: true } },
            ),
          );
        }
        return { verdict, line };
      }
    };
    const failed = (err: SwarmError) => (unknown ? markMaybeApplied(err) : err);
    for (let wait = 100; ; ) {
      const i = current;
      const r = await attempt(i);
      if ('answer' in r) {
        o.onAnswer?.(i);
        return r.answer;
      }
      last.set(i, r.line);
      if (r.verdict === 'elsewhere') down.set(i, r.line);
      else down.delete(i);
      if (down.size === endpoints.length) throw failed(gaveUp(name, undefined, endpoints, last, lastErr));
      // The next manager that is not down; after a whole round without an answer, wait a little.
      let next = i;
      do next = (next + 1) % endpoints.length;
      while (down.has(next));
      if (next <= i) {
        if (Date.now() + wait >= deadline) throw failed(gaveUp(name, o.timeoutMs, endpoints, last, lastErr));
        await sleep(wait);
        wait = Math.min(wait * 2, 1_000);
      }
      current = next;
      if (Date.now() >= deadline) throw failed(gaveUp(name, o.timeoutMs, endpoints, last, lastErr));
    }
  };
}

/** The error of a call no manager could take: what each manager asked last said. */
function gaveUp(method: string, timeoutMs: number | undefined, endpoints: readonly Endpoint<unknown>[], last: Map<number, string>, cause: unknown): SwarmError {
  const each = [...last].map(([i, line]) => `${endpoints[i].label}: ${line}`);
  const head =
    timeoutMs !== undefined
      ? `no manager answered within ${(timeoutMs / 1000).toFixed(0)} s (${method})`
      : endpoints.length === 1
        ? 'manager unavailable'
        : `none of the ${endpoints.length} managers can take the call (${method})`;
  const minority = [...last.values()].some((l) => /in a minority/.test(l));
  const hint = minority && endpoints.length === 1 ? ' (give --host another manager, or use a context file listing every manager)' : '';
  return new SwarmError(ErrorCode.UNAVAILABLE, `${head}${each.length ? `: ${each.join('; ')}` : ''}${hint}`, { cause, details: { summary: true } });
}
