/** The Kv gRPC service (raft.proto) over a RaftNode and a KvStateMachine. */
import * as grpc from '@grpc/grpc-js';
import {
  KvService,
  type KvGetRequest,
  type KvGetResponse,
  type KvMemberRequest,
  type KvMemberResponse,
  type KvPutRequest,
  type KvPutResponse,
  type KvStatusResponse,
} from '../pb/raft/raft.js';
import { NotLeaderError, OutcomeUnknownError, ProposalDroppedError } from '../types.js';
import { NotCaughtUpError, TimeoutError, RaftNodeStoppedError, type RaftNode } from '../driver/raft-node.js';
import { KvStateMachine } from './kv-state-machine.js';

/** Trailer metadata keys carrying the leader hint on FAILED_PRECONDITION (not the leader). */
export const LEADER_ID_KEY = 'x-raft-leader-id';
export const LEADER_ADDR_KEY = 'x-raft-leader-addr';
/**
 * Trailer metadata key saying what became of a write that failed: `not-applied` (refused:
 * FAILED_PRECONDITION, UNAVAILABLE) or `unknown` (UNKNOWN: leadership lost after it was proposed;
 * DEADLINE_EXCEEDED: it timed out; it may or may not be applied).
 */
export const OUTCOME_KEY = 'x-raft-outcome';

function toGrpcError(node: RaftNode, e: unknown): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  let code = grpc.status.INTERNAL;
  if (e instanceof OutcomeUnknownError) {
    code = grpc.status.UNKNOWN;
    metadata.set(OUTCOME_KEY, 'unknown');
  } else if (e instanceof NotLeaderError) {
    code = grpc.status.FAILED_PRECONDITION;
    metadata.set(OUTCOME_KEY, 'not-applied');
    if (e.leaderId) {
      metadata.set(LEADER_ID_KEY, String(e.leaderId));
      const addr = node.address(e.leaderId);
      if (addr) metadata.set(LEADER_ADDR_KEY, addr);
    }
  } else if (e instanceof NotCaughtUpError || e instanceof ProposalDroppedError) {
    code = grpc.status.UNAVAILABLE;
    metadata.set(OUTCOME_KEY, 'not-applied');
  } else if (e instanceof TimeoutError) {
    code = grpc.status.DEADLINE_EXCEEDED;
    metadata.set(OUTCOME_KEY, 'unknown');
  } else if (e instanceof RaftNodeStoppedError) {
    code = grpc.status.UNAVAILABLE;
  }
  const details = e instanceof Error ? e.message : String(e);
  return Object.assign(new Error(details), { code, details, metadata });
}

function unary<Req, Res>(node: RaftNode, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (e: unknown) => callback(toGrpcError(node, e)),
    );
  };
}

export function addKvService(server: grpc.Server, node: RaftNode, sm: KvStateMachine): void {
  server.addService(KvService, {
    put: unary<KvPutRequest, KvPutResponse>(node, async (req) => {
      const index = (await node.propose(KvStateMachine.put(req.key, req.value, req.requestId))) as number;
      return { index };
    }),
    get: unary<KvGetRequest, KvGetResponse>(node, async (req) => {
      if (req.linearizable) await node.linearizableRead();
      const v = sm.get(req.key);
      return v ? { found: true, value: v.value, index: v.index } : { found: false, value: Buffer.alloc(0), index: 0 };
    }),
    status: unary(node, async (): Promise<KvStatusResponse> => {
      const st = node.status();
      return { id: st.id, leader: st.leaderId, term: st.term, commit: st.commit, applied: st.applied, role: st.role, confState: st.confState };
    }),
    addLearner: unary<KvMemberRequest, KvMemberResponse>(node, async (req) => ({ confState: await node.addLearner(req.nodeId, req.address) })),
    promote: unary<KvMemberRequest, KvMemberResponse>(node, async (req) => ({ confState: await node.promote(req.nodeId) })),
    removeMember: unary<KvMemberRequest, KvMemberResponse>(node, async (req) => ({ confState: await node.removeMember(req.nodeId) })),
    transferLeadership: unary<KvMemberRequest, KvMemberResponse>(node, async (req) => {
      await node.transferLeadership(req.nodeId);
      return { confState: node.status().confState };
    }),
  });
}
