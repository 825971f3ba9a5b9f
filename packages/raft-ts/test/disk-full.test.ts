/**
 * A full disk, for real: WALs and RaftNodes whose data dir is a small tmpfs filled to the last
 * byte. The member must acknowledge nothing it did not write, refuse writes at once naming the
 * file, stay a member, and resume without a restart once space returns; nothing acknowledged is
 * lost (each test reads it back from a restart).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { Wal } from '../src/durable/wal.js';
import { DiskWriteError } from '../src/durable/disk-errors.js';
import { RaftNode } from '../src/driver/raft-node.js';
import { KvStateMachine } from '../src/kv/kv-state-machine.js';
import { bindServer, createRaftServer } from '../src/transport/grpc-transport.js';
import { EntryType, type Entry } from '../src/types.js';
import { fill, rootTest, tmpfs } from './helpers/tmpfs.js';

const entry = (index: number, bytes = 1000): Entry => ({ index, term: 1, type: EntryType.ENTRY_NORMAL, data: Buffer.alloc(bytes, index % 251) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - t0;
}

/** Whether p settles within ms. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await sleep(ms);
  return done;
}

rootTest('a WAL on a full disk holds its saves until space returns, then replays every one (a partial write is rolled back)', async (t) => {
  const dir = await tmpfs(t, '256k');
  const stalls: DiskWriteError[] = [];
  let resumedAfter = -1;
  const { wal } = await Wal.open(join(dir, 'wal'), { retry: { initialMs: 10, maxMs: 50, onStall: (e) => stalls.push(e), onResume: (ms) => (resumedAfter = ms) } });
  for (let i = 1; i <= 20; i++) await wal.save({ term: 1, vote: 1, commit: i }, [entry(i)], true);
  const free = await fill(dir);
  // 1 KiB entries: the first may still fit in the segment's last page; later ones cannot.
  const saves: Promise<void>[] = [];
  for (let i = 21; i <= 30; i++) saves.push(wal.save({ term: 1, vote: 1, commit: i }, [entry(i)], true));
  const all = Promise.all(saves);
  t.false(await settlesWithin(all, 500), 'saves on a full disk resolved (acknowledged) although not written');
  t.is(stalls.length, 1, 'one stall reported');
  t.true(stalls[0] instanceof DiskWriteError);
  t.is(stalls[0].code, 'ENOSPC');
  t.regex(stalls[0].message, new RegExp(`cannot write ${join(dir, 'wal')}/\\S+\\.wal: the disk is full \\(ENOSPC`));
  const freedAt = Date.now();
  await free();
  await all;
  // The stall it reports lasted at least until space came back (not a fixed figure: the stall
  // starts when the first save fails, a moment after the saves were issued).
  const stalledUntilFree = freedAt - stalls[0].since;
  t.true(resumedAfter >= stalledUntilFree, `resumed after ${resumedAfter} ms, space came back ${stalledUntilFree} ms after the stall began`);
  await wal.close();
  // A half-written record left in the middle would make the replay refuse (WalCorruptError).
  const again = await Wal.open(join(dir, 'wal'));
  t.deepEqual(
    again.state.entries.map((e) => e.index),
    Array.from({ length: 30 }, (_, i) => i + 1),
  );
  t.is(again.state.hardState?.commit, 30);
  await again.wal.close();
});

async function freePort(): Promise<number> {
  const s = createRaftServer();
  const port = await bindServer(s, '127.0.0.1:0');
  s.forceShutdown();
  return port;
}

interface M {
  node: RaftNode;
  sm: KvStateMachine;
}

async function startNode(id: number, dir: string, peers: Map<number, string>): Promise<M> {
  const sm = new KvStateMachine();
  const node = await RaftNode.start({ id, dataDir: dir, stateMachine: sm, peers, listen: peers.get(id)!, tickMs: 20, electionTicks: 10, proposalTimeoutMs: 5000, diskRetry: { initialMs: 20, maxMs: 200 } });
  return { node, sm };
}

const put = (m: M, key: string): Promise<unknown> => m.node.propose(KvStateMachine.put(key, Buffer.alloc(512, 1)));

rootTest('a single member whose disk is full refuses writes at once naming the file, and takes them again when space returns', async (t: ExecutionContext) => {
  const dir = await tmpfs(t, '1m');
  const peers = new Map([[1, `127.0.0.1:${await freePort()}`]]);
  let m = await startNode(1, dir, peers);
  t.teardown(() => m.node.stop());
  await until('a leader', () => m.node.isLeader);
  const acked: string[] = [];
  for (let i = 0; i < 20; i++) {
    await put(m, `before-${i}`);
    acked.push(`before-${i}`);
  }
  const free = await fill(dir);
  // Writes go on until one is refused: the first ones may still fit in pages the WAL holds.
  let refusal: Error | undefined;
  let unknown = 0;
  for (let i = 0; i < 200 && !refusal; i++) {
    try {
      await put(m, `full-${i}`);
      acked.push(`full-${i}`);
    } catch (e) {
      if ((e as Error).name === 'OutcomeUnknownError') unknown++;
      else refusal = e as Error;
    }
  }
  if (!refusal) return t.fail('200 writes on a full disk were all acknowledged');
  t.log(`full disk: ${acked.length - 20} writes still fitted, ${unknown} in flight got an unknown outcome, then: ${refusal.message}`);
  t.true(refusal instanceof DiskWriteError, refusal.name);
  t.regex(refusal.message, new RegExp(`cannot write ${dir}/wal/\\S+: the disk is full \\(ENOSPC`));
  const t0 = Date.now();
  await t.throwsAsync(put(m, 'refused'), { instanceOf: DiskWriteError });
  // At once: not after the proposal timeout (5 s), whatever the machine's load.
  const refusedMs = Date.now() - t0;
  t.true(refusedMs < 2500, `a refusal took ${refusedMs} ms`);
  t.is(m.node.diskError?.code, 'ENOSPC');
  t.true(m.node.isLeader, 'still the (only) member, leading');
  await sleep(500);
  await free();
  const resumed = await until('a write acknowledged after space returned', async () => {
    try {
      await put(m, 'after');
      return true;
    } catch {
      return false;
    }
  });
  acked.push('after');
  t.log(`writes acknowledged again ${resumed} ms after space returned`);
  t.is(m.node.diskError, undefined);
  // Nothing acknowledged is lost: a restart replays the WAL.
  await m.node.stop();
  m = await startNode(1, dir, peers);
  await until('the restarted member leads', () => m.node.isLeader);
  await until('the restarted member applied its log', () => m.sm.get('after') !== undefined);
  t.deepEqual(
    acked.filter((k) => !m.sm.get(k)),
    [],
    'acknowledged writes missing after a restart',
  );
});

rootTest('a leader whose disk is full loses the leadership to a member that can write, and catches up once space returns', async (t) => {
  const full = await tmpfs(t, '1m');
  const root = await mkdtemp(join(tmpdir(), 'raft-diskfull-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const peers = new Map<number, string>();
  for (const id of [1, 2, 3]) peers.set(id, `127.0.0.1:${await freePort()}`);
  const ms = new Map<number, M>();
  for (const id of [1, 2, 3]) ms.set(id, await startNode(id, id === 1 ? full : join(root, `m${id}`), peers));
  t.teardown(async () => {
    for (const m of ms.values()) await m.node.stop();
  });
  const leader = (): M | undefined => [...ms.values()].find((m) => m.node.isLeader);
  await until('a leader', () => leader() !== undefined);
  if (!ms.get(1)!.node.isLeader) await leader()!.node.transferLeadership(1);
  const m1 = ms.get(1)!;
  const acked: string[] = [];
  for (let i = 0; i < 10; i++) {
    await put(m1, `before-${i}`);
    acked.push(`before-${i}`);
  }
  const free = await fill(full);
  const filled = Date.now();
  for (let i = 0; i < 200 && !m1.node.diskError; i++) {
    await put(m1, `full-${i}`).then(
      () => acked.push(`full-${i}`),
      () => undefined,
    );
  }
  t.truthy(m1.node.diskError, 'member 1 saw its disk full');
  await t.throwsAsync(put(m1, 'refused'), { instanceOf: DiskWriteError });
  // Silent (it sends nothing it cannot back with its disk), it is replaced by 2 or 3.
  const moved = await until('another leader', () => leader() !== undefined && leader() !== m1);
  t.log(`leadership moved ${Date.now() - filled} ms after the disk filled (${moved} ms after the first refusal)`);
  await until('member 1 knows it no longer leads', () => !m1.node.isLeader && m1.node.leader === leader()!.node.id);
  for (let i = 0; i < 10; i++) {
    await put(leader()!, `during-${i}`);
    acked.push(`during-${i}`);
  }
  await free();
  const caught = await until('member 1 applied every write', () => acked.every((k) => m1.sm.get(k) !== undefined) && m1.node.diskError === undefined);
  t.log(`member 1 caught up ${caught} ms after space returned`);
  // Nothing acknowledged is lost, and every member holds the same state.
  await until('every member has the same state', () => new Set([...ms.values()].map((m) => Buffer.from(m.sm.snapshot()).toString('base64'))).size === 1);
  for (const [id, m] of ms) t.deepEqual(acked.filter((k) => !m.sm.get(k)), [], `acknowledged writes missing on member ${id}`);
});
