/** gRPC glue: unary replies, stream errors, passing upstream statuses through, peer addresses. */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '@swarmd/common/logger';
import { isSwarmError } from '@swarmd/common/errors';
import { toGrpcError } from '../ca/grpc-auth.js';
import { hostOf } from '../ca/cluster-ca.js';

/** The host part of a grpc-js peer string ("1.2.3.4:5678", "[::1]:5678", "ipv4:..."). */
export function peerHost(call: { getPeer(): string }): string {
  let p = '';
  try {
    p = call.getPeer();
  } catch {
    return '';
  }
  p = p.replace(/^(ipv4|ipv6):/, '');
  if (p.startsWith('unix:')) return '';
  return hostOf(p);
}

/** Runs a unary handler's promise and answers with its result or its error as a gRPC status. */
export function reply<T>(p: Promise<T>, cb: grpc.sendUnaryData<T>, log?: Logger, method?: string): void {
  p.then(
    (r) => cb(null, r),
    (err: unknown) => {
      if (!isSwarmError(err) && !isGrpcStatus(err)) log?.warn('unexpected error in a handler', { method, err });
      cb(isGrpcStatus(err) ? err : toGrpcError(err));
    },
  );
}

/** A gRPC status error (from a client call we made, e.g. forwarding): passed through unchanged. */
export interface GrpcStatusError extends Error {
  code: number;
  details: string;
  metadata?: grpc.Metadata;
}

export function isGrpcStatus(err: unknown): err is GrpcStatusError {
  return err instanceof Error && typeof (err as Partial<GrpcStatusError>).code === 'number' && typeof (err as Partial<GrpcStatusError>).details === 'string' && !isSwarmError(err);
}

/** A stream's end with an error (SwarmError or a gRPC status from upstream). */
export function streamError(err: unknown): Partial<grpc.StatusObject> & Error {
  if (isGrpcStatus(err)) return Object.assign(new Error(err.details), { code: err.code, details: err.details, ...(err.metadata ? { metadata: err.metadata } : {}) });
  return toGrpcError(err);
}
