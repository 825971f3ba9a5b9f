import test from 'ava';
import { MessageType, NotLeaderError } from '../src/index.js';
import { CoreNet } from './helpers/core-net.js';

test('a single voter elects itself and commits', (t) => {
  const net = new CoreNet({ voters: [1] });
  net.campaign(1);
  const st = net.get(1).raw.status();
  t.is(st.role, 'leader');
  t.is(st.term, 1);
  net.propose(1, 'a');
  t.deepEqual(net.get(1).applied, ['a']);
  t.is(net.get(1).raw.status().commit, 3);
});

test('three voters: campaign elects a leader, entries replicate and apply everywhere', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.campaign(1);
  t.is(net.get(1).raw.status().role, 'leader');
  for (const id of [2, 3]) {
    t.is(net.get(id).raw.status().role, 'follower');
    t.is(net.get(id).raw.status().leaderId, 1);
  }
  net.propose(1, 'x');
  net.propose(1, 'y');
  for (const id of [1, 2, 3]) t.deepEqual(net.get(id).applied, ['x', 'y']);
  net.checkStateMachineSafety();
  net.checkElectionSafety();
});

test('election by ticks: randomized timeouts elect exactly one leader', (t) => {
  for (let seed = 1; seed <= 20; seed++) {
    const net = new CoreNet({ voters: [1, 2, 3, 4, 5], seed });
    net.tickAll(40);
    const leaders = [...net.members.values()].filter((m) => m.raw.status().role === 'leader');
    t.is(leaders.length, 1, `seed ${seed}`);
    net.checkElectionSafety();
  }
});

test('NotLeaderError carries the leader hint', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  const err0 = t.throws(() => net.get(2).raw.propose(Buffer.from('a')), { instanceOf: NotLeaderError });
  t.is(err0.leaderId, 0);
  net.campaign(1);
  const err = t.throws(() => net.get(2).raw.propose(Buffer.from('a')), { instanceOf: NotLeaderError });
  t.is(err.leaderId, 1);
  t.throws(() => net.get(3).raw.proposeConfChange({ type: 0, nodeId: 4, context: Buffer.alloc(0) }), { instanceOf: NotLeaderError });
});

test('a candidate without a quorum does not become leader; votes are one per term', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false } });
  net.isolate(1);
  net.campaign(1);
  t.is(net.get(1).raw.status().role, 'candidate');
  net.heal();
  // 2 campaigns in term 1 too late? no: 2 is at term 0, campaigns to term 1 and wins with 3.
  net.campaign(2);
  t.is(net.get(2).raw.status().role, 'leader');
  net.checkElectionSafety();
});

test('stale-term messages are ignored; a higher term makes a leader step down', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false, checkQuorum: false } });
  net.campaign(1);
  net.isolate(1);
  net.campaign(2);
  t.is(net.get(2).raw.status().role, 'leader');
  t.is(net.get(1).raw.status().role, 'leader'); // still thinks so
  net.heal();
  net.propose(2, 'z');
  // The heartbeat/append from 2 (term 2) reaches 1.
  net.tickAll(2);
  t.is(net.get(1).raw.status().role, 'follower');
  t.is(net.get(1).raw.status().leaderId, 2);
  t.deepEqual(net.get(1).applied, ['z']);
  // A proposal on the deposed leader fails with the hint.
  const err = t.throws(() => net.get(1).raw.propose(Buffer.from('q')), { instanceOf: NotLeaderError });
  t.is(err.leaderId, 2);
  net.checkElectionSafety();
});

test('local message types from the network are ignored', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  net.get(1).raw.step({
    type: MessageType.MSG_HUP,
    to: 1,
    from: 2,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    snapshot: undefined,
    reject: false,
    rejectHint: 0,
    context: Buffer.alloc(0),
  });
  t.is(net.get(1).raw.status().role, 'follower');
});
