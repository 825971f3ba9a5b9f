import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftNode } from '../src/driver/raft-node.js';
import { KvStateMachine } from '../src/kv/kv-state-machine.js';
import { bindServer, createRaftServer } from '../src/transport/grpc-transport.js';

async function freePort(): Promise<number> {
  const s = createRaftServer();
  const port = await bindServer(s, '127.0.0.1:0');
  s.forceShutdown();
  return port;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Found by the manager's cluster test: a founding member (bootstrapped alone) adds two members,
// is stopped, and restarts with a durable commit index behind those conf changes (the commit
// index is not fsynced). It must still accept the messages of the members its log names, or it
// never learns the commit index from the new leader and never catches up.
test('a restarted member accepts members named by conf changes it has not applied yet', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'raft-peers-'));
  const nodes = new Map<number, RaftNode>();
  t.teardown(async () => {
    for (const n of nodes.values()) await n.stop();
    await rm(root, { recursive: true, force: true });
  });
  const addr = new Map<number, string>();
  for (const id of [1, 2, 3]) addr.set(id, `127.0.0.1:${await freePort()}`);
  const sms = new Map<number, KvStateMachine>();
  const start = async (id: number, peers: Map<number, string>, joining: boolean): Promise<RaftNode> => {
    const sm = new KvStateMachine();
    sms.set(id, sm);
    const n = await RaftNode.start({ id, dataDir: join(root, `m${id}`), stateMachine: sm, peers, join: joining, listen: addr.get(id)!, tickMs: 20, electionTicks: 10, fsync: false });
    nodes.set(id, n);
    return n;
  };
  const one = await start(1, new Map([[1, addr.get(1)!]]), false);
  await until(() => one.isLeader, 5000, 'member 1 to lead');
  for (const id of [2, 3]) {
    await start(id, new Map([[1, addr.get(1)!], [id, addr.get(id)!]]), true);
    await one.addLearner(id, addr.get(id)!);
    for (let i = 0; ; i++) {
      try {
        await one.promote(id);
        break;
      } catch (e) {
        if (i > 100) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }
  await one.propose(KvStateMachine.put('a', Buffer.from('1')));
  await until(() => sms.get(2)!.get('a') !== undefined && sms.get(3)!.get('a') !== undefined, 5000, 'members 2 and 3 to apply');
  await one.stop();
  nodes.delete(1);
  await until(() => nodes.get(2)!.isLeader || nodes.get(3)!.isLeader, 5000, 'a new leader');
  const leader = nodes.get(2)!.isLeader ? nodes.get(2)! : nodes.get(3)!;
  await leader.propose(KvStateMachine.put('b', Buffer.from('2')));
  await start(1, new Map(), false);
  await until(() => sms.get(1)!.get('b') !== undefined, 10_000, 'the restarted founder to catch up');
  t.deepEqual(sms.get(1)!.get('a')?.value, Buffer.from('1'));
});
