import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, noLeaderYet } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import {
  ManagerStatus_Reachability,
  NodeRole,
  type Node,
  type RaftJoinResponse,
  type RaftMember,
  type RaftMembershipServer,
} from '@swarmd/proto';
import { NotLeaderError, ProposalDroppedError, type NodeStatus as RaftNodeStatus } from 'raft-ts';
import { peerIdentity, toGrpcError, type VerifyOptionsSource } from '../ca/grpc-auth.js';
import { recordManagerNode, serveJoin } from './record.js';
import type { MemoryStore } from '../store/memory-store.js';
import { newRaftId } from '../raft/raft-dir.js';
import { assertCanRemoveManager, type RaftGroupView } from './quorum.js';

/**
 * A node that was a manager and is one no more: demoted (desired role worker) and out of the Raft
 * group (role worker). Its manager certificate is still valid until it expires, so every check
 * that trusts a manager certificate asks this too.
 */
export function isDemoted(n: Readonly<Node> | undefined): boolean {
  return n?.role === NodeRole.NODE_ROLE_WORKER && n.spec?.desiredRole === NodeRole.NODE_ROLE_WORKER;
}

/** How long a join waits for a membership change in flight before it is refused. */
export const JOIN_WAIT_MS = 15_000;

/** What membership needs of raft-ts's RaftNode. */
export interface RaftMembershipNode {
  readonly id: number;
  readonly isLeader: boolean;
  readonly leader: number;
  status(): RaftNodeStatus;
  address(id: number): string | undefined;
  addLearner(id: number, address: string): Promise<unknown>;
  promote(id: number, maxLag?: number): Promise<unknown>;
  removeMember(id: number): Promise<unknown>;
}

export interface MembershipOptions {
  raft: RaftMembershipNode;
  store: MemoryStore;
  logger: Logger;
  verify: VerifyOptionsSource;
  transportClusterId: number;
  now?: () => number;
  /** A member seen active this recently counts as reachable (default 3 s). */
  reachableWithinMs?: number;
  /** The secrets key, handed to a manager that joins (it seals secrets in the store). */
  secretsKey?: () => Buffer | undefined;
  /**
   * Whether autolock is on: then a member that joins again (it holds its key, or should) is not
   * handed the secrets key, so a manager certificate taken from a locked manager's disk does not
   * fetch it from the cluster.
   */
  autolocked?: () => boolean;
}

/**
 * The manager side of Raft membership: RaftMembership.Join/Leave (leader only; followers answer
 * with the leader's address), the quorum check for removals and demotions, and the mapping
 * between node ids (certificates, store) and Raft member ids (Node.managerStatus.raftId).
 */
export class Membership {
  /** When each member was last seen active by this member while leading (ms, from `now`). */
  private readonly lastActive = new Map<number, number>();
  private readonly now: () => number;
  private readonly reachableWithinMs: number;

  constructor(private readonly o: MembershipOptions) {
    this.now = o.now ?? (() => Date.now());
    this.reachableWithinMs = o.reachableWithinMs ?? 3000;
  }

  /**
   * Samples the leader's progress (call it often, e.g. every tick): raft's recentActive flag is
   * reset at every CheckQuorum round, so reachability is "active within reachableWithinMs".
   */
  sample(): void {
    const st = this.o.raft.status();
    if (!st.progress) return;
    const now = this.now();
    for (const [id, pr] of st.progress) if (pr.recentActive) this.lastActive.set(id, now);
  }

  /** The leader's view of the group (on a follower every other member counts as unreachable). */
  view(): RaftGroupView {
    const st = this.o.raft.status();
    return {
      voters: st.confState.voters,
      learners: st.confState.learners,
      reachable: (id) =>
        id === this.o.raft.id ||
        (st.progress?.get(id)?.recentActive ?? false) ||
        this.now() - (this.lastActive.get(id) ?? -Infinity) <= this.reachableWithinMs,
    };
  }

  /** The leader's advertise address, when a leader is known. */
  leaderAddr(): string | undefined {
    const l = this.o.raft.leader;
    return l ? this.o.raft.address(l) : undefined;
  }

  /** The Raft member id of a manager node, from the store (undefined for workers). */
  raftIdOf(nodeId: string): number | undefined {
    const n = this.o.store.view((tx) => tx.get('node', nodeId));
    return n?.managerStatus?.raftId || undefined;
  }

  /** Every member of the group with its address and, when the store knows it, its node id. */
  members(): RaftMember[] {
    const st = this.o.raft.status();
    const byRaft = new Map<number, string>();
    for (const n of this.o.store.view((tx) => tx.find('node'))) if (n.managerStatus?.raftId) byRaft.set(n.managerStatus.raftId, n.id);
    return [...st.confState.voters, ...st.confState.learners].map((id) => ({
      raftId: id,
      addr: st.members[id] ?? '',
      nodeId: byRaft.get(id) ?? '',
    }));
  }

  /**
   * FAILED_PRECONDITION when removing or demoting manager `nodeId` would lose quorum (the control
   * API calls this before it writes a demotion or removes a manager node). Workers pass.
   */
  assertCanRemove(nodeId: string): void {
    const raftId = this.raftIdOf(nodeId);
    if (raftId === undefined) return;
    if (!this.o.raft.isLeader) throw new SwarmError(ErrorCode.UNAVAILABLE, 'only the leader can check the quorum of a removal');
    assertCanRemoveManager(this.view(), raftId, `to remove or demote manager ${nodeId}`);
  }

  /** Removes a manager from the Raft group (leader only), refusing one that would lose quorum. */
  async removeManager(nodeId: string): Promise<void> {
    const raftId = this.raftIdOf(nodeId);
    if (raftId === undefined) return;
    if (!this.inGroup(raftId)) return;
    this.assertCanRemove(nodeId);
    this.o.logger.info('removing a manager from the raft group', { nodeId, raftId });
    await this.o.raft.removeMember(raftId);
  }

  private inGroup(raftId: number): boolean {
    const cs = this.o.raft.status().confState;
    return cs.voters.includes(raftId) || cs.learners.includes(raftId);
  }

  /** Join on the leader: adds the caller as a learner (idempotent for a member that retries). */
  async join(nodeId: string, addr: string): Promise<RaftJoinResponse> {
    const redirect = this.redirect();
    if (redirect) return { raftId: 0, members: [], redirectAddr: redirect, clusterRaftId: 0, secretsKey: Buffer.alloc(0), store: undefined };
    if (!addr) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'join: the joining manager must give its advertise address');
    if (isDemoted(this.o.store.view((tx) => tx.get('node', nodeId)))) {
      throw new SwarmError(ErrorCode.PERMISSION_DENIED, `join: node ${nodeId} was demoted to worker; its manager certificate no longer admits it (promote it to join again)`);
    }
    let raftId = this.raftIdOf(nodeId);
    const rejoin = raftId !== undefined && this.inGroup(raftId);
    if (raftId !== undefined && rejoin) {
      const known = this.o.raft.address(raftId);
      if (known && known !== addr) {
        throw new SwarmError(
          ErrorCode.FAILED_PRECONDITION,
          `join: manager ${nodeId} is already member ${raftId} at ${known}, not ${addr}; demote and promote it again to move it`,
        );
      }
      this.o.logger.info('join: already a member; answering again', { nodeId, raftId });
    } else {
      const st = this.o.raft.status();
      const taken = [...st.confState.voters, ...st.confState.learners, ...this.o.store.view((tx) => tx.find('node')).map((n) => n.managerStatus?.raftId ?? 0)];
      raftId = newRaftId(taken);
      this.o.logger.info('join: adding a manager as a learner', { nodeId, raftId, addr });
      await this.addLearnerWhenFree(raftId, addr);
    }
    await this.recordManager(nodeId, raftId, addr);
    const withhold = rejoin && !!this.o.autolocked?.();
    if (withhold) this.o.logger.warn('join: a member joins again under autolock; the secrets key is not handed out', { nodeId, raftId });
    const secretsKey = withhold ? Buffer.alloc(0) : (this.o.secretsKey?.() ?? Buffer.alloc(0));
    return { raftId, members: this.members(), redirectAddr: '', clusterRaftId: this.o.transportClusterId, secretsKey, store: undefined };
  }

  /**
   * Raft takes one membership change at a time: a join that comes while the previous one is in
   * flight (a learner being added or promoted) waits for it, up to JOIN_WAIT_MS, instead of
   * failing (two managers joining at once, or one right after another).
   */
  private async addLearnerWhenFree(raftId: number, addr: string): Promise<void> {
    const until = Date.now() + JOIN_WAIT_MS;
    for (;;) {
      try {
        await this.o.raft.addLearner(raftId, addr);
        return;
      } catch (err) {
        if (!(err instanceof ProposalDroppedError) || !/conf change is pending/.test(err.message) || Date.now() >= until) throw err;
        this.o.logger.info('join: another membership change is in flight; waiting for it', { raftId });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Writes Node.managerStatus (and creates the Node when the CA service has not yet). */
  recordManager(nodeId: string, raftId: number, addr: string, hostname?: string): Promise<void> {
    const learner = this.o.raft.status().confState.learners.includes(raftId);
    return recordManagerNode(this.o.store, nodeId, { raftId, addr, leader: this.o.raft.leader === raftId, reachability: ManagerStatus_Reachability.REACHABLE, learner }, hostname);
  }

  private redirect(): string | undefined {
    if (this.o.raft.isLeader) return undefined;
    const l = this.leaderAddr();
    if (!l) throw new SwarmError(ErrorCode.UNAVAILABLE, 'no raft leader is known right now; retry');
    return l;
  }

  /** The RaftMembership service (the auth interceptor already admitted swarm-manager only). */
  service(): RaftMembershipServer {
    return {
      // Leadership lost mid-join (an election): the joiner asks again, as it does while no
      // leader is known; a join already applied is found as such on the retry.
      join: serveJoin(this.o, (nodeId, addr) => this.join(nodeId, addr), (err) => (err instanceof NotLeaderError ? noLeaderYet(`join: ${err.message}`, { cause: err }) : err)),
      leave: (call, cb) => {
        peerIdentity(call, this.o.verify)
          .then(async (id) => {
            const redirect = this.redirect();
            if (redirect) return { redirectAddr: redirect };
            await this.removeManager(id.nodeId);
            return { redirectAddr: '' };
          })
          .then(
            (r) => cb(null, r),
            (err: unknown) => cb(toGrpcError(err)),
          );
      },
    };
  }
}

/** grpc status of a failed call, for callers that follow redirects. */
export function isUnavailable(err: unknown): boolean {
  return (err as grpc.ServiceError | undefined)?.code === grpc.status.UNAVAILABLE;
}
