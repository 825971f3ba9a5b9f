import test from 'ava';
import { type Message, MessageType, NotLeaderError } from '../src/index.js';
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

function msg(m: Partial<Message> & { type: MessageType }): Message {
  return {
    to: 0,
    from: 0,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    snapshot: undefined,
    reject: false,
    rejectHint: 0,
    context: Buffer.alloc(0),
    ...m,
  };
}

test('a voter grants one vote per term (a duplicate request gets the same answer) and only to an up-to-date log', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false } });
  const n1 = net.get(1).raw;
  const votes = (): [string, number, boolean][] =>
    n1.ready().messages.map((m) => [MessageType[m.type], m.to, m.reject]);
  // Log of 1 ends at (1, 1): the bootstrap snapshot.
  n1.step(msg({ type: MessageType.MSG_VOTE, from: 2, to: 1, term: 2, index: 1, logTerm: 1 }));
  t.deepEqual(votes(), [['MSG_VOTE_RESP', 2, false]]);
  n1.step(msg({ type: MessageType.MSG_VOTE, from: 3, to: 1, term: 2, index: 1, logTerm: 1 }));
  t.deepEqual(votes(), [['MSG_VOTE_RESP', 3, true]]);
  n1.step(msg({ type: MessageType.MSG_VOTE, from: 2, to: 1, term: 2, index: 1, logTerm: 1 }));
  t.deepEqual(votes(), [['MSG_VOTE_RESP', 2, false]]);
  t.is(n1.status().vote, 2);
  // A later term, but a log behind ours: refused.
  const n2 = net.get(2).raw;
  n2.step(msg({ type: MessageType.MSG_VOTE, from: 3, to: 2, term: 5, index: 0, logTerm: 0 }));
  const r = n2.ready();
  t.deepEqual(
    r.messages.map((m) => [MessageType[m.type], m.reject, m.term]),
    [['MSG_VOTE_RESP', true, 5]],
  );
  t.is(n2.status().term, 5);
  t.is(n2.status().vote, 0);
});

test('PreVote: granting a pre-vote changes neither term nor vote; a pre-candidate keeps its term', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3] });
  const n1 = net.get(1).raw;
  n1.campaign();
  const rd = n1.ready();
  t.is(n1.status().role, 'pre-candidate');
  t.is(n1.status().term, 0);
  t.deepEqual(
    rd.messages.map((m) => [MessageType[m.type], m.term]),
    [
      ['MSG_PRE_VOTE', 1],
      ['MSG_PRE_VOTE', 1],
    ],
  );
  n1.advance();
  const n2 = net.get(2).raw;
  n2.step(rd.messages[0]);
  const r2 = n2.ready();
  t.deepEqual(
    r2.messages.map((m) => [MessageType[m.type], m.term, m.reject]),
    [['MSG_PRE_VOTE_RESP', 1, false]],
  );
  t.is(n2.status().term, 0);
  t.is(n2.status().vote, 0);
  n2.advance();
  // With the pre-vote won, the real election runs in term 1.
  n1.step(r2.messages[0]);
  t.is(n1.status().role, 'candidate');
  t.is(n1.status().term, 1);
});
