/** How a follower handles messages (the term checks and votes are done in Raft.step). */
import { type Message, MessageType } from '../../pb/raft/raft.js';
import { newMessage } from '../messages.js';
import type { Raft } from '../raft.js';

export function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case MessageType.MSG_PROP:
      // Proposals are never forwarded: the app gets NotLeaderError with a hint instead.
      r.logger.debug('raft: follower dropping a proposal', { id: r.id, from: m.from });
      return;
    case MessageType.MSG_APP:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleAppendEntries(m);
      return;
    case MessageType.MSG_HEARTBEAT:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleHeartbeat(m);
      return;
    case MessageType.MSG_SNAP:
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleSnapshot(m);
      return;
    case MessageType.MSG_TRANSFER_LEADER:
      if (r.lead === 0) {
        r.logger.info('raft: no leader to forward a leader transfer to', { id: r.id });
        return;
      }
      // m.from is the transferee; keep it.
      r.msgs.push(newMessage({ type: MessageType.MSG_TRANSFER_LEADER, to: r.lead, from: m.from, term: r.term }));
      return;
    case MessageType.MSG_TIMEOUT_NOW:
      // The leader hands over to us: campaign now, bypassing pre-vote and leases.
      r.logger.info('raft: timeout-now received; campaigning for a leader transfer', { id: r.id, term: r.term, from: m.from });
      r.hup('transfer');
      return;
    case MessageType.MSG_READ_INDEX:
      if (r.lead === 0) {
        r.logger.info('raft: no leader to forward a read index to', { id: r.id });
        return;
      }
      r.msgs.push(newMessage({ type: MessageType.MSG_READ_INDEX, to: r.lead, from: m.from, context: m.context }));
      return;
    case MessageType.MSG_READ_INDEX_RESP:
      r.readStates.push({ index: m.index, requestCtx: m.context });
      return;
    default:
      return;
  }
}
