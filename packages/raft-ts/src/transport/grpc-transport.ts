/**
 * Raft messages between members over gRPC (the RaftTransport service of raft.proto).
 *
 * Sending: one long-lived client stream (Stream) per peer. Messages queue per peer; whatever
 * queued while the previous write was in flight goes out as one MessageBatch. The queue is
 * bounded: when a peer is slow or down, new messages are dropped and the peer is reported
 * unreachable (Raft resends what matters), so memory stays bounded. A broken stream is
 * reopened with exponential backoff. Snapshots (MSG_SNAP) go in chunks over SendSnapshot, one
 * at a time per peer, and their outcome is reported with reportSnapshot(ok).
 *
 * Receiving: batches from an unknown member, for another cluster or another member, and
 * malformed ones, are refused with a gRPC error that says why; the stream then ends. A message's
 * sender must be the batch's sender, except for the requests a follower relays to its leader
 * (MSG_READ_INDEX, MSG_TRANSFER_LEADER), which keep the requester, a known member, as sender.
 *
 * Credentials are passed in (insecure for tests; the manager passes mTLS credentials).
 */
import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import {
  Message,
  MessageBatch,
  MessageType,
  RaftTransportClient,
  RaftTransportService,
  SnapshotChunk,
  type SnapshotAck,
  type StreamAck,
} from '../pb/raft/raft.js';
import type { Logger } from '../types.js';
import _m0 from 'protobufjs/minimal.js';

/** Where received messages and delivery outcomes go (the RaftNode driver). */
export interface TransportHandler {
  receive(m: Message): void;
  reportUnreachable(id: number): void;
  reportSnapshot(id: number, ok: boolean): void;
  /**
   * The connection to a peer broke (its process died, or the network dropped it), as opposed
   * to a refusal or a full queue: a follower uses it to stop waiting a whole election timeout for
   * a leader that is gone.
   */
  peerLost?(id: number): void;
}

export interface TransportOptions {
  /** This member's id. */
  id: number;
  /** Batches carrying another cluster id are refused (0 = accept only 0). */
  clusterId: number;
  handler: TransportHandler;
  channelCredentials?: grpc.ChannelCredentials;
  logger?: Logger;
  /** Messages queued per peer before new ones are dropped (default 4096). */
  maxQueue?: number;
  /** Soft upper bound of one batch's payload (default 4 MiB). */
  maxBatchBytes?: number;
  /** Snapshot chunk size (default 1 MiB). */
  snapshotChunkBytes?: number;
  /** Reconnect backoff (default 50 ms doubling to 2 s). */
  backoffMs?: { initial: number; max: number };
  /** A received snapshot larger than this is refused (default 1 GiB). */
  maxSnapshotBytes?: number;
  /**
   * Whether the caller of a stream may speak for member `from` (e.g. its TLS certificate names
   * the node that is member `from`). Without it, any caller the server admits may send batches
   * as any known member.
   */
  authorizeSender?: SenderCheck;
}

/**
 * `yes`: the caller is member `from` (asked once per stream and sender); `unknown`: it cannot be
 * told yet (a member whose identity this member has not applied), the batch passes and the next
 * one asks again; `{ refused }`: PERMISSION_DENIED with that reason, the stream ends.
 */
export type SenderCheck = (call: grpc.ServerReadableStream<unknown, unknown>, from: number) => 'yes' | 'unknown' | { refused: string };

export const GRPC_MAX_MESSAGE = 64 * 1024 * 1024;

/** gRPC channel/server options suited to Raft traffic (big batches, fast failure detection). */
export const RAFT_GRPC_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': GRPC_MAX_MESSAGE,
  'grpc.max_send_message_length': GRPC_MAX_MESSAGE,
  'grpc.initial_reconnect_backoff_ms': 50,
  'grpc.max_reconnect_backoff_ms': 1000,
  // No transparent-retry buffering of every message by grpc-js (Raft resends what matters).
  // (grpc.enable_channelz: 0 would save more per call, but with grpc-js 1.14.7 a member then
  // never reconnected to a restarted peer: test/node.test.ts caught it.)
  'grpc.enable_retries': 0,
};

/**
 * Channel options of the streams to peers: RAFT_GRPC_OPTIONS plus HTTP/2 keepalive pings, so a
 * connection to a peer that is cut off (link down, partition) or paused (SIGSTOP) is torn down
 * within ~5 s and dialled again, instead of waiting out TCP retransmission backoff (after
 * a 39 s partition a member otherwise heard nothing from the leader for 16 s more).
 */
export const RAFT_PEER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  ...RAFT_GRPC_OPTIONS,
  // 5 s / 10 s was tried: a member cut off for 30 s then heard from the leader 18 s after its
  // link came back (7.5 s with these values, on a machine at load average ~20).
  'grpc.keepalive_time_ms': 2_000,
  'grpc.keepalive_timeout_ms': 3_000,
};

/** Messages that are local to a member and never travel. */
const LOCAL_TYPES = new Set<MessageType>([
  MessageType.MSG_HUP,
  MessageType.MSG_BEAT,
  MessageType.MSG_UNREACHABLE,
  MessageType.MSG_SNAP_STATUS,
  MessageType.MSG_CHECK_QUORUM,
]);
const MAX_TYPE = MessageType.MSG_PRE_VOTE_RESP;
/** Requests a follower relays to its leader with the original requester as the sender. */
const RELAYED_TYPES = new Set<MessageType>([MessageType.MSG_READ_INDEX, MessageType.MSG_TRANSFER_LEADER]);

/** A request that failed to decode: the handler refuses it with a clear error. */
interface Malformed {
  malformed: string;
}
function isMalformed(v: unknown): v is Malformed {
  return typeof v === 'object' && v !== null && 'malformed' in v;
}

/**
 * Decodes `b` as a whole, or says why it is malformed. protobufjs reads a varint cut off by the
 * end of the message past that end (as zero bits) instead of failing: the reader then stops
 * beyond the last byte, which is refused here like any other decoding error.
 */
function decodeExactly<T>(codec: { decode(input: _m0.Reader): T }, name: string, b: Buffer): T | Malformed {
  try {
    const r = _m0.Reader.create(b);
    const v = codec.decode(r);
    if (r.pos !== b.length) throw new Error(`it ends at byte ${r.pos}, past its ${b.length} bytes (a value cut off)`);
    return v;
  } catch (e) {
    return { malformed: `malformed ${name} (${b.length} bytes): ${(e as Error).message}` };
  }
}

/** The service definition with decoders that never throw (so we can answer malformed input ourselves). */
const LENIENT_SERVICE: grpc.ServiceDefinition = {
  stream: {
    ...RaftTransportService.stream,
    requestDeserialize: (b: Buffer): MessageBatch | Malformed => decodeExactly(MessageBatch, 'MessageBatch', b),
  },
  sendSnapshot: {
    ...RaftTransportService.sendSnapshot,
    requestDeserialize: (b: Buffer): SnapshotChunk | Malformed => decodeExactly(SnapshotChunk, 'SnapshotChunk', b),
  },
};

function refuse(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

export interface TransportStats {
  batchesSent: number;
  messagesSent: number;
  messagesDropped: number;
  batchesReceived: number;
  messagesReceived: number;
  refused: number;
  snapshotsSent: number;
  snapshotsFailed: number;
}

/**
 * Small messages that keep leadership stable: they go ahead of queued appends, so a follower busy
 * taking in megabytes of entries still hears the leader's heartbeats within an election timeout
 * (as etcd sends them on a stream of their own). Raft allows any reordering between messages.
 */
const URGENT = new Set<MessageType>([
  MessageType.MSG_HEARTBEAT,
  MessageType.MSG_HEARTBEAT_RESP,
  MessageType.MSG_VOTE,
  MessageType.MSG_VOTE_RESP,
  MessageType.MSG_PRE_VOTE,
  MessageType.MSG_PRE_VOTE_RESP,
  MessageType.MSG_TIMEOUT_NOW,
]);

class Peer {
  private client: RaftTransportClient | undefined;
  private stream: grpc.ClientWritableStream<MessageBatch> | undefined;
  private queue: Message[] = [];
  /** URGENT messages waiting: sent before `queue`. */
  private urgent: Message[] = [];
  private inFlight = false;
  private backoff: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private snapshotInFlight = false;
  private stopped = false;
  private lastDropLog = 0;

  constructor(
    readonly id: number,
    public address: string,
    private readonly t: GrpcTransport,
  ) {
    this.backoff = t.backoff.initial;
  }

  send(m: Message): void {
    if (this.stopped) return;
    if (m.type === MessageType.MSG_SNAP) {
      this.sendSnapshot(m);
      return;
    }
    const urgent = URGENT.has(m.type);
    if ((urgent ? this.urgent : this.queue).length >= this.t.maxQueue) {
      this.t.stats.messagesDropped++;
      const now = Date.now();
      if (now - this.lastDropLog > 1000) {
        this.lastDropLog = now;
        this.t.logger?.warn('transport: peer queue full; dropping messages', { peer: this.id, address: this.address, queued: this.queue.length });
      }
      this.t.handler.reportUnreachable(this.id);
      return;
    }
    if (urgent) this.urgent.push(m);
    else this.queue.push(m);
    this.flush();
  }

  private ensureClient(): RaftTransportClient {
    this.client ??= new RaftTransportClient(this.address, this.t.credentials, RAFT_PEER_CHANNEL_OPTIONS);
    return this.client;
  }

  private openStream(): grpc.ClientWritableStream<MessageBatch> {
    const stream = this.ensureClient().stream((err: grpc.ServiceError | null, _ack: StreamAck) => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.inFlight = false;
      if (this.stopped) return;
      if (err) {
        if (err.code === grpc.status.PERMISSION_DENIED || err.code === grpc.status.INVALID_ARGUMENT) {
          this.t.logger?.error('transport: peer refused our messages', { peer: this.id, address: this.address, error: err.details });
        } else {
          this.t.logger?.debug('transport: stream to peer broke', { peer: this.id, address: this.address, error: err.details });
          if (err.code === grpc.status.UNAVAILABLE) this.t.handler.peerLost?.(this.id);
        }
      }
      this.dropQueue();
      this.scheduleReconnect();
    });
    stream.on('error', () => undefined); // reported through the callback
    this.stream = stream;
    return stream;
  }

  private dropQueue(): void {
    if (this.queue.length || this.urgent.length) {
      this.t.stats.messagesDropped += this.queue.length + this.urgent.length;
      this.queue = [];
      this.urgent = [];
    }
    this.t.handler.reportUnreachable(this.id);
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.stopped) return;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.t.backoff.max);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.flush();
    }, delay);
    this.reconnectTimer.unref();
  }

  private flush(): void {
    if (this.inFlight || this.stopped || this.reconnectTimer || this.queue.length + this.urgent.length === 0) return;
    const stream = this.stream ?? this.openStream();
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && (n === 0 || bytes < this.t.maxBatchBytes)) {
      const m = this.queue[n];
      for (const e of m.entries) bytes += e.data.length + 24;
      bytes += 64;
      n++;
    }
    const appends = n === this.queue.length ? this.queue : this.queue.slice(0, n);
    this.queue = n === this.queue.length ? [] : this.queue.slice(n);
    const messages = this.urgent.length ? [...this.urgent, ...appends] : appends;
    this.urgent = [];
    this.inFlight = true;
    this.t.stats.batchesSent++;
    this.t.stats.messagesSent += messages.length;
    stream.write({ clusterId: this.t.clusterId, from: this.t.id, messages }, () => {
      if (this.stream !== stream) return;
      this.inFlight = false;
      // A successful write means the stream is healthy: reset the backoff.
      this.backoff = this.t.backoff.initial;
      this.flush();
    });
  }

  private sendSnapshot(m: Message): void {
    if (this.snapshotInFlight) {
      this.t.logger?.warn('transport: a snapshot is already on its way to this peer; dropping another', { peer: this.id });
      this.t.handler.reportSnapshot(this.id, false);
      return;
    }
    this.snapshotInFlight = true;
    const data = m.snapshot?.data ?? Buffer.alloc(0);
    const head: Message = { ...m, snapshot: m.snapshot ? { ...m.snapshot, data: Buffer.alloc(0) } : undefined };
    const started = Date.now();
    const done = (ok: boolean, why?: string): void => {
      if (!this.snapshotInFlight) return;
      this.snapshotInFlight = false;
      if (ok) this.t.stats.snapshotsSent++;
      else this.t.stats.snapshotsFailed++;
      this.t.logger?.[ok ? 'info' : 'warn'](`transport: snapshot send ${ok ? 'done' : 'failed'}`, {
        peer: this.id,
        index: m.snapshot?.metadata?.index,
        bytes: data.length,
        ms: Date.now() - started,
        error: why,
      });
      if (this.stopped) return;
      this.t.handler.reportSnapshot(this.id, ok);
      if (!ok) this.t.handler.reportUnreachable(this.id);
    };
    const call = this.ensureClient().sendSnapshot((err: grpc.ServiceError | null, ack: SnapshotAck) => {
      if (err) done(false, err.details);
      else done(ack.ok, ack.error || undefined);
    });
    call.on('error', () => undefined);
    const chunk = this.t.snapshotChunkBytes;
    let offset = 0;
    const writeNext = (): void => {
      if (this.stopped) {
        call.cancel();
        return;
      }
      const end = Math.min(data.length, offset + chunk);
      const last = end >= data.length;
      const c: SnapshotChunk = {
        clusterId: this.t.clusterId,
        from: this.t.id,
        message: offset === 0 ? head : undefined,
        data: data.subarray(offset, end),
        offset,
        last,
      };
      offset = end;
      call.write(c, () => {
        if (last) call.end();
        else writeNext();
      });
    };
    writeNext();
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.stream?.end();
    this.stream = undefined;
    this.client?.close();
    this.client = undefined;
    this.queue = [];
    this.urgent = [];
  }
}

export class GrpcTransport {
  readonly id: number;
  readonly clusterId: number;
  readonly handler: TransportHandler;
  readonly credentials: grpc.ChannelCredentials;
  readonly logger: Logger | undefined;
  readonly maxQueue: number;
  readonly maxBatchBytes: number;
  readonly snapshotChunkBytes: number;
  readonly backoff: { initial: number; max: number };
  readonly maxSnapshotBytes: number;
  readonly authorizeSender: SenderCheck | undefined;
  readonly stats: TransportStats = {
    batchesSent: 0,
    messagesSent: 0,
    messagesDropped: 0,
    batchesReceived: 0,
    messagesReceived: 0,
    refused: 0,
    snapshotsSent: 0,
    snapshotsFailed: 0,
  };
  private readonly peers = new Map<number, Peer>();
  private stopped = false;

  constructor(opts: TransportOptions) {
    this.id = opts.id;
    this.clusterId = opts.clusterId;
    this.handler = opts.handler;
    this.credentials = opts.channelCredentials ?? grpc.credentials.createInsecure();
    this.logger = opts.logger;
    this.maxQueue = opts.maxQueue ?? 4096;
    this.maxBatchBytes = opts.maxBatchBytes ?? 4 * 1024 * 1024;
    this.snapshotChunkBytes = opts.snapshotChunkBytes ?? 1024 * 1024;
    this.backoff = opts.backoffMs ?? { initial: 50, max: 2000 };
    this.maxSnapshotBytes = opts.maxSnapshotBytes ?? 1024 * 1024 * 1024;
    this.authorizeSender = opts.authorizeSender;
  }

  /** Adds (or re-addresses) a peer. */
  addPeer(id: number, address: string): void {
    if (id === this.id) return;
    const p = this.peers.get(id);
    if (p && p.address === address) return;
    p?.stop();
    this.peers.set(id, new Peer(id, address, this));
  }

  removePeer(id: number): void {
    this.peers.get(id)?.stop();
    this.peers.delete(id);
  }

  hasPeer(id: number): boolean {
    return this.peers.has(id);
  }

  peerAddresses(): Map<number, string> {
    return new Map([...this.peers].map(([id, p]) => [id, p.address]));
  }

  /** Queues messages for their peers (never blocks; drops and reports when a peer is slow). */
  send(messages: readonly Message[]): void {
    if (this.stopped) return;
    for (const m of messages) {
      const p = this.peers.get(m.to);
      if (!p) {
        this.logger?.debug('transport: message for an unknown peer dropped', { to: m.to, type: MessageType[m.type] });
        this.stats.messagesDropped++;
        continue;
      }
      p.send(m);
    }
  }

  /** Registers the RaftTransport service on a server the application owns (it may serve more). */
  addToServer(server: grpc.Server): void {
    server.addService(LENIENT_SERVICE, {
      stream: (call: grpc.ServerReadableStream<MessageBatch | Malformed, StreamAck>, callback: grpc.sendUnaryData<StreamAck>) =>
        this.serveStream(call, callback),
      sendSnapshot: (call: grpc.ServerReadableStream<SnapshotChunk | Malformed, SnapshotAck>, callback: grpc.sendUnaryData<SnapshotAck>) =>
        this.serveSnapshot(call, callback),
    });
  }

  stop(): void {
    this.stopped = true;
    for (const p of this.peers.values()) p.stop();
    this.peers.clear();
  }

  /** Why a batch (or chunk header) is refused, or undefined when it is fine. */
  private check(clusterId: number, from: number): grpc.ServiceError | undefined {
    if (clusterId !== this.clusterId) {
      return refuse(grpc.status.PERMISSION_DENIED, `raft transport: cluster id ${clusterId} is not this cluster (${this.clusterId})`);
    }
    if (!this.peers.has(from)) {
      return refuse(grpc.status.PERMISSION_DENIED, `raft transport: member ${from} is not a known member of this cluster (member ${this.id})`);
    }
    return undefined;
  }

  /** PERMISSION_DENIED when the caller may not speak for `from`; `vouched` keeps the senders already checked on this call. */
  private checkSender(call: grpc.ServerReadableStream<unknown, unknown>, from: number, vouched: Set<number>): grpc.ServiceError | undefined {
    const check = this.authorizeSender;
    if (!check || vouched.has(from)) return undefined;
    const v = check(call, from);
    if (v === 'yes') vouched.add(from);
    else if (v !== 'unknown') return refuse(grpc.status.PERMISSION_DENIED, `raft transport: this caller may not send as member ${from}: ${v.refused}`);
    return undefined;
  }

  private checkMessage(m: Message, from: number): grpc.ServiceError | undefined {
    // A follower relays a ReadIndex request or a leader-transfer request to its leader keeping the
    // original requester (Raft answers the requester directly): its sender may be another member.
    const relayed = RELAYED_TYPES.has(m.type) && (this.peers.has(m.from) || m.from === this.id);
    if (m.from !== from && !relayed) return refuse(grpc.status.INVALID_ARGUMENT, `raft transport: message from ${m.from} inside a batch from ${from}`);
    if (m.to !== this.id) return refuse(grpc.status.INVALID_ARGUMENT, `raft transport: message for member ${m.to} reached member ${this.id}`);
    const type = m.type as number;
    if (!(type >= 0 && type <= (MAX_TYPE as number)) || LOCAL_TYPES.has(m.type)) {
      return refuse(grpc.status.INVALID_ARGUMENT, `raft transport: message type ${m.type} may not travel between members`);
    }
    return undefined;
  }

  private serveStream(call: grpc.ServerReadableStream<MessageBatch | Malformed, StreamAck>, callback: grpc.sendUnaryData<StreamAck>): void {
    let received = 0;
    let finished = false;
    const vouched = new Set<number>();
    const fail = (err: grpc.ServiceError): void => {
      if (finished) return;
      finished = true;
      this.stats.refused++;
      this.logger?.warn('transport: refused a peer stream', { error: err.details, peer: call.getPeer() });
      callback(err);
    };
    call.on('data', (b: MessageBatch | Malformed) => {
      if (finished || this.stopped) return;
      if (isMalformed(b)) return fail(refuse(grpc.status.INVALID_ARGUMENT, `raft transport: ${b.malformed}`));
      const bad = this.check(b.clusterId, b.from) ?? this.checkSender(call, b.from, vouched) ?? b.messages.map((m) => this.checkMessage(m, b.from)).find((e) => e !== undefined);
      if (bad) return fail(bad);
      this.stats.batchesReceived++;
      this.stats.messagesReceived += b.messages.length;
      received += b.messages.length;
      for (const m of b.messages) this.handler.receive(m);
    });
    call.on('end', () => {
      if (finished) return;
      finished = true;
      callback(null, { received });
    });
    call.on('error', () => {
      finished = true;
    });
  }

  private serveSnapshot(
    call: grpc.ServerReadableStream<SnapshotChunk | Malformed, SnapshotAck>,
    callback: grpc.sendUnaryData<SnapshotAck>,
  ): void {
    let head: Message | undefined;
    const parts: Buffer[] = [];
    let size = 0;
    let finished = false;
    const vouched = new Set<number>();
    const fail = (err: grpc.ServiceError): void => {
      if (finished) return;
      finished = true;
      this.stats.refused++;
      this.logger?.warn('transport: refused a snapshot', { error: err.details, peer: call.getPeer() });
      callback(err);
    };
    call.on('data', (c: SnapshotChunk | Malformed) => {
      if (finished || this.stopped) return;
      if (isMalformed(c)) return fail(refuse(grpc.status.INVALID_ARGUMENT, `raft transport: ${c.malformed}`));
      const bad = this.check(c.clusterId, c.from) ?? this.checkSender(call, c.from, vouched);
      if (bad) return fail(bad);
      if (!head) {
        if (!c.message || c.offset !== 0) return fail(refuse(grpc.status.INVALID_ARGUMENT, 'raft transport: the first snapshot chunk must carry the message'));
        const e = this.checkMessage(c.message, c.from);
        if (e) return fail(e);
        if (c.message.type !== MessageType.MSG_SNAP || !c.message.snapshot?.metadata) {
          return fail(refuse(grpc.status.INVALID_ARGUMENT, 'raft transport: SendSnapshot carries MSG_SNAP with snapshot metadata only'));
        }
        head = c.message;
      } else if (c.message) {
        return fail(refuse(grpc.status.INVALID_ARGUMENT, 'raft transport: only the first snapshot chunk carries a message'));
      }
      if (c.offset !== size) return fail(refuse(grpc.status.INVALID_ARGUMENT, `raft transport: snapshot chunk at offset ${c.offset}, expected ${size}`));
      if (size + c.data.length > this.maxSnapshotBytes) {
        return fail(refuse(grpc.status.RESOURCE_EXHAUSTED, `raft transport: snapshot larger than ${this.maxSnapshotBytes} bytes`));
      }
      parts.push(c.data);
      size += c.data.length;
      if (c.last) {
        finished = true;
        const m: Message = { ...head, snapshot: { ...head.snapshot!, data: Buffer.concat(parts, size) } };
        this.stats.messagesReceived++;
        this.handler.receive(m);
        callback(null, { ok: true, error: '' });
      }
    });
    call.on('end', () => {
      if (finished) return;
      fail(refuse(grpc.status.INVALID_ARGUMENT, 'raft transport: snapshot stream ended before its last chunk'));
    });
    call.on('error', () => {
      finished = true;
    });
  }
}

/** Binds a server; resolves with the bound port (use "127.0.0.1:0" for a free one). */
export async function bindServer(server: grpc.Server, address: string, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  disableNagle(server);
  return port;
}

const nagleOff = new WeakSet<object>();

/**
 * grpc-js sets TCP_NODELAY on client sockets but not on the sockets its server accepts, so a
 * response's trailers can wait for the client's delayed ACK. Turn Nagle off on accepted
 * connections (through grpc-js's internal listener map; a no-op if that ever changes).
 */
function disableNagle(server: grpc.Server): void {
  const listeners = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map)) return;
  for (const l of listeners.keys() as IterableIterator<unknown>) {
    if (!(l instanceof EventEmitter) || nagleOff.has(l)) continue;
    nagleOff.add(l);
    l.prependListener('connection', (socket: unknown) => {
      if (socket instanceof Socket) socket.setNoDelay(true);
    });
  }
}

/** A gRPC server with options suited to Raft traffic. */
export function createRaftServer(): grpc.Server {
  return new grpc.Server(RAFT_GRPC_OPTIONS);
}

export { Message };
