/**
 * Followers forward calls to the leader (SwarmKit's raft proxy): one client per leader address,
 * dialled with this manager's certificate and checking the leader holds a manager certificate;
 * a call is forwarded at most once (a forwarded call that reaches another follower is refused
 * with NO_LEADER, which clients retry).
 *
 * What a follower answers when it cannot forward, each with a reason clients act on
 * (`swarmd-reason`, common/errors.ts), never after the caller's whole deadline:
 * - no leader known: NO_LEADER (an election is under way), or NO_QUORUM once it has known none
 *   for longer than an election takes (`minorityAfterMs`): it is cut off from the majority;
 * - the leader changed, or stopped answering (HTTP/2 keepalive: a leader cut off or paused),
 *   while a call was forwarded: OUTCOME_UNKNOWN (the call may or may not have been applied);
 * - the leader could not be reached at all: LEADER_CHANGED (nothing was sent).
 * Answers of the leader itself (statuses with or without a reason) pass through unchanged.
 */
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, REASON_METADATA_KEY, noLeaderYet, noQuorum, outcomeUnknown, storeUnavailable, ErrorReason } from '@swarmd/common/errors';
import { expectServerRole } from '../ca/grpc-auth.js';
import { CertRole } from '../ca/roles.js';

/** Metadata a follower sets when it forwards a call, so a call is forwarded at most once. */
export const FORWARDED_HEADER = 'swarm-forwarded-by';

/** How often a forwarded unary call checks that the leader it went to is still the leader. */
const LEADER_CHECK_MS = 200;

/**
 * Channel options to the leader: keepalive pings while calls are in flight, so a leader that is
 * cut off or paused (SIGSTOP: it still accepts connections) fails the forwarded calls in ~3 s.
 */
export const FORWARD_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 1_000,
  'grpc.keepalive_timeout_ms': 2_000,
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
  'grpc.enable_retries': 0,
};

/** One method of a generated service definition, as forwarding needs it. */
export interface MethodDef<Req, Res> {
  path: string;
  requestSerialize: (v: Req) => Buffer;
  responseDeserialize: (b: Buffer) => Res;
}

type IncomingCall = { metadata: grpc.Metadata; getDeadline?(): grpc.Deadline };

/** What forwarding reads from a service's deps (ServiceDeps has all of it). */
export interface LeaderForwarderDeps {
  /** The leader's address when known. */
  leaderAddr(): string | undefined;
  /** Credentials to dial the leader (a manager certificate); without them nothing is forwarded. */
  managerCredentials?(): grpc.ChannelCredentials;
  /** How long no leader has been known (0 while one is). */
  leaderlessForMs?(): number;
  /** Past this, no leader means a minority (default 2 s). */
  minorityAfterMs?: number;
  /** Why the shared external store (etcd) is unavailable now, if it is (undefined with Raft). */
  storeUnavailable?(): string | undefined;
}

/** The refusal of a manager that knows no leader: an election (NO_LEADER) or a minority (NO_QUORUM). */
export function noLeaderRefusal(o: Pick<LeaderForwarderDeps, 'leaderlessForMs' | 'minorityAfterMs' | 'storeUnavailable'>): SwarmError {
  const down = o.storeUnavailable?.();
  if (down) return storeUnavailable(`${down}; nothing was done: retry once etcd is back (every manager shares it)`);
  const ms = o.leaderlessForMs?.() ?? 0;
  if (ms > (o.minorityAfterMs ?? 2_000)) {
    return noQuorum(
      `this manager is in a minority: it has known no leader for ${(ms / 1000).toFixed(1)} s, so it cannot reach a majority of the managers (cut off, or the cluster lost its quorum); nothing was done: ask another manager`,
    );
  }
  return noLeaderYet('this manager knows no leader yet (an election is under way); nothing was done: retry in a moment');
}

/** A status from the leader's own handlers carries our reason trailer or is not UNAVAILABLE/DEADLINE. */
function fromTheLeader(e: grpc.ServiceError): boolean {
  const reason = e.metadata?.get(REASON_METADATA_KEY)?.[0];
  return typeof reason === 'string' || (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.CANCELLED);
}

/** grpc-js details of a call that never left this process (no connection to the leader). */
const NOT_SENT = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|No connection established|failed to connect/i;

export class LeaderForwarder {
  private conn: { addr: string; client: grpc.Client } | undefined;

  /** `given`: a client to the leader the caller supplies (tests, in-process clusters), used instead of dialling. */
  constructor(
    private readonly o: LeaderForwarderDeps,
    private readonly given: () => grpc.Client | undefined = () => undefined,
  ) {}

  /** The client to the leader now and its address; UNAVAILABLE (NO_LEADER/NO_QUORUM) while no leader is known. */
  private target(): { client: grpc.Client; addr: string | undefined } {
    const given = this.given();
    if (given) return { client: given, addr: this.o.leaderAddr() };
    const addr = this.o.leaderAddr();
    if (!addr) throw noLeaderRefusal(this.o);
    if (!this.o.managerCredentials) throw new SwarmError(ErrorCode.UNAVAILABLE, `this manager is not the leader (the leader is ${addr}) and cannot forward`);
    if (this.conn?.addr !== addr) {
      this.conn?.client.close();
      this.conn = { addr, client: new grpc.Client(addr, this.o.managerCredentials(), { ...FORWARD_CHANNEL_OPTIONS, ...expectServerRole(CertRole.MANAGER) }) };
    }
    return { client: this.conn.client, addr };
  }

  /** The client to the leader now; UNAVAILABLE (NO_LEADER/NO_QUORUM) while no leader is known. */
  client(): grpc.Client {
    return this.target().client;
  }

  /** Metadata of a forwarded call (plus `extra`); refuses a call that was forwarded already. */
  metadata(call: IncomingCall, extra: Record<string, string> = {}): grpc.Metadata {
    if (call.metadata.get(FORWARDED_HEADER).length > 0) {
      throw noLeaderYet('this manager is not the leader either (the leader is changing); nothing was done: retry in a moment');
    }
    const md = new grpc.Metadata();
    md.set(FORWARDED_HEADER, '1');
    for (const [k, v] of Object.entries(extra)) md.set(k, v);
    return md;
  }

  /**
   * Forwards a unary call with the caller's deadline. Cancelled as soon as the leader it went to
   * is no longer the leader this manager knows (OUTCOME_UNKNOWN), so a call never waits on a
   * leader that was replaced.
   */
  unary<Req, Res>(def: MethodDef<Req, Res>, req: Req, call: IncomingCall, extra?: Record<string, string>): Promise<Res> {
    const md = this.metadata(call, extra);
    const { client, addr } = this.target();
    return new Promise<Res>((resolve, reject) => {
      let replaced = false;
      const upstream = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, { deadline: call.getDeadline?.() ?? Infinity }, (err, res) => {
        clearInterval(watch);
        if (!err) return resolve(res!);
        if (replaced) {
          return reject(outcomeUnknown(`the leader changed (from ${addr}) while this call was forwarded to it: it may or may not have been applied; ask again`, { cause: err }));
        }
        if (fromTheLeader(err) || err.code === grpc.status.DEADLINE_EXCEEDED) return reject(err);
        const why = err.details || err.message;
        if (NOT_SENT.test(why)) {
          return reject(
            new SwarmError(ErrorCode.UNAVAILABLE, `this manager cannot reach the leader at ${addr} (${why}); nothing was done: ask again or ask another manager`, {
              cause: err,
              details: { reason: ErrorReason.LEADER_CHANGED },
            }),
          );
        }
        reject(outcomeUnknown(`the leader at ${addr} stopped answering a forwarded call (${why}): it may or may not have been applied; ask again or ask another manager`, { cause: err }));
      });
      const watch = setInterval(() => {
        if (addr === undefined || this.o.leaderAddr() === addr) return;
        replaced = true;
        upstream.cancel();
      }, LEADER_CHECK_MS);
      watch.unref();
    });
  }

  /** Forwards a server stream: the upstream call (cancel it when the caller goes). */
  serverStream<Req, Res>(def: MethodDef<Req, Res>, req: Req, call: IncomingCall): grpc.ClientReadableStream<Res> {
    const md = this.metadata(call);
    return this.client().makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, {});
  }

  close(): void {
    this.conn?.client.close();
    this.conn = undefined;
  }
}
