/** Building wire messages with every field present (the generated types have no defaults). */
import { type Message, MessageType } from '../pb/raft/raft.js';

const EMPTY = Buffer.alloc(0);

export function newMessage(m: Partial<Message> & { type: MessageType }): Message {
  return {
    type: m.type,
    to: m.to ?? 0,
    from: m.from ?? 0,
    term: m.term ?? 0,
    logTerm: m.logTerm ?? 0,
    index: m.index ?? 0,
    entries: m.entries ?? [],
    commit: m.commit ?? 0,
    snapshot: m.snapshot,
    reject: m.reject ?? false,
    rejectHint: m.rejectHint ?? 0,
    context: m.context ?? EMPTY,
  };
}

export function toBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Messages the core makes for itself; never accepted from the network. */
export function isLocalMsg(t: MessageType): boolean {
  return (
    t === MessageType.MSG_HUP ||
    t === MessageType.MSG_BEAT ||
    t === MessageType.MSG_UNREACHABLE ||
    t === MessageType.MSG_SNAP_STATUS ||
    t === MessageType.MSG_CHECK_QUORUM
  );
}

export function isResponseMsg(t: MessageType): boolean {
  return (
    t === MessageType.MSG_APP_RESP ||
    t === MessageType.MSG_VOTE_RESP ||
    t === MessageType.MSG_HEARTBEAT_RESP ||
    t === MessageType.MSG_UNREACHABLE ||
    t === MessageType.MSG_PRE_VOTE_RESP
  );
}

export function voteRespType(t: MessageType): MessageType {
  return t === MessageType.MSG_PRE_VOTE ? MessageType.MSG_PRE_VOTE_RESP : MessageType.MSG_VOTE_RESP;
}
