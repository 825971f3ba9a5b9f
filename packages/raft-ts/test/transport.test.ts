import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { GrpcTransport, bindServer, createRaftServer, type TransportHandler } from '../src/transport/grpc-transport.js';
import { Message, MessageBatch, MessageType } from '../src/pb/raft/raft.js';

class Recorder implements TransportHandler {
  received: Message[] = [];
  unreachable: number[] = [];
  snapshots: [number, boolean][] = [];
  private waiters: (() => void)[] = [];
  receive(m: Message): void {
    this.received.push(m);
    for (const w of this.waiters.splice(0)) w();
  }
  reportUnreachable(id: number): void {
    this.unreachable.push(id);
    for (const w of this.waiters.splice(0)) w();
  }
  reportSnapshot(id: number, ok: boolean): void {
    this.snapshots.push([id, ok]);
    for (const w of this.waiters.splice(0)) w();
  }
  async until(cond: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }
}

function mk(p: Partial<Message>): Message {
  return { type: MessageType.MSG_APP, to: 0, from: 0, term: 0, logTerm: 0, index: 0, entries: [], commit: 0, snapshot: undefined, reject: false, rejectHint: 0, context: Buffer.alloc(0), ...p };
}

function msg(from: number, to: number, i: number, type = MessageType.MSG_APP): Message {
  return mk({ type, from, to, term: 1, index: i, entries: [{ type: 0, term: 1, index: i, data: Buffer.alloc(100, i % 256) }] });
}

async function member(t: { teardown(fn: () => void): void }, id: number, clusterId = 7, maxSnapshotBytes?: number) {
  const handler = new Recorder();
  const transport = new GrpcTransport({ id, clusterId, handler, maxSnapshotBytes, snapshotChunkBytes: 1024 });
  const server = createRaftServer();
  transport.addToServer(server);
  const port = await bindServer(server, '127.0.0.1:0');
  t.teardown(() => {
    transport.stop();
    server.forceShutdown();
  });
  return { handler, transport, server, address: `127.0.0.1:${port}` };
}

/** Members 1 and 2, each the other's peer. */
async function pair(t: { teardown(fn: () => void): void }) {
  const a = await member(t, 1);
  const b = await member(t, 2);
  a.transport.addPeer(2, b.address);
  b.transport.addPeer(1, a.address);
  return { a, b };
}

/** Sends one batch over a raw Stream call (as a peer would, or a forger); resolves with the refusal, if any. */
function rawStream(t: { teardown(fn: () => void): void }, address: string) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  return (batch: MessageBatch) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const s = client.makeClientStreamRequest(
        '/raftpb.RaftTransport/Stream',
        (v: MessageBatch) => Buffer.from(MessageBatch.encode(v).finish()),
        (buf: Buffer) => buf,
        (err: grpc.ServiceError | null) => resolve(err),
      );
      s.write(batch);
      s.end();
    });
}

test('messages arrive in order, batched while a write is in flight', async (t) => {
  const { a, b } = await pair(t);
  const N = 2000;
  for (let i = 1; i <= N; i++) a.transport.send([msg(1, 2, i)]);
  await b.handler.until(() => b.handler.received.length === N);
  t.deepEqual(
    b.handler.received.map((m) => m.index),
    Array.from({ length: N }, (_, i) => i + 1),
  );
  t.deepEqual(b.handler.received[5].entries[0].data, Buffer.alloc(100, 6));
  t.true(b.transport.stats.batchesReceived < N / 4, `batches ${b.transport.stats.batchesReceived} for ${N} messages`);
  t.is(a.transport.stats.messagesDropped, 0);
});

test('a heartbeat queued behind appends goes out ahead of them (a busy follower still hears its leader)', async (t) => {
  const { a, b } = await pair(t);
  // The first append goes out alone; the rest queue behind its write, then the heartbeat.
  const N = 500;
  for (let i = 1; i <= N; i++) a.transport.send([msg(1, 2, i)]);
  a.transport.send([mk({ type: MessageType.MSG_HEARTBEAT, from: 1, to: 2, term: 1, commit: 7 })]);
  await b.handler.until(() => b.handler.received.length === N + 1);
  const at = b.handler.received.findIndex((m) => m.type === MessageType.MSG_HEARTBEAT);
  t.true(at >= 0 && at < 5, `the heartbeat arrived as message ${at + 1} of ${N + 1}`);
  // Appends keep their order among themselves.
  const appends = b.handler.received.filter((m) => m.type === MessageType.MSG_APP).map((m) => m.index);
  t.deepEqual(appends, Array.from({ length: N }, (_, i) => i + 1));
});

test('a batch from an unknown member or another cluster is refused with a clear error', async (t) => {
  const b = await member(t, 2);
  b.transport.addPeer(1, '127.0.0.1:1');
  const call = rawStream(t, b.address);
  const unknown = await call({ clusterId: 7, from: 9, messages: [msg(9, 2, 1)] });
  t.is(unknown?.code, grpc.status.PERMISSION_DENIED);
  t.regex(unknown!.details, /member 9 is not a known member/);
  const otherCluster = await call({ clusterId: 8, from: 1, messages: [msg(1, 2, 1)] });
  t.is(otherCluster?.code, grpc.status.PERMISSION_DENIED);
  t.regex(otherCluster!.details, /cluster id 8/);
  const wrongTo = await call({ clusterId: 7, from: 1, messages: [msg(1, 3, 1)] });
  t.is(wrongTo?.code, grpc.status.INVALID_ARGUMENT);
  const local = await call({ clusterId: 7, from: 1, messages: [msg(1, 2, 1, MessageType.MSG_HUP)] });
  t.is(local?.code, grpc.status.INVALID_ARGUMENT);
  t.regex(local!.details, /may not travel/);
  const ok = await call({ clusterId: 7, from: 1, messages: [msg(1, 2, 1)] });
  t.is(ok, null);
  t.is(b.handler.received.length, 1);
});

test('a caller may send only as the member it is: another member\'s id is refused, its own passes (asked once per stream), an unknown identity passes', async (t) => {
  // The identity stands in for a TLS certificate (the manager maps the certificate's node to its
  // member id): here the `x-member` header, or none when it cannot be told yet.
  let asked = 0;
  const handler = new Recorder();
  const b = new GrpcTransport({
    id: 2,
    clusterId: 7,
    handler,
    authorizeSender: (call, from) => {
      asked++;
      const who = call.metadata.get('x-member')[0];
      if (who === undefined) return 'unknown';
      return String(who) === String(from) ? 'yes' : { refused: `the caller is member ${String(who)}` };
    },
  });
  const server = createRaftServer();
  b.addToServer(server);
  const address = `127.0.0.1:${await bindServer(server, '127.0.0.1:0')}`;
  t.teardown(() => {
    b.stop();
    server.forceShutdown();
  });
  b.addPeer(1, '127.0.0.1:1');
  b.addPeer(3, '127.0.0.1:1');
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const send = (who: string | undefined, batches: MessageBatch[]) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const md = new grpc.Metadata();
      if (who !== undefined) md.set('x-member', who);
      const s = client.makeClientStreamRequest(
        '/raftpb.RaftTransport/Stream',
        (v: MessageBatch) => Buffer.from(MessageBatch.encode(v).finish()),
        (buf: Buffer) => buf,
        md,
        (err: grpc.ServiceError | null) => resolve(err),
      );
      for (const x of batches) s.write(x);
      s.end();
    });
  const forged = await send('1', [{ clusterId: 7, from: 3, messages: [msg(3, 2, 1)] }]);
  t.is(forged?.code, grpc.status.PERMISSION_DENIED);
  t.regex(forged!.details, /may not send as member 3: the caller is member 1/);
  t.is(handler.received.length, 0);
  asked = 0;
  const own = await send('1', [1, 2, 3].map((i) => ({ clusterId: 7, from: 1, messages: [msg(1, 2, i)] })));
  t.is(own, null);
  t.is(asked, 1);
  t.is(handler.received.length, 3);
  asked = 0;
  const untold = await send(undefined, [1, 2].map((i) => ({ clusterId: 7, from: 3, messages: [msg(3, 2, i)] })));
  t.is(untold, null);
  t.is(asked, 2);
  t.is(handler.received.length, 5);
});

test('a ReadIndex request a follower relays keeps its requester and arrives with the rest of the batch', async (t) => {
  // Member 1 (a follower) relays member 3's ReadIndex request to member 2 (its leader) in one batch
  // with its own append response: the transport takes both; the leader answers member 3 directly.
  const b = await member(t, 2);
  b.transport.addPeer(1, '127.0.0.1:1');
  b.transport.addPeer(3, '127.0.0.1:1');
  const call = rawStream(t, b.address);
  const relayed = mk({ type: MessageType.MSG_READ_INDEX, from: 3, to: 2, context: Buffer.from('read-7') });
  const appResp = mk({ type: MessageType.MSG_APP_RESP, from: 1, to: 2, term: 1, index: 5 });
  const err = await call({ clusterId: 7, from: 1, messages: [relayed, appResp] });
  t.is(err, null);
  t.deepEqual(
    b.handler.received.map((m) => [m.type, m.from]),
    [
      [MessageType.MSG_READ_INDEX, 3],
      [MessageType.MSG_APP_RESP, 1],
    ],
  );
  // Any other message claiming another sender is still refused, as is a relayed one from a stranger.
  const forged = await call({ clusterId: 7, from: 1, messages: [msg(3, 2, 1)] });
  t.is(forged?.code, grpc.status.INVALID_ARGUMENT);
  t.regex(forged!.details, /message from 3 inside a batch from 1/);
  const stranger = await call({ clusterId: 7, from: 1, messages: [mk({ type: MessageType.MSG_READ_INDEX, from: 9, to: 2 })] });
  t.is(stranger?.code, grpc.status.INVALID_ARGUMENT);
  t.is(b.handler.received.length, 2);
});

test('malformed bytes are refused with INVALID_ARGUMENT', async (t) => {
  const b = await member(t, 2);
  b.transport.addPeer(1, '127.0.0.1:1');
  const client = new grpc.Client(b.address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const err = await new Promise<grpc.ServiceError | null>((resolve) => {
    const s = client.makeClientStreamRequest(
      '/raftpb.RaftTransport/Stream',
      (v: Buffer) => v,
      (buf: Buffer) => buf,
      (e: grpc.ServiceError | null) => resolve(e),
    );
    s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x1a, 0xff]));
    s.end();
  });
  t.is(err?.code, grpc.status.INVALID_ARGUMENT);
  t.regex(err!.details, /malformed MessageBatch/);
  t.is(b.handler.received.length, 0);
});

test('a batch whose last varint is cut off (which protobufjs reads past the end) is refused as malformed', async (t) => {
  const b = await member(t, 2);
  b.transport.addPeer(1, '127.0.0.1:1');
  const client = new grpc.Client(b.address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  // field 1 (cluster_id, a varint) with three continuation bytes and no end
  const cut = Buffer.from([0x08, 0xff, 0xff, 0xff]);
  t.notThrows(() => MessageBatch.decode(cut), 'the generated decoder alone accepts it');
  const err = await new Promise<grpc.ServiceError | null>((resolve) => {
    const s = client.makeClientStreamRequest('/raftpb.RaftTransport/Stream', (v: Buffer) => v, (buf: Buffer) => buf, (e: grpc.ServiceError | null) => resolve(e));
    s.write(cut);
    s.end();
  });
  t.is(err?.code, grpc.status.INVALID_ARGUMENT);
  t.regex(err!.details, /malformed MessageBatch \(4 bytes\): it ends at byte 5, past its 4 bytes/);
  t.is(b.handler.received.length, 0);
});

test('a snapshot travels in chunks and is reported', async (t) => {
  const { a, b } = await pair(t);
  const data = Buffer.alloc(3 * 1024 * 1024 + 17);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
  const m = mk({
    type: MessageType.MSG_SNAP,
    from: 1,
    to: 2,
    term: 3,
    snapshot: { data, metadata: { index: 500, term: 3, confState: { voters: [1, 2], learners: [] } } },
  });
  a.transport.send([m]);
  await a.handler.until(() => a.handler.snapshots.length === 1);
  t.deepEqual(a.handler.snapshots, [[2, true]]);
  t.is(b.handler.received.length, 1);
  const got = b.handler.received[0];
  t.is(got.snapshot?.metadata?.index, 500);
  t.true(Buffer.from(got.snapshot!.data).equals(data));
});

test('a down peer: bounded queue, messages dropped and the peer reported unreachable', async (t) => {
  const a = await member(t, 1);
  const dead = await member(t, 3);
  const addr = dead.address;
  dead.server.forceShutdown();
  a.transport.addPeer(3, addr);
  for (let i = 1; i <= 10_000; i++) a.transport.send([msg(1, 3, i)]);
  await a.handler.until(() => a.handler.unreachable.includes(3));
  t.true(a.transport.stats.messagesDropped >= 10_000 - 4096 - 1, `dropped ${a.transport.stats.messagesDropped}`);
  // The snapshot path reports failure too.
  a.transport.send([mk({ type: MessageType.MSG_SNAP, from: 1, to: 3, snapshot: { data: Buffer.alloc(10), metadata: { index: 1, term: 1, confState: undefined } } })]);
  await a.handler.until(() => a.handler.snapshots.length === 1);
  t.deepEqual(a.handler.snapshots, [[3, false]]);
});

test('reconnects after the peer comes back', async (t) => {
  const a = await member(t, 1);
  const handler = new Recorder();
  const b = new GrpcTransport({ id: 2, clusterId: 7, handler });
  b.addPeer(1, a.address);
  // Reserve a port, stop, and later start the peer on it.
  const s1 = createRaftServer();
  const port = await bindServer(s1, '127.0.0.1:0');
  s1.forceShutdown();
  a.transport.addPeer(2, `127.0.0.1:${port}`);
  a.transport.send([msg(1, 2, 1)]);
  await a.handler.until(() => a.handler.unreachable.length > 0);
  const s2 = createRaftServer();
  b.addToServer(s2);
  await bindServer(s2, `127.0.0.1:${port}`);
  t.teardown(() => {
    b.stop();
    s2.forceShutdown();
  });
  const deadline = Date.now() + 8000;
  let i = 2;
  while (handler.received.length === 0 && Date.now() < deadline) {
    a.transport.send([msg(1, 2, i++)]);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.true(handler.received.length > 0);
});

test('a snapshot over the receiver limit is refused and reported failed', async (t) => {
  const a = await member(t, 1);
  const b = await member(t, 2, 7, 4000);
  a.transport.addPeer(2, b.address);
  b.transport.addPeer(1, a.address);
  a.transport.send([mk({ type: MessageType.MSG_SNAP, from: 1, to: 2, snapshot: { data: Buffer.alloc(10_000, 1), metadata: { index: 9, term: 1, confState: undefined } } })]);
  await a.handler.until(() => a.handler.snapshots.length === 1);
  t.deepEqual(a.handler.snapshots, [[2, false]]);
  t.is(b.handler.received.length, 0);
  t.is(b.transport.stats.refused, 1);
});
