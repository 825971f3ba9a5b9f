import test from 'ava';
import { CompactedError, type Entry, EntryType, MemoryStorage, SnapshotOutOfDateError, UnavailableError } from '../src/index.js';
import { RaftLog } from '../src/log/raft-log.js';
import { committedIndex, voteResult } from '../src/quorum/majority.js';
import { FollowerProgress } from '../src/progress/follower-progress.js';

const ent = (index: number, term: number, data = ''): Entry => ({ index, term, type: EntryType.ENTRY_NORMAL, data: Buffer.from(data) });

test('MemoryStorage: append overwrites a conflicting tail; compaction and snapshots', (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 1), ent(3, 2)]);
  t.is(s.lastIndex(), 3);
  s.append([ent(2, 3)]);
  t.is(s.lastIndex(), 2);
  t.is(s.term(2), 3);
  t.throws(() => s.append([ent(5, 3)]), { message: /missing log entry/ });
  s.append([ent(3, 3, 'aaaa'), ent(4, 3, 'bbbb'), ent(5, 3, 'cccc')]);
  t.is(s.entries(3, 6, 5).length, 1); // size limit, at least one
  t.is(s.entries(3, 6, 8).length, 2);
  t.throws(() => s.compact(3), { message: /beyond the latest snapshot/ });
  s.createSnapshot(3, { voters: [1], learners: [] }, Buffer.from('snap'));
  s.compact(3);
  t.is(s.firstIndex(), 4);
  t.is(s.term(3), 3);
  t.throws(() => s.term(2), { instanceOf: CompactedError });
  t.throws(() => s.entries(3, 5), { instanceOf: CompactedError });
  t.throws(() => s.term(9), { instanceOf: UnavailableError });
  s.compact(2); // no-op
  t.throws(() => s.applySnapshot({ data: Buffer.alloc(0), metadata: { index: 2, term: 1, confState: { voters: [1], learners: [] } } }), {
    instanceOf: SnapshotOutOfDateError,
  });
  s.applySnapshot({ data: Buffer.alloc(0), metadata: { index: 10, term: 4, confState: { voters: [1, 2], learners: [] } } });
  t.is(s.firstIndex(), 11);
  t.is(s.lastIndex(), 10);
  t.deepEqual(s.initialState().confState, { voters: [1, 2], learners: [] });
});

test('RaftLog: unstable tail truncation, conflict detection, commit rules', (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 1), ent(3, 1)]);
  const log = new RaftLog(s);
  t.is(log.lastIndex(), 3);
  // Append after 3: unstable.
  t.is(log.maybeAppend(3, 1, 3, [ent(4, 2), ent(5, 2)]), 5);
  t.is(log.committed, 3);
  // Stale duplicate (prefix): no truncation.
  t.is(log.maybeAppend(3, 1, 3, [ent(4, 2)]), 4);
  t.is(log.lastIndex(), 5);
  // Mismatch at prev: rejected.
  t.is(log.maybeAppend(5, 3, 3, []), undefined);
  // A conflict in the unstable tail truncates it.
  t.is(log.maybeAppend(4, 2, 3, [ent(5, 3), ent(6, 3)]), 6);
  t.deepEqual(
    log.slice(4, 7).map((e) => e.term),
    [2, 3, 3],
  );
  // A conflict further back in the tail replaces everything from there.
  t.is(log.maybeAppend(2, 1, 3, [ent(3, 1), ent(4, 4)]), 4);
  t.is(log.lastIndex(), 4);
  t.is(log.term(4), 4);
  t.is(log.term(5), 0);
  // A conflict at or below commit is a bug.
  log.commitTo(3);
  t.throws(() => log.maybeAppend(1, 1, 3, [ent(2, 9)]), { message: /conflicts with committed/ });
  // Figure 8 rule: the leader commits only entries of its term.
  t.false(log.maybeCommit(4, 5));
  t.true(log.maybeCommit(4, 4));
  t.is(log.committed, 4);
  // findConflictByTerm skips whole terms.
  t.deepEqual(log.findConflictByTerm(4, 3), [3, 1]);
  t.deepEqual(log.findConflictByTerm(4, 4), [4, 4]);
  t.true(log.isUpToDate(4, 4));
  t.true(log.isUpToDate(1, 5));
  t.false(log.isUpToDate(3, 4));
});

test('quorum: majority commit index and vote tallies', (t) => {
  const v = new Set([1, 2, 3, 4, 5]);
  const m = new Map([
    [1, 9],
    [2, 7],
    [3, 5],
    [4, 3],
    [5, 1],
  ]);
  t.is(
    committedIndex(v, (id) => m.get(id)!),
    5,
  );
  t.is(voteResult(v, new Map([[1, true]])), 'pending');
  t.is(
    voteResult(
      v,
      new Map([
        [1, true],
        [2, true],
        [3, true],
      ]),
    ),
    'won',
  );
  t.is(
    voteResult(
      v,
      new Map([
        [1, false],
        [2, false],
        [3, false],
      ]),
    ),
    'lost',
  );
});

test('progress: probe pauses, replicate pipelines within the window, stale rejections ignored', (t) => {
  const pr = new FollowerProgress(11, { isLearner: false, maxInflight: 2 });
  t.is(pr.state, 'probe');
  pr.sentEntries(1, 11, 1);
  t.true(pr.isPaused());
  t.false(pr.maybeDecrTo(5, 4)); // stale: not the probe in flight
  t.true(pr.maybeDecrTo(10, 6));
  t.is(pr.next, 7);
  t.false(pr.isPaused());
  t.true(pr.maybeUpdate(8));
  pr.becomeReplicate();
  t.is(pr.next, 9);
  pr.sentEntries(2, 10, 2);
  pr.sentEntries(1, 11, 1);
  t.true(pr.isPaused());
  pr.ackInflights(10);
  t.false(pr.isPaused());
  t.false(pr.maybeDecrTo(8, 0)); // at or below match: stale
  t.true(pr.maybeDecrTo(11, 0));
  t.is(pr.next, 9);
  pr.becomeSnapshot(20);
  t.true(pr.isPaused());
  pr.snapshotDone(true);
  t.is(pr.state, 'probe');
  t.is(pr.next, 21);
});
