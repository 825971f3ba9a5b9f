import { SwarmError, ErrorCode } from '@swarmd/common/errors';

/** What quorum decisions need of the Raft group (the leader's view). */
export interface RaftGroupView {
  voters: readonly number[];
  learners: readonly number[];
  /** Whether a member is reachable from the leader now (the leader itself always is). */
  reachable(raftId: number): boolean;
}

/**
 * Whether removing (or demoting) member `raftId` keeps a working majority: after the change the
 * remaining voters that are reachable must still be a majority of the remaining voters
 * (SwarmKit's CanRemoveMember). Removing a learner, or a member that is not in the group, is
 * always fine. The last voter can never be removed.
 */
export function checkRemoveManager(view: RaftGroupView, raftId: number): { ok: true } | { ok: false; reason: string } {
  if (!view.voters.includes(raftId)) return { ok: true };
  const rest = view.voters.filter((v) => v !== raftId);
  if (rest.length === 0) return { ok: false, reason: 'it is the last manager of the cluster' };
  const up = rest.filter((v) => view.reachable(v)).length;
  const need = Math.floor(rest.length / 2) + 1;
  if (up < need) {
    return {
      ok: false,
      reason: `the cluster would lose quorum: ${up} of the remaining ${rest.length} managers are reachable, ${need} are needed`,
    };
  }
  return { ok: true };
}

/** checkRemoveManager as a thrown FAILED_PRECONDITION (for the control API). */
export function assertCanRemoveManager(view: RaftGroupView, raftId: number, what = 'removing this manager'): void {
  const r = checkRemoveManager(view, raftId);
  if (!r.ok) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `refusing ${what}: ${r.reason}`, { details: { raftId } });
}
