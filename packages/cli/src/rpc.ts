import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';

type Unary = (req: unknown, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: unknown) => void) => grpc.ClientUnaryCall;

/**
 * A manager that knows no leader yet (an election is under way) refused the call before doing
 * anything: asking again is safe, so swarmctl does, until the call's deadline, instead of failing
 * the user's command during the second or two a failover takes.
 */
export function isNoLeaderYet(e: unknown): boolean {
  const se = e as Partial<grpc.ServiceError> | undefined;
  return se?.code === grpc.status.UNAVAILABLE && /no leader is known yet/.test(se.details ?? se.message ?? '');
}

/** Unary calls on a generated client as promises, each with a deadline of `timeoutMs`. */
export function unaryCaller(client: grpc.Client, timeoutMs: number): <Res>(method: string, req: unknown) => Promise<Res> {
  const methods = client as unknown as Record<string, Unary>;
  const once = <Res>(method: string, req: unknown, deadline: number): Promise<Res> =>
    new Promise((resolve, reject) => {
      methods[method].call(client, req, new grpc.Metadata(), { deadline }, (e, r) => (e ? reject(e) : resolve(r as Res)));
    });
  return async <Res>(method: string, req: unknown): Promise<Res> => {
    const deadline = Date.now() + timeoutMs;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1_000)) {
      try {
        return await once<Res>(method, req, deadline);
      } catch (e) {
        if (!isNoLeaderYet(e) || Date.now() + wait >= deadline) throw e;
        await sleep(wait);
      }
    }
  };
}
