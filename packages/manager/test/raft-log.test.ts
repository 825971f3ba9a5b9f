import test from 'ava';
import { EventEmitter } from 'node:events';
import { isSwarmError, ErrorCode, ErrorReason, reasonOf, describeError } from '@swarmd/common';
import { RaftLog, createStore, makeObject, cloneObject, type RaftNodeLike, type RaftStateMachine, type MemoryStore } from '../src/index.js';

// A stand-in for raft-ts's RaftNode with its contract: propose resolves with the state machine's
// apply result once applied locally, NotLeaderError on followers; Raft's own entries leave gaps.
class NotLeaderError extends Error {
  constructor(readonly leaderId: number) {
    super(`raft: not the leader; proposal refused (leader is ${leaderId})`);
    this.name = 'NotLeaderError';
  }
}

class FakeCluster {
  index = 0;
  leader = 1;
  /** ReadIndex rounds asked of the nodes, and how to answer the next (ok after a tick by default). */
  readIndexCalls = 0;
  answerRead: () => Promise<void> = () => new Promise((r) => setTimeout(r, 5));
  readonly nodes = new Map<number, FakeNode>();

  async propose(from: number, data: Uint8Array): Promise<unknown> {
    if (from !== this.leader) throw new NotLeaderError(this.leader);
    await Promise.resolve(); // replication takes a while
    this.index += 2; // an entry of Raft's own in between
    let result: unknown;
    for (const [id, n] of this.nodes) {
      const r = n.sm.apply(data, this.index);
      if (id === from) result = r;
    }
    return result;
  }

  elect(id: number): void {
    this.leader = id;
    for (const n of this.nodes.values()) n.emit('leader-change', { leaderId: id, role: n.id === id ? 'leader' : 'follower' });
  }
}

class FakeNode extends EventEmitter<{ 'leader-change': [{ leaderId: number; role: string }] }> implements RaftNodeLike {
  constructor(
    readonly id: number,
    readonly sm: RaftStateMachine,
    private readonly cluster: FakeCluster,
  ) {
    super();
  }
  get isLeader(): boolean {
    return this.cluster.leader === this.id;
  }
  propose(data: Uint8Array): Promise<unknown> {
    return this.cluster.propose(this.id, data);
  }
  linearizableRead(): Promise<void> {
    this.cluster.readIndexCalls++;
    return this.cluster.answerRead();
  }
}

function cluster(n: number): { c: FakeCluster; stores: MemoryStore[]; logs: RaftLog[] } {
  const c = new FakeCluster();
  const stores: MemoryStore[] = [];
  const logs: RaftLog[] = [];
  for (let id = 1; id <= n; id++) {
    const log = new RaftLog();
    stores.push(createStore({ log, clock: { now: () => 42 } }));
    const node = new FakeNode(id, log.stateMachine, c);
    c.nodes.set(id, node);
    log.connect(node);
    logs.push(log);
  }
  return { c, stores, logs };
}

const svc = (id: string, name: string) => makeObject('service', { id, spec: { annotations: { name, labels: {} }, task: undefined, mode: undefined, update: undefined, rollback: undefined, endpoint: undefined } });

test('writes through the leader reach every store; versions are raft indexes', async (t) => {
  const { stores } = cluster(3);
  const [a, b, c] = stores as [MemoryStore, MemoryStore, MemoryStore];
  await a.update((tx) => tx.create('service', svc('s1', 'web')));
  await a.update((tx) => tx.update('service', cloneObject('service', tx.get('service', 's1')!)));
  t.is(a.version(), 4);
  t.deepEqual(b.dump(), a.dump());
  t.deepEqual(c.dump(), a.dump());
  t.is(c.view((tx) => tx.get('service', 's1'))!.meta!.version, 4);
});

test('a follower refuses writes with UNAVAILABLE and the leader hint; leader changes move writes', async (t) => {
  const { c, stores, logs } = cluster(2);
  const [a, b] = stores as [MemoryStore, MemoryStore];
  t.true(logs[0].isLeader());
  t.false(logs[1].isLeader());
  const err = await t.throwsAsync(b.update((tx) => tx.create('service', svc('s1', 'web'))));
  t.true(isSwarmError(err, ErrorCode.UNAVAILABLE));
  t.regex(err.message, /^this manager is no longer the leader \(leadership moved\); the write was not applied/);
  t.is(reasonOf(err), ErrorReason.LEADER_CHANGED, 'clients ask again: nothing was applied');
  t.is((err as { details?: { leaderId?: number } }).details?.leaderId, 1);

  const seen: boolean[] = [];
  logs[1].onLeaderChange((l) => seen.push(l));
  c.elect(2);
  t.deepEqual(seen, [true]);
  t.false(logs[0].isLeader());
  await b.update((tx) => tx.create('service', svc('s1', 'web')));
  t.deepEqual(a.dump(), b.dump());
});

test('a conflict decided at apply reaches the proposer through the raft path', async (t) => {
  const { stores } = cluster(2);
  const [a, b] = stores as [MemoryStore, MemoryStore];
  await a.update((tx) => tx.create('service', svc('s1', 'web')));
  // Two writers on the leader read the same version; both entries are proposed before either is applied.
  const p1 = a.update((tx) => tx.update('service', cloneObject('service', tx.get('service', 's1')!)));
  const p2 = a.update((tx) => tx.update('service', cloneObject('service', tx.get('service', 's1')!)));
  const [r1, r2] = await Promise.allSettled([p1, p2]);
  t.is(r1.status, 'fulfilled');
  t.true(r2.status === 'rejected' && isSwarmError(r2.reason, ErrorCode.CONFLICT));
  t.deepEqual(a.dump(), b.dump());
});

test('raft restores a snapshot without an index: the store takes the version from the snapshot', async (t) => {
  const { stores, logs } = cluster(1);
  await stores[0].update((tx) => tx.create('service', svc('s1', 'web')));
  const data = logs[0].stateMachine.snapshot();
  const other = new RaftLog();
  const s2 = createStore({ log: other });
  other.stateMachine.restore(data);
  t.is(s2.version(), 2);
  t.deepEqual(s2.dump(), stores[0].dump());
});

test('an aborted proposal is CANCELLED', async (t) => {
  const { stores } = cluster(1);
  const ac = new AbortController();
  const p = stores[0].update((tx) => tx.create('service', svc('s1', 'web')), { signal: ac.signal });
  ac.abort();
  const err = await t.throwsAsync(p);
  t.true(isSwarmError(err, ErrorCode.CANCELLED));
});

test('raft refusals as the store reports them: the outcome (not applied / unknown) and no Raft member number', async (t) => {
  const { NotLeaderError: RaftNotLeader, OutcomeUnknownError, TimeoutError } = await import('raft-ts');
  const cases: [Error, ErrorReason, RegExp][] = [
    [new RaftNotLeader(3415763795), ErrorReason.LEADER_CHANGED, /^this manager is no longer the leader \(leadership moved\); the write was not applied: ask again$/],
    [new OutcomeUnknownError(3415763795), ErrorReason.OUTCOME_UNKNOWN, /^this manager lost the leadership while the write was being committed: it may or may not have been applied$/],
    [new TimeoutError('proposal', 10_000), ErrorReason.OUTCOME_UNKNOWN, /^the write was not committed in time .*: it may or may not have been applied$/],
  ];
  for (const [raftErr, reason, words] of cases) {
    const log = new RaftLog();
    createStore({ log, clock: { now: () => 42 } });
    const node = Object.assign(new EventEmitter(), { isLeader: true, propose: () => Promise.reject(raftErr) }) as unknown as RaftNodeLike;
    log.connect(node);
    const err = await t.throwsAsync(log.propose(new Uint8Array([1])));
    t.true(isSwarmError(err, ErrorCode.UNAVAILABLE), raftErr.name);
    t.is(reasonOf(err), reason, raftErr.name);
    t.regex(err.message, words);
    t.false(err.message.includes('3415763795'), 'no Raft member number in the words');
  }
});

test('a full state disk as the store reports it: refused writes name the disk and the file (not applied), writes in flight are of unknown outcome', async (t) => {
  const { DiskWriteError, OutcomeUnknownError } = await import('raft-ts');
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const disk = new DiskWriteError('/var/lib/swarmd/raft/wal/0000000000000000-0000000000000001.wal', enospc, 0);
  const wal = '/var/lib/swarmd/raft/wal/0000000000000000-0000000000000001.wal: the disk is full (ENOSPC: no space left on device, write)';
  const cases: [Error, ErrorReason, string][] = [
    [
      disk,
      ErrorReason.STATE_DISK_UNWRITABLE,
      `this manager's state disk is full; the write was not applied (free space on it and the manager resumes on its own, no restart needed; or ask another manager): raft: cannot write ${wal}`,
    ],
    [
      new OutcomeUnknownError(7, 'proposal', "this member's disk refused the write", disk),
      ErrorReason.OUTCOME_UNKNOWN,
      `this manager's state disk is full: it refused the write while it was being committed, which may or may not have been applied: raft: this member's disk refused the write before the proposal committed: it may or may not be applied: raft: cannot write ${wal}`,
    ],
  ];
  for (const [raftErr, reason, words] of cases) {
    const log = new RaftLog();
    createStore({ log, clock: { now: () => 42 } });
    log.connect(Object.assign(new EventEmitter(), { isLeader: true, propose: () => Promise.reject(raftErr), linearizableRead: () => Promise.resolve() }));
    const err = await t.throwsAsync(log.propose(new Uint8Array([1])));
    t.true(isSwarmError(err, ErrorCode.UNAVAILABLE), raftErr.name);
    t.is(reasonOf(err), reason, raftErr.name);
    t.is(describeError(err), words);
  }
});

test('concurrent linearizable reads share one ReadIndex round; a read that arrives while a round runs waits for the next', async (t) => {
  const { c, logs } = cluster(3);
  const leader = logs[0];
  const first = Array.from({ length: 10 }, () => leader.linearizableRead());
  t.is(c.readIndexCalls, 1, 'ten reads at once: one round');
  const second = Array.from({ length: 5 }, () => leader.linearizableRead());
  t.is(c.readIndexCalls, 1, 'the next round waits for the running one');
  await Promise.all(first);
  t.is(c.readIndexCalls, 2, 'the reads that came during the first round got a round of their own');
  await Promise.all(second);
  t.is(leader.readRounds, 2);
  await leader.linearizableRead();
  t.is(c.readIndexCalls, 3);
});

test('a ReadIndex round that fails refuses every read of its batch, UNAVAILABLE with a reason a client acts on; the next round starts afresh', async (t) => {
  const { c, logs } = cluster(3);
  const cases: [Error, ErrorReason, RegExp][] = [
    [new NotLeaderError(2), ErrorReason.LEADER_CHANGED, /no longer the leader .*the read was not answered: ask again/],
    [Object.assign(new Error('raft: linearizable read timed out after 1500 ms'), { name: 'TimeoutError' }), ErrorReason.NO_QUORUM, /could not confirm with a majority of the managers that it still leads .*ask another manager/],
  ];
  for (const [raftErr, reason, words] of cases) {
    c.answerRead = () => new Promise((_, reject) => setTimeout(() => reject(raftErr), 5));
    const errs = await Promise.all([logs[0].linearizableRead(), logs[0].linearizableRead()].map((p) => p.then(() => undefined, (e: unknown) => e)));
    for (const err of errs) {
      t.true(isSwarmError(err, ErrorCode.UNAVAILABLE), raftErr.name);
      t.is(reasonOf(err), reason, raftErr.name);
      t.regex(describeError(err), words);
    }
  }
  c.answerRead = () => Promise.resolve();
  await t.notThrowsAsync(logs[0].linearizableRead());
});
