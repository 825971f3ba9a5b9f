import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftNode } from '../src/driver/raft-node.js';
import { KvClusterClient } from '../src/kv/kv-client.js';
import { addKvService } from '../src/kv/kv-server.js';
import { KvStateMachine } from '../src/kv/kv-state-machine.js';
import { bindServer, createRaftServer } from '../src/transport/grpc-transport.js';

const enc = (s: string): Buffer => Buffer.from(s);

test('a KvStateMachine restored from a snapshot reports the index of each key’s last write', (t) => {
  const a = new KvStateMachine();
  a.apply(KvStateMachine.put('x', enc('1')), 3);
  a.apply(KvStateMachine.put('y', enc('2')), 4);
  a.apply(KvStateMachine.put('x', enc('3')), 7);
  const b = new KvStateMachine();
  b.restore(a.snapshot());
  t.deepEqual(b.get('x'), { value: enc('3'), index: 7 });
  t.deepEqual(b.get('y'), { value: enc('2'), index: 4 });
});

test('a put applied again with the same request id changes nothing and answers the first index, also after a restore', (t) => {
  const a = new KvStateMachine();
  t.is(a.apply(KvStateMachine.put('k', enc('first'), 'req-1'), 5), 5);
  t.is(a.apply(KvStateMachine.put('k', enc('other')), 6), 6);
  // the retry of req-1 (e.g. after a leader change) commits later: it must not undo index 6
  t.is(a.apply(KvStateMachine.put('k', enc('first'), 'req-1'), 9), 5);
  t.deepEqual(a.get('k'), { value: enc('other'), index: 6 });
  const b = new KvStateMachine();
  b.restore(a.snapshot());
  t.is(b.apply(KvStateMachine.put('k', enc('first'), 'req-1'), 12), 5);
  t.deepEqual(b.get('k'), { value: enc('other'), index: 6 });
  // a new request id is applied as usual
  t.is(b.apply(KvStateMachine.put('k', enc('new'), 'req-2'), 13), 13);
  t.deepEqual(b.get('k'), { value: enc('new'), index: 13 });
});

test('the request ids a KvStateMachine remembers are bounded, oldest forgotten first', (t) => {
  const sm = new KvStateMachine(2);
  sm.apply(KvStateMachine.put('a', enc('1'), 'r1'), 1);
  sm.apply(KvStateMachine.put('b', enc('1'), 'r2'), 2);
  sm.apply(KvStateMachine.put('c', enc('1'), 'r3'), 3);
  t.is(sm.apply(KvStateMachine.put('c', enc('1'), 'r3'), 4), 3, 'r3 remembered');
  t.is(sm.apply(KvStateMachine.put('a', enc('2'), 'r1'), 5), 5, 'r1 forgotten: applied as new');
  t.deepEqual(sm.get('a'), { value: enc('2'), index: 5 });
});

/** One Kv member serving the Kv gRPC service; `restart()` reopens it from its data dir. */
async function kvMember(t: ExecutionContext) {
  const dir = await mkdtemp(join(tmpdir(), 'raft-kv-failover-'));
  let node: RaftNode | undefined;
  let server: ReturnType<typeof createRaftServer> | undefined;
  let sm = new KvStateMachine();
  let address = '127.0.0.1:0';
  const open = async () => {
    sm = new KvStateMachine();
    server = createRaftServer();
    node = await RaftNode.open({ id: 1, dataDir: dir, stateMachine: sm, peers: new Map([[1, address]]), server, tickMs: 20, electionTicks: 10, heartbeatTicks: 1, snapshotEvery: 5, fsync: false });
    addKvService(server, node, sm);
    address = `127.0.0.1:${await bindServer(server, address)}`;
    node.run();
    const started = Date.now();
    while (!node.isLeader) {
      if (Date.now() - started > 10_000) throw new Error('no leader after 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const close = async () => {
    await node?.stop();
    server?.forceShutdown();
  };
  t.teardown(async () => {
    await close();
    await rm(dir, { recursive: true, force: true });
  });
  await open();
  return {
    address: () => address,
    sm: () => sm,
    restart: async () => {
      await close();
      await open();
    },
  };
}

test('through the Kv service: Get reports a key’s index after a restart from a snapshot, and a retried put is applied once', async (t) => {
  const m = await kvMember(t);
  let kv = new KvClusterClient([m.address()]);
  const first = await kv.put('k', enc('v1'), 'put-k-1');
  for (let i = 0; i < 12; i++) await kv.put(`other${i}`, enc('x'));
  const again = await kv.put('k', enc('v1'), 'put-k-1');
  t.is(again, first, 'the retry answers with the first index');
  t.deepEqual((await kv.get('k')).index, first);
  kv.close();
  await m.restart(); // restores the newest snapshot (every 5 entries), then replays the WAL after it
  kv = new KvClusterClient([m.address()]);
  t.teardown(() => kv.close());
  const g = await kv.get('k');
  t.true(g.found);
  t.is(g.index, first, 'the index survived the snapshot restore');
  t.is(await kv.put('k', enc('v2'), 'put-k-1'), first, 'the request id survived the snapshot restore');
  t.deepEqual((await kv.get('k')).value, enc('v1'));
});
