/** How the leader handles messages: replication progress, heartbeats, reads, transfers. */
import { type Message, MessageType } from '../../pb/raft/raft.js';
import { newMessage } from '../messages.js';
import type { Raft } from '../raft.js';

export function stepLeader(r: Raft, m: Message): void {
  // Messages that need no progress of the sender.
  switch (m.type) {
    case MessageType.MSG_BEAT:
      r.bcastHeartbeat();
      return;
    case MessageType.MSG_CHECK_QUORUM:
      if (!r.tracker.quorumActive(r.id)) {
        r.logger.warn('raft: leader lost contact with a quorum; stepping down', { id: r.id, term: r.term });
        r.becomeFollower(r.term, 0);
      }
      // Every member has to prove itself alive again for the next round.
      r.tracker.resetRecentActive(r.id);
      return;
    case MessageType.MSG_PROP:
      r.logger.debug('raft: leader dropping a forwarded proposal (proposals are not forwarded)', { id: r.id, from: m.from });
      return;
    case MessageType.MSG_READ_INDEX:
      leaderReadIndex(r, m);
      return;
    default:
      break;
  }

  const pr = r.tracker.get(m.from);
  if (!pr) {
    r.logger.debug('raft: no progress for sender', { id: r.id, from: m.from, type: MessageType[m.type] });
    return;
  }
  switch (m.type) {
    case MessageType.MSG_APP_RESP: {
      pr.markActive();
      if (m.reject) {
        // Jump over the terms the follower does not share (its hint is the last index it
        // might match at or below m.logTerm).
        let nextProbe = m.rejectHint;
        if (m.logTerm > 0) nextProbe = r.log.findConflictByTerm(m.rejectHint, m.logTerm)[0];
        if (pr.maybeDecrTo(m.index, nextProbe)) {
          r.logger.debug('raft: append rejected; probing lower', { id: r.id, from: m.from, rejected: m.index, next: pr.next });
          if (pr.state === 'replicate') pr.becomeProbe();
          r.sendAppend(m.from);
        }
        return;
      }
      const wasPaused = pr.isPaused();
      // A probe answered with the match we already had (nothing new to send) still ends probing.
      const reprobe = pr.state === 'probe' && pr.match === m.index;
      if (!pr.maybeUpdate(m.index) && !reprobe) return;
      if (pr.state === 'probe') {
        pr.becomeReplicate();
      } else if (pr.state === 'snapshot' && pr.match + 1 >= r.log.firstIndex()) {
        // The snapshot (or later appends) caught it up to where our log begins.
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') {
        pr.ackInflights(m.index);
      }
      if (r.maybeCommit()) {
        r.bcastAppend();
      } else if (wasPaused) {
        r.sendAppend(m.from);
      }
      // Fill the window.
      while (r.role === 'leader' && r.sendAppend(m.from, false)) {
        /* keep sending */
      }
      if (r.role === 'leader' && m.from === r.leadTransferee && pr.match === r.log.lastIndex()) {
        r.logger.info('raft: transferee caught up; sending timeout-now', { id: r.id, to: m.from });
        r.sendTimeoutNow(m.from);
      }
      return;
    }
    case MessageType.MSG_HEARTBEAT_RESP: {
      pr.heartbeatAcked();
      if (pr.match < r.log.lastIndex() || pr.state === 'probe') r.sendAppend(m.from);
      if (m.context.length === 0) return;
      const acks = r.readOnly.recvAck(m.from, m.context);
      if (!acks || r.tracker.ackResult(acks) !== 'won') return;
      for (const rs of r.readOnly.advance(m.context)) respondReadIndex(r, rs.req, rs.index);
      return;
    }
    case MessageType.MSG_SNAP_STATUS:
      if (pr.state !== 'snapshot') return;
      r.logger.debug('raft: snapshot send finished', { id: r.id, to: m.from, ok: !m.reject });
      pr.snapshotDone(!m.reject);
      return;
    case MessageType.MSG_UNREACHABLE:
      pr.unreachable();
      return;
    case MessageType.MSG_TRANSFER_LEADER: {
      const transferee = m.from;
      if (pr.isLearner) {
        r.logger.info('raft: not transferring leadership to a learner', { id: r.id, transferee });
        return;
      }
      if (r.leadTransferee !== 0) {
        if (r.leadTransferee === transferee) return; // already under way
        r.abortLeaderTransfer();
      }
      if (transferee === r.id) return; // already the leader
      // The transfer has one election timeout to finish.
      r.electionElapsed = 0;
      r.leadTransferee = transferee;
      r.logger.info('raft: transferring leadership', { id: r.id, term: r.term, to: transferee });
      if (pr.match === r.log.lastIndex()) r.sendTimeoutNow(transferee);
      else r.sendAppend(transferee);
      return;
    }
    default:
      return;
  }
}

/** The leader takes a ReadIndex request (its own or a follower's). */
export function leaderReadIndex(r: Raft, m: Message): void {
  if (!r.committedEntryInCurrentTerm()) {
    // Until an entry of our term is committed we do not know the true commit index (§6.4).
    r.pendingReadIndexMessages.push(m);
    return;
  }
  const index = r.log.committed;
  if (r.tracker.isSingleton() && r.tracker.isVoter(r.id)) {
    respondReadIndex(r, m, index);
    return;
  }
  r.readOnly.add(index, m);
  r.readOnly.recvAck(r.id, m.context);
  r.bcastHeartbeat(m.context);
}

function respondReadIndex(r: Raft, req: Message, index: number): void {
  if (req.from === 0 || req.from === r.id) {
    r.readStates.push({ index, requestCtx: req.context });
  } else {
    r.send(newMessage({ type: MessageType.MSG_READ_INDEX_RESP, to: req.from, index, context: req.context }));
  }
}
