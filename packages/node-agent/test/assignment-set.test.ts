import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AssignmentChange_Action, AssignmentsMessage_Type, NetworkState, Task, TaskState, type AssignmentsMessage } from '@swarmd/proto';
import { nullLogger } from '@swarmd/common';
import { AssignmentSet } from '../src/assignments/assignment-set.js';
import { Worker, type AssignmentsEvent } from '../src/assignments/worker.js';

const task = (id: string, desired = TaskState.TASK_STATE_RUNNING): Task => ({ ...Task.fromJSON({ id }), desiredState: desired });
const up = (t: Task) => ({ assignment: { item: { $case: 'task' as const, task: t } }, action: AssignmentChange_Action.UPDATE });
const rm_ = (id: string) => ({ assignment: { item: { $case: 'task' as const, task: task(id) } }, action: AssignmentChange_Action.REMOVE });
const complete = (resultsIn: string, ...changes: AssignmentsMessage['changes']): AssignmentsMessage => ({
  type: AssignmentsMessage_Type.COMPLETE,
  appliesTo: '',
  resultsIn,
  changes,
  networkState: undefined,
});
const incr = (appliesTo: string, resultsIn: string, ...changes: AssignmentsMessage['changes']): AssignmentsMessage => ({
  type: AssignmentsMessage_Type.INCREMENTAL,
  appliesTo,
  resultsIn,
  changes,
  networkState: undefined,
});
const ids = (s: AssignmentSet) => s.list().map((t) => t.id);

test('COMPLETE replaces the set and reports what changed', (t) => {
  const s = new AssignmentSet([task('old'), task('keep')]);
  const r = s.apply(complete('v1', up(task('keep')), up(task('new')), rm_('ignored')));
  t.true(r.ok);
  if (!r.ok) return;
  t.deepEqual(ids(s), ['keep', 'new']);
  t.deepEqual(r.removed, ['old']);
  t.deepEqual(r.updated.map((x) => x.id), ['new']); // "keep" came back unchanged
  t.is(s.resultsIn, 'v1');
});

test('INCREMENTAL applies updates and removals on top of the set it names', (t) => {
  const s = new AssignmentSet();
  t.true(s.apply(complete('v1', up(task('a')), up(task('b')))).ok);
  const r = s.apply(incr('v1', 'v2', up(task('c')), rm_('a'), up(task('b', TaskState.TASK_STATE_SHUTDOWN))));
  t.true(r.ok);
  if (!r.ok) return;
  t.deepEqual(ids(s), ['b', 'c']);
  t.deepEqual(r.updated.map((x) => x.id), ['c', 'b']);
  t.deepEqual(r.removed, ['a']);
  t.is(s.get('b')?.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  // add then remove in one message: only the removal of something that existed is reported
  const r2 = s.apply(incr('v2', 'v3', up(task('d')), rm_('d'), rm_('zzz')));
  t.true(r2.ok);
  if (r2.ok) t.deepEqual([r2.updated, r2.removed], [[], []]);
  t.deepEqual(ids(s), ['b', 'c']);
});

test('INCREMENTAL out of sequence or before a COMPLETE is refused and changes nothing', (t) => {
  const s = new AssignmentSet();
  t.false(s.apply(incr('', 'v1', up(task('a')))).ok);
  t.true(s.apply(complete('v1', up(task('a')))).ok);
  const r = s.apply(incr('v0', 'v2', up(task('b'))));
  t.false(r.ok);
  if (!r.ok) t.regex(r.reason, /apply to v0, have v1/);
  t.deepEqual(ids(s), ['a']);
  // a new stream must start with COMPLETE again
  s.resetStream();
  t.false(s.apply(incr('v1', 'v2', up(task('b')))).ok);
  t.true(s.apply(complete('v5')).ok);
  t.deepEqual(ids(s), []);
});

test('Worker persists the set and emits events; a new worker starts from the db', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'agent-worker-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const w = await Worker.open(dir, nullLogger);
  const events: AssignmentsEvent[] = [];
  w.on('assignments', (e) => events.push(e));
  await w.apply(complete('v1', up(task('a')), up(task('b'))));
  await w.apply(incr('v1', 'v2', rm_('a')));
  t.false((await w.apply(incr('v1', 'v3', rm_('b')))).ok);
  t.deepEqual(events.map((e) => [e.complete, e.tasks.map((x) => x.id), e.removed]), [
    [true, ['a', 'b'], []],
    [false, ['b'], ['a']],
  ]);
  const w2 = await Worker.open(dir, nullLogger);
  t.deepEqual(w2.tasks().map((x) => x.id), ['b']);
});

test('Worker keeps the pushed network state: replaced whole, unchanged when an INCREMENTAL omits it, persisted, emitted before the assignments', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'agent-worker-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const w = await Worker.open(dir, nullLogger);
  const seen: string[] = [];
  w.on('networks', (s) => seen.push(`networks:${s.networks.map((n) => n.network?.id).join(',')}`));
  w.on('assignments', () => seen.push('assignments'));
  const net = (id: string) => NetworkState.fromPartial({ network: { id, vni: 4097 } });
  await w.apply({ ...complete('v1', up(task('a'))), networkState: { networks: [net('n1'), net('n2')] } });
  await w.apply(incr('v1', 'v2', up(task('b'))));
  t.deepEqual(w.networkState().networks.map((n) => n.network?.id), ['n1', 'n2'], 'an INCREMENTAL without network state leaves it as it was');
  await w.apply({ ...incr('v2', 'v3'), networkState: { networks: [net('n2')] } });
  t.deepEqual(seen, ['networks:n1,n2', 'assignments', 'assignments', 'networks:n2']);
  const w2 = await Worker.open(dir, nullLogger);
  t.deepEqual(w2.networkState().networks.map((n) => n.network?.id), ['n2'], 'a restarted agent starts from network-state.json');
  await w2.apply(complete('v4', up(task('b'))));
  t.deepEqual(w2.networkState().networks, [], 'a COMPLETE without network state: no overlay networks');
});
