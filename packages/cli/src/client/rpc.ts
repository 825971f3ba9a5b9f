import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { ErrorReason, REASON_METADATA_KEY, grpcStatusOf } from '@swarmd/common';

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
 * anything (UNAVAILABLE with the NO_LEADER reason): asking again is safe, so swarmctl does, until
 * the call's deadline, instead of failing the user's command during the second or two a failover
 * takes.
 */
export function isNoLeaderYet(e: unknown): boolean {
  return (e as { code?: number } | undefined)?.code === grpc.status.UNAVAILABLE && refusalReason(e) === ErrorReason.NO_LEADER;
}

/** A write that raced another (a stale version: ABORTED). */
export function isConflict(e: unknown): boolean {
  return (e as { code?: number } | undefined)?.code === grpcStatusOf.CONFLICT;
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
 * Unary calls on a generated client as promises, each with a deadline of `timeoutMs`, asked again
 * while no leader is known (see isNoLeaderYet) until that deadline.
 */
export function unaryCaller<C extends grpc.Client>(client: C, timeoutMs: number) {
  const once = <Req, Res>(method: Unary<Req, Res>, req: Req, deadline: number): Promise<Res> =>
    new Promise((resolve, reject) => {
      method.call(client, req, new grpc.Metadata(), { deadline }, (e, r) => (e ? reject(e) : resolve(r)));
    });
  return async <M extends UnaryName<C>>(name: M, req: RequestOf<C, M>): Promise<ResponseOf<C, M>> => {
    const method = client[name] as Unary<RequestOf<C, M>, ResponseOf<C, M>>;
    const deadline = Date.now() + timeoutMs;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        return await once(method, req, deadline);
      } catch (e) {
        if (!isNoLeaderYet(e) || Date.now() + wait >= deadline) throw e;
        await sleep(wait);
      }
    }
  };
}
