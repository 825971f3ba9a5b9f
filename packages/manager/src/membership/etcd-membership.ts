import { SwarmError, ErrorCode, describeError, failedPrecondition, noLeaderYet } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { ManagerStatus_Reachability, NodeRole, type Node, type RaftJoinResponse, type RaftMember, type RaftMembershipServer, type StoreBackend } from '@swarmd/proto';
import type { VerifyOptionsSource } from '../ca/grpc-auth.js';
import { cloneObject } from '../store/kinds.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { Controller } from '../controller-kit/controller.js';
import { controllerLogger, watchLoopController } from '../controller-kit/controller.js';
import { onKind } from '../store/events.js';
import { recordManagerNode, serveJoin } from './record.js';

export interface EtcdMembershipOptions {
  store: MemoryStore;
  logger: Logger;
  verify: VerifyOptionsSource;
  /** Whether this manager holds the etcd election now. */
  isLeader(): boolean;
  /** The advertise address the current leader published in the election, when known. */
  leaderAddr(): string | undefined;
  /** Where the store is, as a joining manager receives it (endpoints, prefix, CA; never a key). */
  backend: StoreBackend;
  secretsKey?: () => Buffer | undefined;
  autolocked?: () => boolean;
}

/**
 * Managers of a cluster whose store is an external etcd: there is no Raft group to enter, so
 * RaftMembership.Join (on the leader; others answer with its address) only records the manager's
 * Node and answers with where the store is and the secrets key. Leadership is the etcd election,
 * so no quorum of managers is needed: any manager may be removed.
 */
export class EtcdMembership {
  constructor(private readonly o: EtcdMembershipOptions) {}

  async join(nodeId: string, addr: string): Promise<RaftJoinResponse> {
    const none = { raftId: 0, members: [], redirectAddr: '', clusterRaftId: 0, secretsKey: Buffer.alloc(0), store: undefined };
    if (!this.o.isLeader()) {
      const l = this.o.leaderAddr();
      if (!l) throw noLeaderYet('no manager holds the etcd election right now; retry');
      return { ...none, redirectAddr: l };
    }
    if (!addr) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'join: the joining manager must give its advertise address');
    const rejoin = !!this.o.store.view((tx) => tx.get('node', nodeId))?.managerStatus?.addr;
    await recordManagerNode(this.o.store, nodeId, { raftId: 0, addr, leader: false, reachability: ManagerStatus_Reachability.REACHABLE, learner: false });
    const withhold = rejoin && !!this.o.autolocked?.();
    if (withhold) this.o.logger.warn('join: a manager joins again under autolock; the secrets key is not handed out', { nodeId });
    this.o.logger.info('join: a manager joined the etcd-backed cluster', { nodeId, addr });
    return { ...none, members: this.members(), secretsKey: withhold ? Buffer.alloc(0) : (this.o.secretsKey?.() ?? Buffer.alloc(0)), store: this.o.backend };
  }

  /** The managers the store knows (raft ids are 0: there is no Raft group). */
  members(): RaftMember[] {
    return this.o.store
      .view((tx) => tx.find('node'))
      .filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.addr)
      .map((n) => ({ raftId: 0, addr: n.managerStatus!.addr, nodeId: n.id }));
  }

  /**
   * No quorum of managers to keep (etcd holds it), but one manager at least: without one nothing
   * serves the control API or runs the controllers.
   */
  assertCanRemove(nodeId: string): void {
    const others = this.o.store
      .view((tx) => tx.find('node'))
      .filter((n) => n.id !== nodeId && n.role === NodeRole.NODE_ROLE_MANAGER && n.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.addr);
    if (others.length === 0) {
      throw failedPrecondition(`${nodeId} is the only manager of this etcd-backed cluster: promote another node first (swarmctl node promote NODE)`);
    }
  }

  /** Nothing to leave: the manager's Node goes through the control API as any other. */
  async removeManager(): Promise<void> {}

  service(): RaftMembershipServer {
    return {
      join: serveJoin(this.o, (nodeId, addr) => this.join(nodeId, addr)),
      leave: (_call, cb) => cb(null, { redirectAddr: '' }),
    };
  }
}

/**
 * Leader-only, etcd backend: keeps Node.managerStatus.leader true on the manager holding the
 * election (this one) and false elsewhere, as `node ls` shows it.
 */
export function etcdLeaderStatusController(selfAddr: string, opts: { intervalMs?: number } = {}): Controller {
  return {
    name: 'etcd-leader-status',
    async run(deps, signal): Promise<void> {
      const log = controllerLogger(deps, 'manager/etcd-leader-status');
      while (!signal.aborted) {
        const stale = deps.store.view((tx) => tx.find('node').filter((n) => n.managerStatus?.addr && n.managerStatus.leader !== (n.managerStatus.addr === selfAddr)));
        if (stale.length) {
          await deps.store
            .update((tx) => {
              for (const n of stale) {
                const c = cloneObject('node', n);
                c.managerStatus!.leader = c.managerStatus!.addr === selfAddr;
                tx.update('node', c);
              }
            })
            .catch((err: unknown) => log.debug('manager status update failed', { error: describeError(err) }));
        }
        await deps.clock.sleep(opts.intervalMs ?? 500, signal).catch(() => undefined);
      }
    },
  };
}

/**
 * Leader-only, etcd backend: carries out demotions written by the control API (Node.spec.desiredRole
 * = worker on a manager). There is no Raft group to leave, so one write does it: role = worker and
 * no managerStatus. The demoted manager sees it in its own store (every manager reads the whole
 * store from etcd) and its swarmd stops the manager; its next certificate is a worker's.
 *
 * Promotions need nothing here, as on Raft: the CA issues a manager certificate at the node's next
 * renewal, and its swarmd starts a manager that joins (the join answer says where the store is).
 */
export function etcdRoleReconcilerController(opts: { retryMs?: number } = {}): Controller {
  const wantsDemotion = (n: Readonly<Node> | undefined): n is Readonly<Node> =>
    !!n && n.spec?.desiredRole === NodeRole.NODE_ROLE_WORKER && (n.role === NodeRole.NODE_ROLE_MANAGER || n.managerStatus !== undefined);
  return watchLoopController({
    name: 'etcd-role-reconciler',
    component: 'manager/etcd-role-reconciler',
    matchers: [onKind('node')],
    create(deps, log) {
      const dirty = new Set<string>();
      let retryAt: number | undefined;
      return {
        init: (tx) => {
          for (const n of tx.find('node')) if (wantsDemotion(n)) dirty.add(n.id);
        },
        onEvent: (e) => {
          if (e.kind === 'node' && e.type !== 'delete' && wantsDemotion(e.object)) dirty.add(e.object.id);
        },
        nextWake: () => retryAt,
        tick: async () => {
          retryAt = undefined;
          for (const id of [...dirty]) {
            try {
              await deps.store.update((tx) => {
                const cur = tx.get('node', id);
                if (!wantsDemotion(cur)) return;
                const c = cloneObject('node', cur);
                c.role = NodeRole.NODE_ROLE_WORKER;
                c.managerStatus = undefined;
                tx.update('node', c);
              });
              dirty.delete(id);
              log.info('demoted a manager', { nodeId: id });
            } catch (err) {
              retryAt = deps.clock.now() + (opts.retryMs ?? 500);
              log.warn('demotion failed; will retry', { nodeId: id, error: describeError(err) });
            }
          }
        },
      };
    },
  });
}
