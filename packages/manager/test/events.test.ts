// Cluster events derived from a real store (its local log, no consensus): what a change gives,
// the kept history, follow() with no gap between replay and live, and request checks.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSwarmError, ErrorCode } from '@swarmd/common';
import { EventsRequest, NodeState, TaskState, type ClusterEvent } from '@swarmd/proto';
import { createStore, makeObject, EventHistory } from '../src/index.js';
import { eventFilterOf } from '../src/controlapi/events.js';

/** A clock per test (ava runs a file's tests concurrently): `c.tick` is what now() returns. */
function fakeClock() {
  const c = { tick: 1_000, now: () => c.tick, sleep: (ms: number) => sleep(ms) };
  return c;
}

const node = (id: string, hostname: string) =>
  makeObject('node', { id, description: { hostname, platform: undefined, resources: undefined, engineVersion: '', volumes: [], engineLabels: {} }, status: { state: NodeState.NODE_STATE_READY, message: '', addr: '' } });
const task = (id: string, nodeId: string, state: TaskState) =>
  makeObject('task', {
    id,
    serviceId: 's1',
    nodeId,
    slot: 2,
    desiredState: TaskState.TASK_STATE_RUNNING,
    serviceAnnotations: { name: 'web', labels: {} },
    status: { state, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
  });

/** Resolves once the history holds `n` events (it follows the store asynchronously). */
async function settled(h: EventHistory, n: number): Promise<readonly ClusterEvent[]> {
  for (let i = 0; i < 200 && h.list().length < n; i++) await sleep(5);
  return h.list();
}

test('a task reaching running gives one state event with the old and new state and its node by hostname', async (t) => {
  const clock = fakeClock();
  const store = createStore({ clock });
  const h = new EventHistory(store);
  t.teardown(() => h.stop());
  await store.update((tx) => tx.create('node', node('n1', 'host-a')));
  await store.update((tx) => tx.create('task', task('t1', 'n1', TaskState.TASK_STATE_STARTING)));
  clock.tick = 5_000;
  await store.update((tx) => tx.update('task', { ...tx.get('task', 't1')!, status: { ...tx.get('task', 't1')!.status!, state: TaskState.TASK_STATE_RUNNING } }));
  const events = await settled(h, 3);
  t.deepEqual(
    events.map((e) => `${e.type} ${e.action} ${e.name}`),
    ['node create host-a', 'task create web.2', 'task state web.2'],
  );
  const s = events[2];
  t.is(s.attributes['state.old'], 'starting');
  t.is(s.attributes['state.new'], 'running');
  t.is(s.attributes.node, 'host-a');
  t.is(Number(s.timeMs), 5_000, "the leader's time from the log entry");
});

test('an update that changes nothing a user follows gives no event', async (t) => {
  const clock = fakeClock();
  const store = createStore({ clock });
  const h = new EventHistory(store);
  t.teardown(() => h.stop());
  await store.update((tx) => tx.create('node', node('n1', 'host-a')));
  await store.update((tx) => tx.update('node', { ...tx.get('node', 'n1')!, status: { state: NodeState.NODE_STATE_READY, message: 'still ready', addr: '10.0.0.1' } }));
  await store.update((tx) => tx.update('node', { ...tx.get('node', 'n1')!, status: { state: NodeState.NODE_STATE_DOWN, message: 'heartbeat failure', addr: '10.0.0.1' } }));
  const events = await settled(h, 2);
  await sleep(20);
  t.deepEqual(
    h.list().map((e) => `${e.type} ${e.action} ${e.attributes['state.new'] ?? ''}`),
    ['node create ', 'node state down'],
  );
  t.is(events[1].attributes.message, 'heartbeat failure');
});

test('follow replays the kept events from since, then live ones, with none lost between', async (t) => {
  const clock = fakeClock();
  const store = createStore({ clock });
  const h = new EventHistory(store);
  t.teardown(() => h.stop());
  clock.tick = 1_000;
  await store.update((tx) => tx.create('node', node('old', 'old')));
  clock.tick = 2_000;
  await store.update((tx) => tx.create('node', node('kept', 'kept')));
  await settled(h, 2);
  const seen: string[] = [];
  const stop = h.follow(1_500, (e) => seen.push(e.name));
  clock.tick = 3_000;
  await store.update((tx) => tx.create('node', node('live', 'live')));
  await settled(h, 3);
  stop();
  await store.update((tx) => tx.create('node', node('after', 'after')));
  await settled(h, 4);
  t.deepEqual(seen, ['kept', 'live']);
});

test('the history keeps only the last `capacity` events', async (t) => {
  const clock = fakeClock();
  const store = createStore({ clock });
  const h = new EventHistory(store, { capacity: 3 });
  t.teardown(() => h.stop());
  for (let i = 0; i < 5; i++) await store.update((tx) => tx.create('node', node(`n${i}`, `h${i}`)));
  for (let i = 0; i < 200 && h.list().at(-1)?.name !== 'h4'; i++) await sleep(5);
  t.deepEqual(
    h.list().map((e) => e.name),
    ['h2', 'h3', 'h4'],
  );
});

test('an events request with an unknown type or event, or since after until, is refused naming it', (t) => {
  const bad = (req: Partial<EventsRequest>, re: RegExp) => {
    const err = t.throws(() => eventFilterOf(EventsRequest.fromPartial(req)));
    t.true(isSwarmError(err, ErrorCode.INVALID_ARGUMENT));
    t.regex(err.message, re);
  };
  bad({ types: ['volume'] }, /unknown type "volume"/);
  bad({ actions: ['die'] }, /unknown event "die"/);
  bad({ sinceMs: 5, untilMs: 4 }, /since is after until/);
  t.is(eventFilterOf(EventsRequest.fromPartial({ types: ['task'], names: ['web'] })).types.size, 1);
});
