import test from 'ava';
import { createStore, makeObject, type StoreEvent } from '../src/index.js';
import { NodeEvents } from '../src/dispatcher/node-events.js';

const task = (id: string, nodeId: string, networks: string[] = []) =>
  makeObject('task', { id, nodeId, serviceId: 's1', networks: networks.map((networkId) => ({ networkId, addresses: [], aliases: [] })) });

/** The object events `events` holds now (without waiting for more), as "kind:id". */
async function drain(events: AsyncIterableIterator<StoreEvent>, until: number): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const { value, done } = await events.next();
    if (done) return out;
    if (value.type === 'commit') {
      if (value.version >= until) return out;
      continue;
    }
    out.push(`${value.kind}:${value.object.id}`);
  }
}

test('node events: a task reaches the streams of its node (and of the node it left) only; a task on a network, and commits, reach every stream', async (t) => {
  const store = createStore();
  await store.update((tx) => tx.create('task', task('old', 'n1')));
  const router = new NodeEvents(store);
  const all = () => true;
  const n1 = router.viewAndWatch('n1', (tx) => tx.find('task', { nodeId: 'n1' }).map((x) => x.id), all);
  const n2 = router.viewAndWatch('n2', (tx) => tx.find('task', { nodeId: 'n2' }).map((x) => x.id), all);
  t.deepEqual(n1.snapshot, ['old'], 'the snapshot holds what was there');
  t.deepEqual(n2.snapshot, []);
  await store.update((tx) => {
    tx.create('task', task('a', 'n1'));
    tx.create('task', task('b', 'n2'));
    tx.create('task', task('c', 'n3'));
    tx.create('task', task('net', 'n3', ['overlay1']));
  });
  await store.update((tx) => tx.update('task', { ...tx.get('task', 'a')!, nodeId: 'n2' })); // moved from n1 to n2
  const v = store.version();
  t.deepEqual(await drain(n1.events, v), ['task:a', 'task:net', 'task:a']);
  t.deepEqual(await drain(n2.events, v), ['task:b', 'task:net', 'task:a']);
  n1.close();
  n2.close();
});

test('node events: a stream sees nothing from before its snapshot, and closing it leaves the others', async (t) => {
  const store = createStore();
  const router = new NodeEvents(store);
  const first = router.viewAndWatch('n1', () => undefined, () => true);
  await store.update((tx) => tx.create('task', task('before', 'n1')));
  const second = router.viewAndWatch('n1', (tx) => tx.find('task').length, () => true);
  t.is(second.snapshot, 1);
  first.close();
  await store.update((tx) => tx.create('task', task('after', 'n1')));
  t.deepEqual(await drain(second.events, store.version()), ['task:after']);
  t.false((await drain(first.events, store.version())).includes('task:after'), 'a closed stream gets nothing more');
  second.close();
});
