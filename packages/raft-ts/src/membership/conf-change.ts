/**
 * Membership changes, one at a time (no joint consensus): each change adds, removes, promotes or
 * demotes a single member, so any two consecutive voter sets differ by at most one voter and
 * their majorities overlap.
 *
 *   CONF_ADD_NODE      add a voter, or promote a learner to voter
 *   CONF_ADD_LEARNER   add a learner (or demote a voter to learner)
 *   CONF_REMOVE_NODE   remove a voter or learner
 *
 * Changes that would leave no voter are refused. Adding what is already there and removing what
 * is not are no-ops, so replaying a change is harmless.
 */
import { ConfChange, ConfChangeType, type ConfState, type Entry, EntryType } from '../pb/raft/raft.js';

export class ConfChangeError extends Error {
  constructor(reason: string) {
    super(`raft: invalid conf change: ${reason}`);
    this.name = 'ConfChangeError';
  }
}

/** Why cc cannot apply to cs, or undefined when it can. */
export function validateConfChange(cs: ConfState, cc: ConfChange): string | undefined {
  if (!Number.isSafeInteger(cc.nodeId) || cc.nodeId <= 0) return `bad node id ${cc.nodeId}`;
  const isVoter = cs.voters.includes(cc.nodeId);
  switch (cc.type) {
    case ConfChangeType.CONF_ADD_NODE:
      return undefined;
    case ConfChangeType.CONF_ADD_LEARNER:
      if (isVoter && cs.voters.length === 1) return `cannot demote the last voter ${cc.nodeId}`;
      return undefined;
    case ConfChangeType.CONF_REMOVE_NODE:
      if (isVoter && cs.voters.length === 1) return `cannot remove the last voter ${cc.nodeId}`;
      return undefined;
    default:
      return `unknown conf change type ${String(cc.type)}`;
  }
}

/** The membership after cc; throws ConfChangeError when cc is invalid for cs. */
export function applyConfChangeTo(cs: ConfState, cc: ConfChange): ConfState {
  const why = validateConfChange(cs, cc);
  if (why !== undefined) throw new ConfChangeError(why);
  const voters = new Set(cs.voters);
  const learners = new Set(cs.learners);
  const id = cc.nodeId;
  switch (cc.type) {
    case ConfChangeType.CONF_ADD_NODE:
      learners.delete(id);
      voters.add(id);
      break;
    case ConfChangeType.CONF_ADD_LEARNER:
      voters.delete(id);
      learners.add(id);
      break;
    case ConfChangeType.CONF_REMOVE_NODE:
      voters.delete(id);
      learners.delete(id);
      break;
    default:
      break;
  }
  return { voters: [...voters].sort((a, b) => a - b), learners: [...learners].sort((a, b) => a - b) };
}

/**
 * A founding member's initial membership as conf-change entries 1..n of term 1: voters, then
 * learners, each in id order, so every founding member writes the same entries (etcd's Bootstrap).
 */
export function bootstrapEntries(cs: ConfState): Entry[] {
  const changes: ConfChange[] = [
    ...[...cs.voters].sort((a, b) => a - b).map((nodeId) => ({ type: ConfChangeType.CONF_ADD_NODE, nodeId, context: Buffer.alloc(0) })),
    ...[...cs.learners]
      .filter((id) => !cs.voters.includes(id))
      .sort((a, b) => a - b)
      .map((nodeId) => ({ type: ConfChangeType.CONF_ADD_LEARNER, nodeId, context: Buffer.alloc(0) })),
  ];
  return changes.map((cc, i) => {
    const w = ConfChange.encode(cc).finish();
    return { index: i + 1, term: 1, type: EntryType.ENTRY_CONF_CHANGE, data: Buffer.from(w.buffer, w.byteOffset, w.byteLength) };
  });
}
