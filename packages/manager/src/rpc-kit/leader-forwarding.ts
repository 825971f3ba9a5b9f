/**
 * Followers forward calls to the leader (SwarmKit's raft proxy): one client per leader address,
 * dialled with this manager's certificate and checking the leader holds a manager certificate;
 * a call is forwarded at most once (a forwarded call that reaches another follower is refused
 * with NO_LEADER, which clients retry). Upstream errors pass through unchanged.
 */
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, noLeaderYet } from '@swarmd/common';
import { expectServerRole } from '../ca/grpc-auth.js';
import { CertRole } from '../ca/roles.js';

/** Metadata a follower sets when it forwards a call, so a call is forwarded at most once. */
export const FORWARDED_HEADER = 'swarm-forwarded-by';

/** One method of a generated service definition, as forwarding needs it. */
export interface MethodDef<Req, Res> {
  path: string;
  requestSerialize: (v: Req) => Buffer;
  responseDeserialize: (b: Buffer) => Res;
}

type IncomingCall = { metadata: grpc.Metadata; getDeadline?(): grpc.Deadline };

/** What forwarding reads from a service's deps (ServiceDeps has both). */
export interface LeaderForwarderDeps {
  /** The leader's address when known. */
  leaderAddr(): string | undefined;
  /** Credentials to dial the leader (a manager certificate); without them nothing is forwarded. */
  managerCredentials?(): grpc.ChannelCredentials;
}

export class LeaderForwarder {
  private conn: { addr: string; client: grpc.Client } | undefined;

  /** `given`: a client to the leader the caller supplies (tests, in-process clusters), used instead of dialling. */
  constructor(
    private readonly o: LeaderForwarderDeps,
    private readonly given: () => grpc.Client | undefined = () => undefined,
  ) {}

  /** The client to the leader now; UNAVAILABLE (NO_LEADER) while no leader is known. */
  client(): grpc.Client {
    const given = this.given();
    if (given) return given;
    const addr = this.o.leaderAddr();
    if (!addr) throw noLeaderYet('this manager is not the leader and no leader is known yet: retry in a moment');
    if (!this.o.managerCredentials) throw new SwarmError(ErrorCode.UNAVAILABLE, `this manager is not the leader (the leader is ${addr}) and cannot forward`);
    if (this.conn?.addr !== addr) {
      this.conn?.client.close();
      this.conn = { addr, client: new grpc.Client(addr, this.o.managerCredentials(), expectServerRole(CertRole.MANAGER)) };
    }
    return this.conn.client;
  }

  /** Metadata of a forwarded call (plus `extra`); refuses a call that was forwarded already. */
  metadata(call: IncomingCall, extra: Record<string, string> = {}): grpc.Metadata {
    if (call.metadata.get(FORWARDED_HEADER).length > 0) {
      throw noLeaderYet('this manager is not the leader either (the leader is changing): retry in a moment');
    }
    const md = new grpc.Metadata();
    md.set(FORWARDED_HEADER, '1');
    for (const [k, v] of Object.entries(extra)) md.set(k, v);
    return md;
  }

  /** Forwards a unary call with the caller's deadline. */
  unary<Req, Res>(def: MethodDef<Req, Res>, req: Req, call: IncomingCall, extra?: Record<string, string>): Promise<Res> {
    const md = this.metadata(call, extra);
    const client = this.client();
    return new Promise<Res>((resolve, reject) => {
      client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, { deadline: call.getDeadline?.() ?? Infinity }, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
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
