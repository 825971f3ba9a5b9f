// The task manager loop against a fake controller (no runtime): desired-state changes interrupt a
// wait, transient prepare failures are retried, permanent ones reject, re-attach, removal.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { TaskState, type Task, type TaskStatus } from '@swarmd/proto';
import { ContainerExitedError, PermanentError, UnhealthyError, type ContainerFacts, type ExitInfo, type TaskController } from '../src/executor/executor.js';
import { TaskManager, emptyStatus } from '../src/task-runner/task-manager.js';
import { makeTask } from './helpers/executor-env.js';

class FakeController implements TaskController {
  calls: string[] = [];
  prepareFailures: Error[] = [];
  facts: ContainerFacts = { exists: false };
  startError: Error | undefined;
  private exit: ((e: ExitInfo) => void) | undefined;
  /** When set, a prepare completes only once it resolves. */
  prepareGate: Promise<void> | undefined;
  /** What each prepare's `mayStart` answered when asked (after the gate: the container's making). */
  mayStart: (boolean | undefined)[] = [];
  async prepare(_s: AbortSignal, o?: { mayStart?: () => boolean }): Promise<{ containerId: string }> {
    this.calls.push('prepare');
    const e = this.prepareFailures.shift();
    await this.prepareGate;
    this.mayStart.push(o?.mayStart?.());
    if (e) throw e;
    return { containerId: 'c' };
  }
  start(): Promise<{ pid: number }> {
    this.calls.push('start');
    return this.startError ? Promise.reject(this.startError) : Promise.resolve({ pid: 42 });
  }
  wait(s: AbortSignal): Promise<ExitInfo> {
    this.calls.push('wait');
    if (this.waitError) return Promise.reject(this.waitError);
    return new Promise((resolve, reject) => {
      this.exit = resolve;
      s.addEventListener('abort', () => reject(Object.assign(new Error('aborted'), { name: 'AbortError' })), { once: true });
    });
  }
  exitWith(code: number): void {
    this.exit?.({ exitCode: code, oomKilled: false });
  }
  shutdown(): Promise<ExitInfo> {
    this.calls.push('shutdown');
    return Promise.resolve({ exitCode: 143, oomKilled: false });
  }
  terminate(): Promise<void> {
    return Promise.resolve();
  }
  /** When set, a release completes only once it resolves. */
  releaseGate: Promise<void> | undefined;
  released = false;
  async release(): Promise<void> {
    this.calls.push('release');
    await this.releaseGate;
    this.released = true;
  }
  hostPorts: ReturnType<TaskController['ports']> = [];
  waitError: Error | undefined;
  remove(): Promise<void> {
    this.calls.push('remove');
    return Promise.resolve();
  }
  inspect(): Promise<ContainerFacts> {
    this.calls.push('inspect');
    return Promise.resolve(this.facts);
  }
  ports() {
    return this.hostPorts;
  }
}

function harness(task: Task, ctl = new FakeController()) {
  const seen: TaskStatus[] = [];
  const m = new TaskManager({ task, controller: ctl, report: (_id, s) => seen.push(s), retryDelayMs: 1 });
  const states = () => seen.map((s) => TaskState[s.state].replace('TASK_STATE_', ''));
  const until = async (state: TaskState) => {
    for (let i = 0; i < 500 && !(seen.at(-1) && seen.at(-1)!.state >= state); i++) await sleep(5);
    return seen.at(-1)!;
  };
  return { m, ctl, seen, states, until };
}

const base = makeTask('t', { image: 'x' });

test('runs to RUNNING, a desired SHUTDOWN interrupts the wait, then remove', async (t) => {
  const h = harness(base);
  await h.until(TaskState.TASK_STATE_RUNNING);
  t.deepEqual(h.states(), ['PREPARING', 'READY', 'STARTING', 'RUNNING']);
  h.m.update({ ...base, desiredState: TaskState.TASK_STATE_SHUTDOWN });
  const s = await h.until(TaskState.TASK_STATE_SHUTDOWN);
  t.is(s.state, TaskState.TASK_STATE_SHUTDOWN);
  t.is(s.container?.exitCode, 143);
  await h.m.remove();
  t.deepEqual(h.ctl.calls.filter((c) => c !== 'inspect'), ['prepare', 'start', 'wait', 'shutdown', 'release', 'remove'], 'an ended task is released (ports, address) before removal');
});

test('a task allowed to start while it prepares (desired READY → RUNNING) is prepared once, then started', async (t) => {
  const ctl = new FakeController();
  let open!: () => void;
  ctl.prepareGate = new Promise((r) => (open = r));
  const ready = { ...base, desiredState: TaskState.TASK_STATE_READY };
  const h = harness(ready, ctl);
  for (let i = 0; i < 200 && !ctl.calls.includes('prepare'); i++) await sleep(5);
  h.m.update({ ...ready, desiredState: TaskState.TASK_STATE_RUNNING });
  open();
  await h.until(TaskState.TASK_STATE_RUNNING);
  t.deepEqual(h.states(), ['PREPARING', 'READY', 'STARTING', 'RUNNING']);
  t.is(ctl.calls.filter((c) => c === 'prepare').length, 1, 'the prepare in flight was not interrupted and done again');
  t.deepEqual(ctl.mayStart, [true], 'the prepare in flight heard that the task may start (one runtime call creates and starts it)');
  await h.m.close();
});

test('a task desired READY is prepared without leave to start, and stays READY', async (t) => {
  const ctl = new FakeController();
  const h = harness({ ...base, desiredState: TaskState.TASK_STATE_READY }, ctl);
  await h.until(TaskState.TASK_STATE_READY);
  await sleep(50);
  t.deepEqual(h.states(), ['PREPARING', 'READY']);
  t.deepEqual(ctl.mayStart, [false]);
  t.false(ctl.calls.includes('start'));
  await h.m.close();
});

test('a desired SHUTDOWN while a task prepares interrupts the prepare and shuts it down', async (t) => {
  const ctl = new FakeController();
  let open!: () => void;
  ctl.prepareGate = new Promise((r) => (open = r));
  const h = harness(base, ctl);
  for (let i = 0; i < 200 && !ctl.calls.includes('prepare'); i++) await sleep(5);
  h.m.update({ ...base, desiredState: TaskState.TASK_STATE_SHUTDOWN });
  open();
  const s = await h.until(TaskState.TASK_STATE_SHUTDOWN);
  t.is(TaskState[s.state], 'TASK_STATE_SHUTDOWN');
  t.false(ctl.calls.includes('start'), 'never started');
  await h.m.close();
});

test('transient prepare failures are retried; a permanent one rejects', async (t) => {
  const ctl = new FakeController();
  ctl.prepareFailures = [new Error('registry unavailable'), new Error('registry unavailable')];
  const h = harness(base, ctl);
  await h.until(TaskState.TASK_STATE_RUNNING);
  t.is(ctl.calls.filter((c) => c === 'prepare').length, 3);
  ctl.exitWith(2);
  const failed = await h.until(TaskState.TASK_STATE_COMPLETE);
  t.is(failed.err, 'task: non-zero exit (2)');
  t.is(ctl.calls.at(-1), 'release', 'a task that failed on its own is released at once');
  await h.m.close();

  const ctl2 = new FakeController();
  ctl2.prepareFailures = [new PermanentError('pulling image x: not found')];
  const h2 = harness(base, ctl2);
  const rejected = await h2.until(TaskState.TASK_STATE_COMPLETE);
  t.is(TaskState[rejected.state], 'TASK_STATE_REJECTED');
  t.regex(rejected.err, /not found/);
  await h2.m.close();
});

test('a container exiting before it is healthy ends the task from STARTING', async (t) => {
  const ctl = new FakeController();
  ctl.startError = new ContainerExitedError({ exitCode: 0, oomKilled: false });
  const h = harness(base, ctl);
  const s = await h.until(TaskState.TASK_STATE_COMPLETE);
  t.is(TaskState[s.state], 'TASK_STATE_COMPLETE');
  await h.m.close();
});

test('re-attach: a running container moves the task to RUNNING; a lost one FAILS it', async (t) => {
  const ctl = new FakeController();
  ctl.facts = { exists: true, status: 'running', container: { containerId: 't', pid: 9 } };
  const h = harness({ ...base, status: { ...emptyStatus(TaskState.TASK_STATE_STARTING) } }, ctl);
  const s = await h.until(TaskState.TASK_STATE_RUNNING);
  t.is(s.message, 're-attached');
  t.is(s.container?.pid, 9);
  t.false(ctl.calls.includes('prepare') || ctl.calls.includes('start'));
  ctl.exitWith(0);
  t.is(TaskState[(await h.until(TaskState.TASK_STATE_COMPLETE)).state], 'TASK_STATE_COMPLETE');
  await h.m.close();

  const lost = harness({ ...base, status: emptyStatus(TaskState.TASK_STATE_RUNNING) });
  const l = await lost.until(TaskState.TASK_STATE_COMPLETE);
  t.is(TaskState[l.state], 'TASK_STATE_FAILED');
  t.regex(l.err, /container lost/);
  await lost.m.close();
});

/** A release that completes only when the test says so. */
function gated(ctl: FakeController): () => void {
  let open: () => void = () => undefined;
  ctl.releaseGate = new Promise<void>((r) => (open = r));
  return open;
}

test('a stopped task that holds no host port is reported SHUTDOWN before its release (network teardown) completes; remove waits for the release', async (t) => {
  const ctl = new FakeController();
  const open = gated(ctl);
  const h = harness(base, ctl);
  await h.until(TaskState.TASK_STATE_RUNNING);
  h.m.update({ ...base, desiredState: TaskState.TASK_STATE_SHUTDOWN });
  await h.until(TaskState.TASK_STATE_SHUTDOWN);
  t.is(TaskState[h.seen.at(-1)!.state], 'TASK_STATE_SHUTDOWN');
  t.false(ctl.released, 'reported while the release is still running');
  const removed = h.m.remove();
  await sleep(20);
  t.false(ctl.calls.includes('remove'), 'not removed before the release completes');
  open();
  await removed;
  t.deepEqual(ctl.calls.filter((c) => c !== 'inspect').slice(-2), ['release', 'remove']);
});

test('a stopped task that publishes host-mode ports is reported SHUTDOWN only once released (a replacement may take the ports)', async (t) => {
  const ctl = new FakeController();
  ctl.hostPorts = [{ name: '', protocol: 0, targetPort: 80, publishedPort: 8080, publishMode: 1 }] as ReturnType<TaskController['ports']>;
  const open = gated(ctl);
  const h = harness(base, ctl);
  await h.until(TaskState.TASK_STATE_RUNNING);
  h.m.update({ ...base, desiredState: TaskState.TASK_STATE_SHUTDOWN });
  while (!ctl.calls.includes('release')) await sleep(5);
  await sleep(20);
  t.is(TaskState[h.seen.at(-1)!.state], 'TASK_STATE_RUNNING', 'not reported while its ports are held');
  open();
  await h.until(TaskState.TASK_STATE_SHUTDOWN);
  t.true(ctl.released);
  await h.m.close();
});

test('a task failed by its health check (its container may still run) is reported only once released', async (t) => {
  const ctl = new FakeController();
  ctl.waitError = new UnhealthyError('probe failed 3 times');
  const open = gated(ctl);
  const h = harness(base, ctl);
  while (!ctl.calls.includes('release')) await sleep(5);
  await sleep(20);
  t.is(TaskState[h.seen.at(-1)!.state], 'TASK_STATE_RUNNING', 'not reported FAILED while the container may still run');
  open();
  const s = await h.until(TaskState.TASK_STATE_COMPLETE);
  t.is(TaskState[s.state], 'TASK_STATE_FAILED');
  t.true(ctl.released);
  await h.m.close();
});
