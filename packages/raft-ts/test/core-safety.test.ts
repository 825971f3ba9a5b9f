/**
 * The paper's safety rules, checked against the core through a small synchronous network:
 * election safety, log matching, leader completeness, state machine safety, Figure 8.
 */
import test from 'ava';
import fc from 'fast-check';
import { MessageType } from '../src/index.js';
import { CoreNet } from './helpers/core-net.js';

test('Figure 8: a leader does not commit an entry of an earlier term by counting replicas', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false, checkQuorum: false, maxSizePerMsg: 1 } });
  net.campaign(1);
  // 'aa' (index 3, term 1) reaches only the leader.
  net.isolate(1);
  net.get(1).raw.propose(Buffer.from('aa'));
  net.stabilize();
  t.is(net.get(1).raw.status().commit, 2);
  // 1 crashes and comes back; its log (3/1) is the most up to date, so it wins term 2.
  net.restart(1);
  net.heal();
  // The acks for the entry of term 2 (index 4) are lost for now.
  net.dropIf = (m) => m.type === MessageType.MSG_APP_RESP && !m.reject && m.index >= 4;
  net.campaign(1);
  t.is(net.get(1).raw.status().role, 'leader');
  t.is(net.get(1).raw.status().term, 2);
  // As far as the leader knows, 2 and 3 hold 3/1: on a majority, but of an earlier term.
  const progress = net.get(1).raw.status().progress!;
  t.is(progress.get(2)!.match, 3);
  t.is(progress.get(3)!.match, 3);
  net.tickAll(3);
  t.is(net.get(1).raw.status().commit, 2);
  t.deepEqual(net.get(1).applied, []);
  // Once the entry of term 2 is replicated, both commit.
  net.dropIf = undefined;
  net.tickAll(2);
  t.is(net.get(1).raw.status().commit, 4);
  for (const id of [1, 2, 3]) t.deepEqual(net.get(id).applied, ['aa']);
  net.checkStateMachineSafety();
});

test('log conflicts: a deposed leader loses its uncommitted tail, keeps the committed prefix', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false, checkQuorum: false } });
  net.campaign(1);
  net.propose(1, 'c1');
  net.isolate(1);
  for (const d of ['u1', 'u2', 'u3']) net.get(1).raw.propose(Buffer.from(d));
  net.stabilize();
  t.is(net.get(1).storage.lastIndex(), 6);
  net.campaign(2);
  net.propose(2, 'x');
  net.propose(2, 'y');
  net.heal();
  net.tickAll(3);
  t.is(net.get(1).raw.status().role, 'follower');
  for (const id of [1, 2, 3]) t.deepEqual(net.get(id).applied, ['c1', 'x', 'y']);
  net.checkLogMatching();
  net.checkStateMachineSafety();
  net.checkElectionSafety();
});

test('follower with a long divergent tail is caught up quickly with reject hints', (t) => {
  const net = new CoreNet({ voters: [1, 2, 3], config: { preVote: false, checkQuorum: false } });
  net.campaign(1);
  net.isolate(1);
  for (let i = 0; i < 30; i++) net.get(1).raw.propose(Buffer.from(`old${i}`));
  net.stabilize();
  net.campaign(2);
  for (let i = 0; i < 30; i++) net.get(2).raw.propose(Buffer.from(`new${i}`));
  net.stabilize();
  net.heal();
  let rejects = 0;
  net.dropIf = (m) => {
    if (m.type === MessageType.MSG_APP_RESP && m.reject) rejects++;
    return false;
  };
  net.tickAll(3);
  t.true(rejects <= 2, `rejects ${rejects}`);
  t.is(net.get(1).applied.length, 30);
  net.checkLogMatching();
  net.checkStateMachineSafety();
});

test('property: safety holds under drops, duplicates, reordering, partitions and restarts', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.boolean(),
      fc.array(fc.constantFrom('tick', 'propose', 'isolate', 'heal', 'restart', 'cut'), { minLength: 30, maxLength: 120 }),
      (seed, withSnapshots, script) => {
        const net = new CoreNet({ voters: [1, 2, 3, 4, 5], seed, snapshotEvery: withSnapshots ? 4 : undefined });
        net.dropRate = 0.15;
        net.dupRate = 0.15;
        net.reorder = true;
        let n = 0;
        const pick = (): number => 1 + ((seed + n * 7) % 5);
        for (const op of script) {
          n++;
          switch (op) {
            case 'tick':
              net.tickAll(3);
              break;
            case 'propose': {
              const l = net.leader();
              if (l) {
                try {
                  l.raw.propose(Buffer.from(`v${n}`));
                } catch {
                  /* a transfer or a limit: fine */
                }
              }
              net.stabilize();
              break;
            }
            case 'isolate':
              net.isolate(pick());
              break;
            case 'cut':
              net.cut(pick(), 1 + ((seed + n) % 5));
              break;
            case 'heal':
              net.heal();
              break;
            case 'restart':
              net.restart(pick());
              net.stabilize();
              break;
          }
          net.checkElectionSafety();
          net.checkStateMachineSafety();
        }
        // Liveness once the network is healed and reliable.
        net.heal();
        net.dropRate = 0;
        net.dupRate = 0;
        net.tickAll(60);
        const l = net.leader();
        if (!l) throw new Error('no leader after healing');
        l.raw.propose(Buffer.from('final'));
        net.stabilize();
        net.tickAll(5);
        for (const m of net.members.values()) {
          if (m.applied[m.applied.length - 1] !== 'final') throw new Error(`member ${m.id} did not apply the final entry`);
        }
        net.checkLogMatching();
        net.checkStateMachineSafety();
        net.checkElectionSafety();
      },
    ),
    { numRuns: 40, seed: 42 },
  );
  t.pass();
});

test('a leader counts its own entries toward commit only once persisted (early-sent appends stay safe)', (t) => {
  // A single voter with a learner: the leader's copy alone is a quorum.
  const net = new CoreNet({ voters: [1], learners: [2] });
  net.campaign(1);
  const n1 = net.get(1).raw;
  n1.propose(Buffer.from('y'));
  const rd = n1.ready();
  t.deepEqual(
    rd.entries.map((e) => e.data.toString()),
    ['y'],
  );
  const y = rd.entries[0].index;
  // Neither the Ready's hard state nor any message it carries says y is committed: an app that
  // sent these before persisting (and crashed) could not have exposed y.
  t.true((rd.hardState?.commit ?? 0) < y);
  for (const m of rd.messages) t.true(m.commit < y, `${MessageType[m.type]} carries commit ${m.commit}`);
  t.deepEqual(rd.committedEntries, []);
  net.get(1).storage.append(rd.entries);
  if (rd.hardState) net.get(1).storage.setHardState(rd.hardState);
  net.queue.push(...rd.messages);
  n1.advance();
  net.stabilize();
  t.is(n1.status().commit, y);
  t.deepEqual(net.get(2).applied, ['y']);
});
