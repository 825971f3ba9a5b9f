import { describeError, isSwarmError, ErrorCode } from '@swarmd/common/errors';
import { ManagerStatus_Reachability, NodeRole, type Node } from '@swarmd/proto';
import { type Controller, type ControllerDeps, controllerLogger } from '../controller-kit/controller.js';
import { cloneObject } from '../store/kinds.js';
import { onKind } from '../store/events.js';
import type { Membership, RaftMembershipNode } from './membership.js';
import { checkRemoveManager } from './quorum.js';

/**
 * Leader-only: promotes learners to voters once they have caught up (within `maxLag` entries of
 * the commit index), one at a time, and keeps Node.managerStatus (leader flag, reachability,
 * learner) in step with the Raft group.
 */
export function promoterController(raft: RaftMembershipNode, membership: Membership, opts: { intervalMs?: number; maxLag?: number } = {}): Controller {
  return {
    name: 'raft-promoter',
    async run(deps: ControllerDeps, signal: AbortSignal): Promise<void> {
      const { store, clock } = deps;
      const log = controllerLogger(deps, 'manager/promoter');
      while (!signal.aborted) {
        const st = raft.status();
        for (const id of st.confState.learners) {
          const pr = st.progress?.get(id);
          if (!pr || pr.match + (opts.maxLag ?? 10) < st.commit) continue;
          try {
            await raft.promote(id, opts.maxLag ?? 10);
            log.info('promoted a learner to voter', { raftId: id });
          } catch (err) {
            log.debug('promotion not possible yet', { raftId: id, error: describeError(err) });
          }
          break; // one membership change at a time
        }
        // Manager status in the store: who leads, who is reachable.
        const view = membership.view();
        const members = new Set([...view.voters, ...view.learners]);
        const stale = store.view((tx) =>
          tx.find('node').filter((n) => {
            const ms = n.managerStatus;
            if (!ms?.raftId || !members.has(ms.raftId)) return false;
            const leader = ms.raftId === raft.leader;
            const reach = view.reachable(ms.raftId) ? ManagerStatus_Reachability.REACHABLE : ManagerStatus_Reachability.UNREACHABLE;
            return ms.leader !== leader || ms.reachability !== reach || ms.learner !== view.learners.includes(ms.raftId);
          }),
        );
        if (stale.length) {
          try {
            await store.update((tx) => {
              for (const n of stale) {
                const c = cloneObject('node', n);
                c.managerStatus!.leader = c.managerStatus!.raftId === raft.leader;
                c.managerStatus!.reachability = view.reachable(c.managerStatus!.raftId)
                  ? ManagerStatus_Reachability.REACHABLE
                  : ManagerStatus_Reachability.UNREACHABLE;
                c.managerStatus!.learner = view.learners.includes(c.managerStatus!.raftId);
                tx.update('node', c);
              }
            });
          } catch (err) {
            if (!(isSwarmError(err) && err.code === ErrorCode.CONFLICT)) log.debug('manager status update failed', { error: describeError(err) });
          }
        }
        await clock.sleep(opts.intervalMs ?? 500, signal);
      }
    },
  };
}

/**
 * Leader-only: carries out demotions written by the control API (Node.spec.desiredRole = worker
 * on a manager), never past quorum (it waits instead): records role = worker (while the member
 * still replicates, so it learns it), removes it from Raft, then clears managerStatus. The node's swarmd sees its member removed,
 * stops its manager, and its next certificate renewal returns a worker certificate.
 *
 * Promotions (desiredRole = manager on a worker) need nothing here: the CA issues a manager
 * certificate at the node's next renewal, and its swarmd then starts a manager that joins.
 */
export function roleReconcilerController(raft: RaftMembershipNode, membership: Membership, opts: { intervalMs?: number } = {}): Controller {
  return {
    name: 'role-reconciler',
    async run(deps: ControllerDeps, signal: AbortSignal): Promise<void> {
      const { store, clock } = deps;
      const log = controllerLogger(deps, 'manager/role-reconciler');
      const setNode = (id: string, change: (n: Node) => void): Promise<void> =>
        store.update((tx) => {
          const cur = tx.get('node', id);
          if (!cur) return;
          const c = cloneObject('node', cur);
          change(c);
          tx.update('node', c);
        });
      const w = store.viewAndWatch(() => undefined, onKind('node'));
      signal.addEventListener('abort', () => w.close(), { once: true });
      // Events only wake the loop; each pass reads the whole table.
      let wake: (() => void) | undefined;
      void (async () => {
        try {
          for await (const _ of w.events) wake?.();
        } catch {
          /* dropped watcher: the periodic pass still runs */
        }
      })();
      while (!signal.aborted) {
        const demote = store.view((tx) =>
          tx
            .find('node')
            .filter((n) => n.spec?.desiredRole === NodeRole.NODE_ROLE_WORKER && (n.role === NodeRole.NODE_ROLE_MANAGER || !!n.managerStatus?.raftId)),
        );
        for (const n of demote) {
          const raftId = n.managerStatus?.raftId ?? 0;
          const cs = raft.status().confState;
          const inGroup = raftId !== 0 && (cs.voters.includes(raftId) || cs.learners.includes(raftId));
          try {
            if (inGroup) {
              const ok = checkRemoveManager(membership.view(), raftId);
              if (!ok.ok) {
                log.warn('demotion waits: it would lose quorum', { nodeId: n.id, reason: ok.reason });
                continue;
              }
            }
            // 1. role = worker while the member is still in the group, so it learns it through
            //    its own store (a removed member may never hear from the leader again).
            if (n.role === NodeRole.NODE_ROLE_MANAGER) {
              await setNode(n.id, (c) => (c.role = NodeRole.NODE_ROLE_WORKER));
              continue; // next pass (the object changed)
            }
            // 2. out of Raft. Demoting the leader itself is fine: raft-ts makes a removed leader
            //    hand over to an up-to-date voter, and the next leader's reconciler finishes.
            if (inGroup) {
              await raft.removeMember(raftId);
              log.info('demoted a manager: removed from raft', { nodeId: n.id, raftId });
            }
            // 3. forget its raft id.
            await setNode(n.id, (c) => (c.managerStatus = undefined));
          } catch (err) {
            log.warn('demotion step failed; will retry', { nodeId: n.id, error: describeError(err) });
          }
        }
        // Wait for a node event or 2 s, whichever first (the sleep is cancelled either way).
        const pass = new AbortController();
        const onAbort = (): void => pass.abort();
        signal.addEventListener('abort', onAbort, { once: true });
        await Promise.race([clock.sleep(2000, pass.signal).catch(() => undefined), new Promise<void>((r) => (wake = r))]);
        pass.abort();
        signal.removeEventListener('abort', onAbort);
        wake = undefined;
        if (opts.intervalMs) await clock.sleep(opts.intervalMs, signal).catch(() => undefined);
      }
    },
  };
}
