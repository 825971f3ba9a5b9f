import { status } from '@grpc/grpc-js';
import { isSwarmError, describeError, grpcStatusOf } from '@swarmd/common/errors';

/** Short reasons for the gRPC codes a manager answers with. */
const REASONS: Record<number, string> = {
  [status.CANCELLED]: 'cancelled',
  [status.UNKNOWN]: 'error',
  [status.INVALID_ARGUMENT]: 'invalid argument',
  [status.DEADLINE_EXCEEDED]: 'timed out',
  [status.NOT_FOUND]: 'not found',
  [status.ALREADY_EXISTS]: 'already exists',
  [status.PERMISSION_DENIED]: 'permission denied',
  [status.RESOURCE_EXHAUSTED]: 'resource exhausted',
  [status.FAILED_PRECONDITION]: 'failed precondition',
  [status.ABORTED]: 'conflict (changed meanwhile, try again)',
  [status.OUT_OF_RANGE]: 'out of range',
  [status.UNIMPLEMENTED]: 'not supported by this manager',
  [status.INTERNAL]: 'internal error',
  [status.UNAVAILABLE]: 'manager unavailable',
  [status.DATA_LOSS]: 'data loss',
  [status.UNAUTHENTICATED]: 'not authenticated',
};

export function reasonOfCode(code: number): string {
  return REASONS[code] ?? `gRPC status ${code}`;
}

interface GrpcLikeError {
  code: number;
  details?: string;
  message: string;
}

function isGrpcError(e: unknown): e is GrpcLikeError {
  return e instanceof Error && typeof (e as Partial<GrpcLikeError>).code === 'number' && 'metadata' in e;
}

/** The one line `swarmctl: …` says about a failure. */
export function errorLine(e: unknown): string {
  if (isGrpcError(e)) {
    // grpc-js appends resolver notes to connection failures; they say nothing useful here.
    let details = (e.details ?? '').replace(/\s*Resolution note:.*$/s, '').trim();
    // grpc-js lists its internals after the time ("Deadline exceeded after 59.998s,LB pick: …").
    details = details.replace(/^Deadline exceeded after ([\d.]+)s.*$/s, (_m, secs: string) => `no answer within ${Math.round(Number(secs))} s`);
    const sock = /connect (ENOENT|ECONNREFUSED|EACCES) (\S+)/.exec(details);
    if (e.code === (status.UNAVAILABLE as number) && sock) {
      const path = sock[2].replace(/\.$/, '');
      details =
        sock[1] === 'EACCES'
          ? `cannot connect to ${path}: permission denied (the control socket is root's: use sudo, or --host IP:PORT with an admin certificate)`
          : `cannot connect to ${path} (${sock[1]}): is swarmd running there?`;
    }
    return `${reasonOfCode(e.code)}${details ? `: ${details}` : ''}`;
  }
  if (isSwarmError(e)) {
    const code = grpcStatusOf[e.code];
    // A summary (e.g. what each manager answered when none could take a call) says it all.
    if (e.details.summary === true) return e.message;
    const msg = e.fullMessage();
    const plain: number[] = [status.INVALID_ARGUMENT, status.NOT_FOUND, status.FAILED_PRECONDITION, status.INTERNAL];
    return plain.includes(code)
      ? msg
      : `${reasonOfCode(code)}: ${msg}`;
  }
  return describeError(e);
}

/** A bad command line found by a handler before it sends anything (printed with a --help hint). */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}
