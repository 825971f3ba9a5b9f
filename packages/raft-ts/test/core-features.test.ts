import test from 'ava';
import { ConfChangeType, EntryType, MemoryStorage, MessageType, ProposalDroppedError } from '../src/index.js';
import { CoreNet } from './helpers/core-net.js';

const cc = (type: ConfChangeType, nodeId: number) => ({ type, nodeId, context: Buffer.alloc(0) });

test('PreVote: a partitioned member does not disrupt a stable leader when it comes back', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  const term = net.get(1).raw.status().term;
  net.isolate(3);
  net.tickAll(100);
  // Pre-elections never won: 3's term did not move.
  t.is(net.get(3).raw.status().term, term);
  net.heal();
  net.tickAll(20);
  t.is(net.get(1).raw.status().role, 'leader');
  t.is(net.get(1).raw.status().term, term);
  t.is(net.get(3).raw.status().leaderId, 1);
});

test('CheckQuorum lease: a member that hears from a leader ignores a higher-term vote request', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false } });
  net.campaign(1);
  net.tickAll(1);
  const term = net.get(1).raw.status().term;
  net.isolate(3);
  net.tickAll(30); // 3 campaigns alone, its term climbs
  const t3 = net.get(3).raw.status().term;
  t.true(t3 > term);
  net.heal();
  // 3 asks for votes at once; 2 heard from leader 1 within the election timeout.
  net.get(3).raw.campaign();
  net.processReady(3);
  net.queue = net.queue.filter((m) => m.type === MessageType.MSG_VOTE && m.to === 2);
  t.is(net.queue.length, 1);
  net.deliverOnce();
  t.is(net.get(2).raw.status().term, term);
  t.is(net.get(2).raw.status().leaderId, 1);
  t.false(net.get(2).raw.hasReady() && net.get(2).raw.ready().messages.some((m) => m.type === MessageType.MSG_VOTE_RESP));
  // Eventually the cluster settles on one term and one leader (the stale leader learns the higher
  // term from 3's replies to its heartbeats and steps down).
  net.tickAll(40);
  net.checkElectionSafety();
  t.truthy(net.leader());
  t.is(new Set([...net.members.values()].map((m) => m.raw.status().term)).size, 1);
});

test('without the lease (CheckQuorum off) a higher-term vote request deposes a leader', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false, checkQuorum: false } });
  net.campaign(1);
  net.get(3).raw.campaign();
  net.stabilize();
  t.is(net.get(1).raw.status().role, 'follower');
  t.is(net.get(3).raw.status().term, 2);
  net.checkElectionSafety();
});

test('CheckQuorum: a partitioned leader steps down; the majority elects a new one', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.isolate(1);
  net.tickAll(25);
  t.is(net.get(1).raw.status().role, 'follower');
  const l = net.leader();
  t.truthy(l);
  t.not(l!.id, 1);
  net.heal();
  net.tickAll(5);
  t.is(net.get(1).raw.status().leaderId, l!.id);
  net.checkElectionSafety();
});

test('learners receive entries but never vote or count; promotion makes a voter', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.propose(1, 'a');
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 4));
  net.stabilize();
  t.deepEqual(net.get(1).confState, { voters: [1, 2, 3], learners: [4] });
  // The new member starts empty and is caught up by the leader.
  net.addMember(4, new MemoryStorage());
  net.tickAll(3);
  t.deepEqual(net.get(4).applied, ['a']);
  t.deepEqual(net.get(4).confState, { voters: [1, 2, 3], learners: [4] });
  // A learner never campaigns.
  net.get(4).raw.campaign();
  net.stabilize();
  t.is(net.get(4).raw.status().role, 'follower');
  // A learner does not count toward the quorum: leader + learner cannot commit.
  net.isolate(2);
  net.isolate(3);
  const commit = net.get(1).raw.status().commit;
  net.get(1).raw.propose(Buffer.from('b'));
  net.stabilize();
  t.is(net.get(1).raw.status().commit, commit);
  t.is(net.get(4).storage.lastIndex(), commit + 1); // it did receive the entry
  net.heal();
  net.tickAll(2);
  // Promotion (CONF_ADD_NODE on a learner); a second change while one is pending is refused.
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_ADD_NODE, 4));
  t.throws(() => net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_ADD_NODE, 5)), { instanceOf: ProposalDroppedError });
  net.stabilize();
  for (const id of [1, 2, 3, 4]) t.deepEqual(net.get(id).confState, { voters: [1, 2, 3, 4], learners: [] });
  // Now 4 counts: with 2 and 3 gone, 1 and 4 are not a majority of 4 either, but 1, 2, 4 are.
  net.isolate(3);
  net.propose(1, 'c');
  t.true(net.get(4).applied.includes('c'));
  net.heal();
  net.tickAll(2);
  net.checkStateMachineSafety();
});

test('removing members; a removed leader steps down and hands over', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_REMOVE_NODE, 3));
  net.stabilize();
  t.deepEqual(net.get(1).confState.voters, [1, 2]);
  net.propose(1, 'two');
  t.deepEqual(net.get(2).applied, ['two']);
  net.tickAll(2);
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_REMOVE_NODE, 1));
  net.stabilize();
  t.is(net.get(1).raw.status().role, 'follower');
  t.is(net.get(2).raw.status().role, 'leader');
  t.deepEqual(net.get(2).confState.voters, [2]);
  net.propose(2, 'solo');
  t.deepEqual(net.get(2).applied, ['two', 'solo']);
  // The last voter cannot be removed.
  t.throws(() => net.get(2).raw.proposeConfChange(cc(ConfChangeType.CONF_REMOVE_NODE, 2)), { instanceOf: ProposalDroppedError });
});

test('leader transfer: to an up-to-date follower at once; to a lagging one after catch-up', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.propose(1, 'a');
  net.get(1).raw.transferLeader(2);
  net.stabilize();
  t.is(net.get(2).raw.status().role, 'leader');
  t.is(net.get(1).raw.status().role, 'follower');
  t.is(net.get(2).raw.status().term, 2);
  // Asked on a follower: forwarded to the leader.
  net.isolate(3);
  net.propose(2, 'b');
  net.heal();
  net.get(1).raw.transferLeader(3);
  net.stabilize();
  t.is(net.get(3).raw.status().role, 'leader');
  t.deepEqual(net.get(3).applied, ['a', 'b']);
  net.checkElectionSafety();
});

test('leader transfer: proposals are dropped while it runs; it aborts after an election timeout', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.isolate(3);
  net.propose(1, 'a');
  net.get(1).raw.transferLeader(3);
  net.stabilize();
  t.is(net.get(1).raw.status().leadTransferee, 3);
  t.throws(() => net.get(1).raw.propose(Buffer.from('x')), { instanceOf: ProposalDroppedError });
  net.tickAll(10);
  t.is(net.get(1).raw.status().role, 'leader');
  t.is(net.get(1).raw.status().leadTransferee, 0);
  net.propose(1, 'b');
  t.deepEqual(net.get(2).applied, ['a', 'b']);
});

test('snapshot: a lagging follower is caught up with a snapshot, then with entries', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], snapshotEvery: 5 });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 20; i++) net.propose(1, `e${i}`);
  t.true(net.get(1).storage.firstIndex() > 2);
  let snaps = 0;
  net.dropIf = (m) => {
    if (m.type === MessageType.MSG_SNAP) snaps++;
    return false;
  };
  net.heal();
  net.tickAll(3);
  t.is(snaps, 1);
  net.propose(1, 'after');
  t.deepEqual(net.get(3).applied, [...Array.from({ length: 20 }, (_, i) => `e${i}`), 'after']);
  t.is(net.get(1).raw.status().progress!.get(3)!.state, 'replicate');
  net.checkStateMachineSafety();
});

test('snapshot: a lost snapshot is reported and sent again', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], snapshotEvery: 5 });
  net.campaign(1);
  net.isolate(3);
  for (let i = 0; i < 12; i++) net.propose(1, `e${i}`);
  net.heal();
  let snaps = 0;
  net.dropIf = (m) => m.type === MessageType.MSG_SNAP && ++snaps === 1;
  net.tickAll(6);
  t.true(snaps >= 2);
  t.is(net.get(3).applied.length, 12);
});

test('restart from storage: hard state, entries, snapshot and membership come back', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], snapshotEvery: 4 });
  net.campaign(1);
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 4));
  net.stabilize();
  for (let i = 0; i < 10; i++) net.propose(1, `e${i}`);
  const before = [1, 2, 3].map((id) => net.get(id).raw.status());
  for (const id of [1, 2, 3]) net.restart(id);
  for (const [i, id] of [1, 2, 3].entries()) {
    const st = net.get(id).raw.status();
    t.is(st.term, before[i].term);
    t.is(st.vote, before[i].vote);
    t.is(st.commit, before[i].commit);
    t.is(st.role, 'follower');
    t.deepEqual(st.confState, { voters: [1, 2, 3], learners: [4] });
  }
  net.stabilize();
  for (const id of [1, 2, 3]) t.deepEqual(net.get(id).applied, Array.from({ length: 10 }, (_, i) => `e${i}`));
  net.tickAll(30);
  const l = net.leader();
  t.truthy(l);
  net.propose(l!.id, 'again');
  for (const id of [1, 2, 3]) t.is(net.get(id).applied.length, 11);
  net.checkStateMachineSafety();
  net.checkElectionSafety();
});

test('restart honours config.applied: applied entries are not handed out again', (t) => {
  const net = new CoreNet({ voters: [1] });
  net.campaign(1);
  for (const d of ['a', 'b', 'c']) net.propose(1, d);
  const mem = net.get(1);
  const applied = mem.appliedIndex;
  const node = net.addMember(1, mem.storage, { applied: applied - 1 }, { applied: ['a', 'b'], appliedIndex: applied - 1 });
  t.is(node.raw.status().applied, applied - 1);
  const rd = node.raw.ready();
  t.deepEqual(
    rd.committedEntries.map((e) => e.index),
    [applied],
  );
  t.is(rd.committedEntries[0].type, EntryType.ENTRY_NORMAL);
  t.is(rd.committedEntries[0].data.toString(), 'c');
});

test('ReadIndex: on the leader, forwarded from a follower, and none without a quorum', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.propose(1, 'a');
  const commit = net.get(1).raw.status().commit;
  net.get(1).raw.readIndex(Buffer.from('r1'));
  net.stabilize();
  t.deepEqual(
    net.get(1).readStates.map((r) => [r.index, Buffer.from(r.requestCtx).toString()]),
    [[commit, 'r1']],
  );
  net.get(3).raw.readIndex(Buffer.from('r2'));
  net.stabilize();
  t.deepEqual(
    net.get(3).readStates.map((r) => [r.index, Buffer.from(r.requestCtx).toString()]),
    [[commit, 'r2']],
  );
  // A leader cut off from the others cannot confirm its leadership: no answer.
  net.isolate(1);
  net.get(1).raw.readIndex(Buffer.from('r3'));
  net.tickAll(3);
  t.is(net.get(1).readStates.length, 1);
  // Once healed (before CheckQuorum), the pending read is answered by a later heartbeat round.
  net.heal();
  net.tickAll(2);
  t.is(net.get(1).readStates.length, 2);
});

test('Ready: mustSync when term/vote change or entries come; not for commit-only changes', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false } });
  const n1 = net.get(1).raw;
  n1.campaign();
  const rd = n1.ready();
  t.true(rd.mustSync);
  t.deepEqual(rd.hardState, { term: 1, vote: 1, commit: 1 });
  t.deepEqual(
    rd.messages.map((m) => [MessageType[m.type], m.to, m.term]),
    [
      ['MSG_VOTE', 2, 1],
      ['MSG_VOTE', 3, 1],
    ],
  );
  t.is(rd.softState?.role, 'candidate');
  n1.advance();
  t.false(n1.hasReady());
  net.queue.push(...rd.messages);
  net.stabilize();
  // A follower whose only change is the commit index: no sync needed.
  const n2 = net.get(2).raw;
  net.get(1).raw.propose(Buffer.from('x'));
  net.processReady(1);
  net.deliverOnce(); // the append reaches 2 and 3
  net.processReady(2);
  net.processReady(3);
  net.deliverOnce(); // acks reach 1: committed
  net.processReady(1);
  net.deliverOnce(); // the new commit index reaches 2
  const rd2 = n2.ready();
  t.is(rd2.entries.length, 0);
  t.truthy(rd2.hardState);
  t.false(rd2.mustSync);
  t.deepEqual(
    rd2.committedEntries.map((e) => e.data.toString()),
    ['x'],
  );
  n2.advance();
});

test('Ready: a second ready() before advance() hands out only what is new', (t) => {
  const net = new CoreNet({ voters: [1] });
  net.campaign(1);
  const n = net.get(1).raw;
  n.propose(Buffer.from('a'));
  const rd1 = n.ready();
  t.deepEqual(
    rd1.entries.map((e) => e.data.toString()),
    ['a'],
  );
  t.false(n.hasReady());
  n.propose(Buffer.from('b'));
  t.true(n.hasReady());
  const rd2 = n.ready();
  t.deepEqual(
    rd2.entries.map((e) => e.data.toString()),
    ['b'],
  );
  // Nothing counts as committed on the leader before it is persisted there.
  t.deepEqual(rd1.committedEntries, []);
  t.deepEqual(rd2.committedEntries, []);
  const st = net.get(1).storage;
  st.append(rd1.entries);
  st.append(rd2.entries);
  n.advance();
  t.true(n.hasReady());
  const rd3 = n.ready();
  t.deepEqual(rd3.entries, []);
  t.deepEqual(
    rd3.committedEntries.map((e) => e.data.toString()),
    ['a', 'b'],
  );
  n.advance();
  t.false(n.hasReady());
  t.is(n.status().applied, st.lastIndex());
});

test('bootstrap from MemoryStorage confState: the membership is in the log, so a joiner learns it', (t) => {
  const voters = { voters: [1, 2, 3], learners: [] };
  const boot = new MemoryStorage({ confState: voters });
  const net = new CoreNet({ voters: [] });
  for (const id of [1, 2, 3]) net.addMember(id, id === 1 ? boot : new MemoryStorage({ confState: voters }), {}, { appliedIndex: 0, confState: voters });
  // The first Ready carries the bootstrap entries and hard state to persist.
  const rd = net.get(1).raw.ready();
  t.deepEqual(
    rd.entries.map((e) => [e.index, e.term, e.type]),
    [
      [1, 1, EntryType.ENTRY_CONF_CHANGE],
      [2, 1, EntryType.ENTRY_CONF_CHANGE],
      [3, 1, EntryType.ENTRY_CONF_CHANGE],
    ],
  );
  t.deepEqual(rd.hardState, { term: 1, vote: 0, commit: 3 });
  t.true(rd.mustSync);
  t.is(rd.committedEntries.length, 3);
  boot.append(rd.entries);
  boot.setHardState(rd.hardState!);
  for (const e of rd.committedEntries) net.get(1).appliedIndex = e.index;
  net.get(1).raw.advance();
  // A founding member can campaign at once (the bootstrap changes are no-ops for it).
  net.campaign(1);
  t.is(net.get(1).raw.status().role, 'leader');
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 4));
  net.stabilize();
  net.addMember(4, new MemoryStorage(), {}, { appliedIndex: 0, confState: { voters: [], learners: [] } });
  net.tickAll(2);
  net.get(1).raw.proposeConfChange(cc(ConfChangeType.CONF_ADD_NODE, 4));
  net.stabilize();
  t.deepEqual(net.get(4).confState, { voters: [1, 2, 3, 4], learners: [] });
  // Cut off, the joiner cannot elect itself.
  net.isolate(4);
  net.tickAll(50);
  t.not(net.get(4).raw.status().role, 'leader');
  net.checkElectionSafety();
});

test('reportUnreachable stops pipelining to a follower; a heartbeat reply resumes it', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  net.propose(1, 'a');
  const l = net.get(1).raw;
  t.is(l.status().progress!.get(2)!.state, 'replicate');
  l.reportUnreachable(2);
  t.is(l.status().progress!.get(2)!.state, 'probe');
  net.tickAll(2);
  net.propose(1, 'b');
  t.is(l.status().progress!.get(2)!.state, 'replicate');
  t.deepEqual(net.get(2).applied, ['a', 'b']);
});

test('membership rules: one change at a time, no removing or demoting the last voter, invalid ids', (t) => {
  const net = new CoreNet({ voters: [1] });
  net.campaign(1);
  const l = net.get(1).raw;
  t.throws(() => l.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 0)), { instanceOf: ProposalDroppedError });
  t.throws(() => l.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 1)), { instanceOf: ProposalDroppedError });
  t.throws(() => l.proposeConfChange(cc(ConfChangeType.CONF_REMOVE_NODE, 1)), { instanceOf: ProposalDroppedError });
  l.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 2));
  t.throws(() => l.proposeConfChange(cc(ConfChangeType.CONF_ADD_LEARNER, 3)), { instanceOf: ProposalDroppedError });
  net.stabilize();
  t.deepEqual(net.get(1).confState, { voters: [1], learners: [2] });
  // Applying an invalid change (e.g. a replay) is a no-op, not an error.
  t.deepEqual(l.applyConfChange(cc(ConfChangeType.CONF_REMOVE_NODE, 1)), { voters: [1], learners: [2] });
  // Removing what is not there, adding what is there: no-ops.
  t.deepEqual(l.applyConfChange(cc(ConfChangeType.CONF_REMOVE_NODE, 9)), { voters: [1], learners: [2] });
  t.deepEqual(l.applyConfChange(cc(ConfChangeType.CONF_ADD_NODE, 1)), { voters: [1], learners: [2] });
});
