import test from 'ava';
import { HealthState, TaskState, type TaskStatus } from '@swarmd/proto';
import { nextAction, taskStep, type ActionResult, type StepAction } from '../src/task-runner/task-step.js';
import { emptyStatus } from '../src/task-runner/task-manager.js';

const S = TaskState;
const st = (state: TaskState, extra: Partial<TaskStatus> = {}): TaskStatus => ({ ...emptyStatus(state), ...extra });
const ok: ActionResult = { kind: 'ok' };

interface Row {
  name: string;
  state: TaskState;
  desired?: TaskState;
  action: StepAction;
  result?: ActionResult;
  want: TaskState | 'noop' | 'retry';
  err?: RegExp;
}

const rows: Row[] = [
  { name: 'assigned → preparing', state: S.TASK_STATE_ASSIGNED, action: 'accept', want: S.TASK_STATE_PREPARING },
  { name: 'accepted → preparing', state: S.TASK_STATE_ACCEPTED, action: 'accept', want: S.TASK_STATE_PREPARING },
  { name: 'prepared → ready', state: S.TASK_STATE_PREPARING, action: 'prepare', want: S.TASK_STATE_READY },
  { name: 'bad image → rejected', state: S.TASK_STATE_PREPARING, action: 'prepare', result: { kind: 'error', error: new Error('pulling image nope:1: not found'), permanent: true }, want: S.TASK_STATE_REJECTED, err: /nope:1/ },
  { name: 'registry down → retry', state: S.TASK_STATE_PREPARING, action: 'prepare', result: { kind: 'error', error: new Error('unavailable'), permanent: false }, want: 'retry' },
  { name: 'ready → starting', state: S.TASK_STATE_READY, action: 'ready', want: S.TASK_STATE_STARTING },
  { name: 'started → running', state: S.TASK_STATE_STARTING, action: 'start', want: S.TASK_STATE_RUNNING },
  { name: 'start fails → failed', state: S.TASK_STATE_STARTING, action: 'start', result: { kind: 'error', error: new Error('exec: no such file'), permanent: true }, want: S.TASK_STATE_FAILED, err: /no such file/ },
  { name: 'unhealthy while starting → failed', state: S.TASK_STATE_STARTING, action: 'start', result: { kind: 'unhealthy' }, want: S.TASK_STATE_FAILED, err: /^task: unhealthy container$/ },
  { name: 'exit 0 before healthy → complete', state: S.TASK_STATE_STARTING, action: 'start', result: { kind: 'exited', exitCode: 0, oomKilled: false }, want: S.TASK_STATE_COMPLETE },
  { name: 'exit 0 → complete', state: S.TASK_STATE_RUNNING, action: 'wait', result: { kind: 'exited', exitCode: 0, oomKilled: false }, want: S.TASK_STATE_COMPLETE },
  { name: 'exit 3 → failed', state: S.TASK_STATE_RUNNING, action: 'wait', result: { kind: 'exited', exitCode: 3, oomKilled: false }, want: S.TASK_STATE_FAILED, err: /^task: non-zero exit \(3\)$/ },
  { name: 'oom → failed naming OOM', state: S.TASK_STATE_RUNNING, action: 'wait', result: { kind: 'exited', exitCode: 137, oomKilled: true }, want: S.TASK_STATE_FAILED, err: /non-zero exit \(137\).*OOM/ },
  { name: 'unhealthy while running → failed', state: S.TASK_STATE_RUNNING, action: 'wait', result: { kind: 'unhealthy', message: 'exit code 1' }, want: S.TASK_STATE_FAILED, err: /unhealthy container: exit code 1/ },
  { name: 'wait error → retry', state: S.TASK_STATE_RUNNING, action: 'wait', result: { kind: 'error', error: new Error('x'), permanent: false }, want: 'retry' },
  { name: 'shutdown while running', state: S.TASK_STATE_RUNNING, desired: S.TASK_STATE_SHUTDOWN, action: 'shutdown', result: { kind: 'exited', exitCode: 143, oomKilled: false }, want: S.TASK_STATE_SHUTDOWN },
  { name: 'shutdown before prepare', state: S.TASK_STATE_PREPARING, desired: S.TASK_STATE_SHUTDOWN, action: 'shutdown', want: S.TASK_STATE_SHUTDOWN },
  { name: 'terminal stays', state: S.TASK_STATE_FAILED, desired: S.TASK_STATE_SHUTDOWN, action: 'shutdown', want: 'noop' },
  { name: 'complete stays', state: S.TASK_STATE_COMPLETE, action: 'wait', result: { kind: 'exited', exitCode: 1, oomKilled: false }, want: 'noop' },
];

for (const r of rows) {
  test(`taskStep: ${r.name}`, (t) => {
    const task = { desiredState: r.desired ?? S.TASK_STATE_RUNNING, status: st(r.state) };
    const out = taskStep(task, r.action, r.result ?? ok, 42);
    if (r.want === 'noop' || r.want === 'retry') {
      t.is(out.kind, r.want);
      return;
    }
    if (out.kind !== 'transition') return t.fail(`expected a transition, got ${out.kind}`);
    t.is(TaskState[out.status.state], TaskState[r.want]);
    t.is(out.status.timestamp, 42);
    t.true(out.status.state >= r.state, 'never backwards');
    if (r.err) t.regex(out.status.err, r.err);
    else t.is(out.status.err, '');
  });
}

test('taskStep: exit facts go into the container status', (t) => {
  const prev = st(S.TASK_STATE_RUNNING, { container: { containerId: 'c1', pid: 7, exitCode: 0, oomKilled: false, health: HealthState.HEALTH_STATE_HEALTHY, healthOutput: '' } });
  const out = taskStep({ desiredState: S.TASK_STATE_RUNNING, status: prev }, 'wait', { kind: 'exited', exitCode: 2, oomKilled: false }, 1);
  if (out.kind !== 'transition') return t.fail();
  t.like(out.status.container, { containerId: 'c1', exitCode: 2, pid: 0, health: HealthState.HEALTH_STATE_HEALTHY });
});

const actions: [TaskState, TaskState, StepAction][] = [
  [S.TASK_STATE_ASSIGNED, S.TASK_STATE_RUNNING, 'accept'],
  [S.TASK_STATE_PREPARING, S.TASK_STATE_RUNNING, 'prepare'],
  [S.TASK_STATE_READY, S.TASK_STATE_RUNNING, 'ready'],
  [S.TASK_STATE_READY, S.TASK_STATE_READY, 'none'], // pre-pull only
  [S.TASK_STATE_STARTING, S.TASK_STATE_RUNNING, 'start'],
  [S.TASK_STATE_RUNNING, S.TASK_STATE_RUNNING, 'wait'],
  [S.TASK_STATE_RUNNING, S.TASK_STATE_SHUTDOWN, 'shutdown'],
  [S.TASK_STATE_ASSIGNED, S.TASK_STATE_REMOVE, 'shutdown'],
  [S.TASK_STATE_COMPLETE, S.TASK_STATE_SHUTDOWN, 'none'],
  [S.TASK_STATE_REJECTED, S.TASK_STATE_RUNNING, 'none'],
];
for (const [state, desired, want] of actions) {
  test(`nextAction: ${TaskState[state]} desired ${TaskState[desired]} → ${want}`, (t) => {
    t.is(nextAction({ desiredState: desired, status: st(state) }), want);
  });
}

test('taskStep walks a task from ASSIGNED to COMPLETE, each state greater than the last', (t) => {
  let status = st(S.TASK_STATE_ASSIGNED);
  const seen: string[] = [];
  const results: Partial<Record<StepAction, ActionResult>> = { wait: { kind: 'exited', exitCode: 0, oomKilled: false } };
  for (let i = 0; i < 10; i++) {
    const task = { desiredState: S.TASK_STATE_RUNNING, status };
    const a = nextAction(task);
    if (a === 'none') break;
    const out = taskStep(task, a, results[a] ?? ok, i);
    if (out.kind !== 'transition') break;
    t.true(out.status.state > status.state);
    status = out.status;
    seen.push(TaskState[status.state].replace('TASK_STATE_', ''));
  }
  t.deepEqual(seen, ['PREPARING', 'READY', 'STARTING', 'RUNNING', 'COMPLETE']);
});
