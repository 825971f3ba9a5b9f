import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, describeError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { RaftMembershipClient, type RaftJoinResponse } from '@swarmd/proto';
import type { Clock } from '@swarmd/common/clock';

/**
 * A joining manager's side of RaftMembership.Join: calls `addr`, follows redirects to the leader,
 * and retries while no leader is known (UNAVAILABLE) until `timeoutMs` passes. Refusals
 * (PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION...) end it at once.
 */
export async function joinRaftGroup(opts: {
  addr: string;
  advertiseAddr: string;
  credentials: grpc.ChannelCredentials;
  clock: Clock;
  logger: Logger;
  timeoutMs?: number;
  signal?: AbortSignal;
}): Promise<RaftJoinResponse> {
  const deadline = opts.clock.now() + (opts.timeoutMs ?? 60_000);
  let target = opts.addr;
  let hops = 0;
  for (let attempt = 0; ; attempt++) {
    const client = new RaftMembershipClient(target, opts.credentials);
    try {
      const r = await new Promise<RaftJoinResponse>((resolve, reject) => {
        client.join({ addr: opts.advertiseAddr }, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err, res) => (err ? reject(err) : resolve(res)));
      });
      if (r.redirectAddr) {
        if (++hops > 5) throw new SwarmError(ErrorCode.UNAVAILABLE, `join: too many redirects (last to ${r.redirectAddr})`);
        opts.logger.info('join: redirected to the leader', { from: target, to: r.redirectAddr });
        target = r.redirectAddr;
        continue;
      }
      return r;
    } catch (err) {
      const code = (err as grpc.ServiceError).code;
      const retryable = code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED;
      if (!retryable || opts.clock.now() > deadline) {
        if (err instanceof SwarmError) throw err;
        throw new SwarmError(code === grpc.status.PERMISSION_DENIED ? ErrorCode.PERMISSION_DENIED : code === grpc.status.UNAUTHENTICATED ? ErrorCode.UNAUTHENTICATED : ErrorCode.UNAVAILABLE, `join: the manager at ${target} refused: ${(err as grpc.ServiceError).details ?? describeError(err)}`, { cause: err });
      }
      opts.logger.info('join: manager not ready; retrying', { target, error: (err as grpc.ServiceError).details ?? describeError(err) });
      if (attempt > 2) target = opts.addr;
      await opts.clock.sleep(Math.min(2000, 200 * (attempt + 1)), opts.signal);
    } finally {
      client.close();
    }
  }
}
