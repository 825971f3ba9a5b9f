import test from 'ava';
import { setImmediate as tick } from 'node:timers/promises';
import { TaskState, type TaskStatus } from '@swarmd/proto';
import { CoalescingReporter, type StatusUpdate } from '../src/status-reporter/coalescing-reporter.js';
import { FakeClock } from '@swarmd/common';

const st = (state: TaskState, message = ''): TaskStatus => ({ state, message, timestamp: 0, err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined });
const settle = async () => {
  for (let i = 0; i < 5; i++) await tick();
};

test('the latest status per task wins and goes out on the interval', async (t) => {
  const clock = new FakeClock();
  const sent: StatusUpdate[][] = [];
  const r = new CoalescingReporter({ send: async (u) => void sent.push(u), flushIntervalMs: 100, maxBatch: 10, clock });
  r.report('a', st(TaskState.TASK_STATE_PREPARING));
  r.report('b', st(TaskState.TASK_STATE_PREPARING));
  r.report('a', st(TaskState.TASK_STATE_RUNNING));
  await settle();
  t.is(sent.length, 0);
  clock.advance(100);
  await settle();
  t.deepEqual(sent.map((b) => b.map((u) => [u.taskId, u.status.state])), [[['b', TaskState.TASK_STATE_PREPARING], ['a', TaskState.TASK_STATE_RUNNING]]]);
  t.is(r.pendingCount(), 0);
  await r.stop();
});

test('an update that finds the reporter idle leaves after the idle window; the next one waits for the rest of the interval', async (t) => {
  const clock = new FakeClock();
  const sent: string[][] = [];
  const r = new CoalescingReporter({ send: async (u) => void sent.push(u.map((x) => x.taskId)), flushIntervalMs: 100, idleFlushMs: 5, maxBatch: 10, clock });
  r.report('a', st(TaskState.TASK_STATE_RUNNING));
  await settle();
  clock.advance(5);
  await settle();
  t.deepEqual(sent, [['a']], 'sent 5 ms after it came, not 100');
  r.report('b', st(TaskState.TASK_STATE_RUNNING));
  await settle();
  clock.advance(5);
  await settle();
  t.deepEqual(sent, [['a']], 'not 5 ms after the previous flush');
  clock.advance(94);
  await settle();
  t.deepEqual(sent, [['a']], 'not 99 ms after it');
  clock.advance(1);
  await settle();
  t.deepEqual(sent, [['a'], ['b']], 'one interval after the previous flush');
  await r.stop();
});

test('reaching maxBatch flushes at once, in batches of maxBatch', async (t) => {
  const clock = new FakeClock();
  const sent: string[][] = [];
  const r = new CoalescingReporter({ send: async (u) => void sent.push(u.map((x) => x.taskId)), flushIntervalMs: 1000, maxBatch: 2, clock });
  r.report('a', st(TaskState.TASK_STATE_RUNNING));
  r.report('b', st(TaskState.TASK_STATE_RUNNING));
  await settle();
  t.deepEqual(sent, [['a', 'b']]);
  r.report('c', st(TaskState.TASK_STATE_RUNNING));
  await r.stop(); // stop flushes the rest
  t.deepEqual(sent, [['a', 'b'], ['c']]);
});

test('a failed send is retried, but never over a newer status', async (t) => {
  const clock = new FakeClock();
  const sent: [string, TaskState][][] = [];
  let fail = true;
  let release: () => void = () => undefined;
  const r = new CoalescingReporter({
    send: async (u) => {
      if (fail) {
        await new Promise<void>((res) => (release = res));
        throw new Error('manager gone');
      }
      sent.push(u.map((x) => [x.taskId, x.status.state]));
    },
    flushIntervalMs: 50,
    maxBatch: 10,
    clock,
  });
  r.report('a', st(TaskState.TASK_STATE_STARTING));
  r.report('b', st(TaskState.TASK_STATE_STARTING));
  const f = r.flush();
  await settle();
  r.report('a', st(TaskState.TASK_STATE_FAILED)); // arrives while the failing send is in flight
  release();
  await t.throwsAsync(f, { message: 'manager gone' });
  t.is(r.pendingCount(), 2);
  fail = false;
  clock.advance(50);
  await settle();
  t.deepEqual(sent, [[['b', TaskState.TASK_STATE_STARTING], ['a', TaskState.TASK_STATE_FAILED]]]);
  await r.stop();
});

test('stop() without flush drops nothing silently: pending stays countable', async (t) => {
  const r = new CoalescingReporter({ send: async () => undefined, clock: new FakeClock() });
  r.report('a', st(TaskState.TASK_STATE_RUNNING));
  await r.stop({ flush: false });
  t.is(r.pendingCount(), 1);
  r.report('b', st(TaskState.TASK_STATE_RUNNING)); // ignored once stopped
  t.is(r.pendingCount(), 1);
});

test('an urgent update right after a flush leaves within the urgent gap, taking what waits with it', async (t) => {
  const clock = new FakeClock();
  const sent: string[][] = [];
  const r = new CoalescingReporter({ send: async (u) => void sent.push(u.map((x) => x.taskId)), flushIntervalMs: 100, idleFlushMs: 5, urgentGapMs: 10, maxBatch: 10, clock });
  r.report('a', st(TaskState.TASK_STATE_RUNNING));
  await settle();
  clock.advance(5);
  await settle();
  t.deepEqual(sent, [['a']]);
  r.report('b', st(TaskState.TASK_STATE_PREPARING));
  await settle();
  clock.advance(5);
  await settle();
  t.deepEqual(sent, [['a']], 'an ordinary update waits for the interval');
  r.report('c', st(TaskState.TASK_STATE_SHUTDOWN), { urgent: true });
  await settle();
  clock.advance(5); // 10 ms after the flush
  await settle();
  t.deepEqual(sent, [['a'], ['b', 'c']], 'the urgent one left 10 ms after the last flush, with the waiting one');
  r.report('d', st(TaskState.TASK_STATE_PREPARING));
  await settle();
  clock.advance(50);
  await settle();
  t.is(sent.length, 2, 'after it, the interval holds again for ordinary updates');
  clock.advance(50);
  await settle();
  t.deepEqual(sent.at(-1), ['d']);
  await r.stop();
});
