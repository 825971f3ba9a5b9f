/** How a (pre-)candidate handles messages: count votes, or yield to a leader of its term. */
import { type Message, MessageType } from '../../pb/raft/raft.js';
import type { Raft } from '../raft.js';

export function stepCandidate(r: Raft, m: Message): void {
  // A pre-candidate only counts pre-vote replies, a candidate only vote replies: a late reply
  // of the other kind (from an earlier round of the same term) means nothing now.
  const myVoteResp = r.role === 'pre-candidate' ? MessageType.MSG_PRE_VOTE_RESP : MessageType.MSG_VOTE_RESP;
  switch (m.type) {
    case MessageType.MSG_PROP:
      r.logger.debug('raft: candidate dropping a proposal', { id: r.id });
      return;
    case MessageType.MSG_APP:
      r.becomeFollower(m.term, m.from);
      r.handleAppendEntries(m);
      return;
    case MessageType.MSG_HEARTBEAT:
      r.becomeFollower(m.term, m.from);
      r.handleHeartbeat(m);
      return;
    case MessageType.MSG_SNAP:
      r.becomeFollower(m.term, m.from);
      r.handleSnapshot(m);
      return;
    case myVoteResp: {
      const res = r.poll(m.from, !m.reject);
      if (res === 'won') {
        if (r.role === 'pre-candidate') {
          r.campaign('election');
        } else {
          r.becomeLeader();
          r.bcastAppend();
        }
      } else if (res === 'lost') {
        // A pre-candidate's term did not move; a candidate keeps its new term (and vote).
        r.becomeFollower(r.term, 0);
      }
      return;
    }
    case MessageType.MSG_TIMEOUT_NOW:
      r.logger.debug('raft: candidate ignoring timeout-now', { id: r.id, from: m.from });
      return;
    default:
      return;
  }
}
