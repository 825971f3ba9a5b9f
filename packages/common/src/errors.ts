/**
 * Errors that carry a code and a cause. Codes follow gRPC's status codes so that the RPC edge can
 * map an error to a status 1:1 (and back), as containerd's errdefs do; nothing else in the code
 * base needs to know about gRPC.
 */
export const ErrorCode = {
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  /** A write raced another (stale version): retry with fresh data. */
  CONFLICT: 'CONFLICT',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  UNAVAILABLE: 'UNAVAILABLE',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  CANCELLED: 'CANCELLED',
  DATA_LOSS: 'DATA_LOSS',
  INTERNAL: 'INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** gRPC status numbers of each code (see @grpc/grpc-js `status`). */
export const grpcStatusOf: Readonly<Record<ErrorCode, number>> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  FAILED_PRECONDITION: 9,
  CONFLICT: 10, // ABORTED
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
  INTERNAL: 13,
};

export function errorCodeOfGrpcStatus(status: number): ErrorCode {
  for (const [code, n] of Object.entries(grpcStatusOf)) if (n === status) return code as ErrorCode;
  return ErrorCode.INTERNAL;
}

export interface SwarmErrorOptions {
  cause?: unknown;
  /** Structured facts about the failure (a field path, a file and offset...). */
  details?: Record<string, unknown>;
}

export class SwarmError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: SwarmErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SwarmError';
    this.code = code;
    this.details = options.details ?? {};
  }

  /** The message followed by the chain of causes: "a: b: c". */
  fullMessage(): string {
    return describeError(this);
  }
}

export const invalidArgument = (msg: string, o?: SwarmErrorOptions) => new SwarmError(ErrorCode.INVALID_ARGUMENT, msg, o);
export const notFound = (msg: string, o?: SwarmErrorOptions) => new SwarmError(ErrorCode.NOT_FOUND, msg, o);
export const alreadyExists = (msg: string, o?: SwarmErrorOptions) => new SwarmError(ErrorCode.ALREADY_EXISTS, msg, o);
export const failedPrecondition = (msg: string, o?: SwarmErrorOptions) => new SwarmError(ErrorCode.FAILED_PRECONDITION, msg, o);
/**
 * Why a call was refused, when a client should act on it: carried beside the status code (the
 * RPC edge sends it as the `swarmd-reason` trailer), so clients never match message text.
 */
export const ErrorReason = {
  /** This manager knows no leader yet (an election is under way): nothing was done; the same call may be retried. */
  NO_LEADER: 'NO_LEADER',
  /**
   * This manager has known no leader for longer than an election takes: it is cut off from the
   * majority of the managers (or the cluster lost its quorum). Nothing was done; ask another manager.
   */
  NO_QUORUM: 'NO_QUORUM',
  /** Leadership moved before the write was proposed: nothing was done; the same call may be retried. */
  LEADER_CHANGED: 'LEADER_CHANGED',
  /**
   * The write may or may not have been applied (leadership was lost after it was proposed, or the
   * leader stopped answering a forwarded call): retry only what is safe to repeat (a request id, a
   * version), or read to find out.
   */
  OUTCOME_UNKNOWN: 'OUTCOME_UNKNOWN',
  /**
   * This manager restarted with autolock on and waits for its unlock key (`swarmctl swarm
   * unlock`): nothing was done; another manager may take the call.
   */
  LOCKED: 'LOCKED',
  /**
   * The cluster's external store (etcd) does not answer: nothing was done. Every manager shares
   * it, so another manager cannot take the call either; retry once etcd is back.
   */
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  /**
   * This manager cannot write its state disk (full, out of quota or failing): nothing was done.
   * It stays a member and resumes once the disk takes writes; another manager may take the call.
   */
  STATE_DISK_UNWRITABLE: 'STATE_DISK_UNWRITABLE',
} as const;
export type ErrorReason = (typeof ErrorReason)[keyof typeof ErrorReason];
/** The gRPC metadata key that carries an ErrorReason. */
export const REASON_METADATA_KEY = 'swarmd-reason';

/** UNAVAILABLE because no leader is known yet: safe to retry. */
export const noLeaderYet = (msg: string, o?: SwarmErrorOptions) =>
  new SwarmError(ErrorCode.UNAVAILABLE, msg, { ...o, details: { ...o?.details, reason: ErrorReason.NO_LEADER } });

/** UNAVAILABLE: this manager has had no leader for a while (it is in a minority): ask another manager. */
export const noQuorum = (msg: string, o?: SwarmErrorOptions) =>
  new SwarmError(ErrorCode.UNAVAILABLE, msg, { ...o, details: { ...o?.details, reason: ErrorReason.NO_QUORUM } });

/** UNAVAILABLE: the external store (etcd) does not answer; nothing was done. */
export const storeUnavailable = (msg: string, o?: SwarmErrorOptions) =>
  new SwarmError(ErrorCode.UNAVAILABLE, msg, { ...o, details: { ...o?.details, reason: ErrorReason.STORE_UNAVAILABLE } });

/** UNAVAILABLE: the write may or may not have been applied. */
export const outcomeUnknown = (msg: string, o?: SwarmErrorOptions) =>
  new SwarmError(ErrorCode.UNAVAILABLE, msg, { ...o, details: { ...o?.details, reason: ErrorReason.OUTCOME_UNKNOWN } });

/** The reason a SwarmError carries in its details, if any. */
export function reasonOf(err: unknown): ErrorReason | undefined {
  if (!(err instanceof SwarmError)) return undefined;
  const r = err.details.reason;
  return typeof r === 'string' && (Object.values(ErrorReason) as string[]).includes(r) ? (r as ErrorReason) : undefined;
}

export const unavailable = (msg: string, o?: SwarmErrorOptions) => new SwarmError(ErrorCode.UNAVAILABLE, msg, o);
export const internal = (msg: string, o?: SwarmErrorOptions) => new SwarmError(ErrorCode.INTERNAL, msg, o);

export function isSwarmError(err: unknown, code?: ErrorCode): err is SwarmError {
  return err instanceof SwarmError && (code === undefined || err.code === code);
}

/** Wraps any thrown value with a code and context, keeping it as the cause. */
export function wrapError(code: ErrorCode, message: string, cause: unknown, details?: Record<string, unknown>): SwarmError {
  return new SwarmError(code, `${message}: ${messageOf(cause)}`, { cause, ...(details ? { details } : {}) });
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** "outer: inner: innermost", without repeating a cause already folded into the message. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && depth < 10; depth++) {
    const msg = messageOf(cur);
    if (!parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join(': ');
}
