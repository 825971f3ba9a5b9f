import test from 'ava';
import { isSwarmError, ErrorCode } from '@swarmd/common';
import { NetworkSpec, NodeRole, TaskSpec, TaskState, StoreTransaction } from '@swarmd/proto';
import {
  createStore,
  cloneObject,
  makeObject,
  onKind,
  onCommit,
  LocalLog,
  MemoryStore,
  type StoreEvent,
  type Tx,
} from '../src/index.js';
import { sameValue } from '../src/store/shared-fields.js';

let tick = 1_000;
const clock = { now: () => tick };
let txn = 0;
const opts = () => ({ clock, newTxId: () => `tx-${++txn}` });

const service = (id: string, name: string) => makeObject('service', { id, spec: { annotations: { name, labels: {} }, task: undefined, mode: { $case: 'replicated', replicated: { replicas: 1 } }, update: undefined, rollback: undefined, endpoint: undefined } });
const task = (id: string, serviceId: string, nodeId = '', desiredState = TaskState.TASK_STATE_RUNNING, slot = 1) =>
  makeObject('task', { id, serviceId, nodeId, desiredState, slot, annotations: { name: `${serviceId}.${slot}`, labels: {} } });
const node = (id: string, hostname: string, role = NodeRole.NODE_ROLE_WORKER) =>
  makeObject('node', { id, role, description: { hostname, platform: undefined, resources: undefined, engineVersion: '', volumes: [], engineLabels: {} } });
const network = (id: string, name: string) => makeObject('network', { id, spec: NetworkSpec.fromPartial({ annotations: { name }, driver: 'overlay' }) });

async function rejects(t: import('ava').ExecutionContext, p: Promise<unknown>, code: ErrorCode, re?: RegExp) {
  const err = await t.throwsAsync(p);
  t.true(isSwarmError(err, code), `expected ${code}, got ${String(err)}`);
  if (re) t.regex(err.message, re);
}

test('create, read, update, delete; meta.version is the log index; timestamps come from the transaction', async (t) => {
  const s = createStore(opts());
  tick = 5_000;
  await s.update((tx) => tx.create('service', service('s1', 'web')));
  t.is(s.version(), 1);
  const got = s.view((tx) => tx.get('service', 's1'))!;
  t.deepEqual(got.meta, { version: 1, createdAt: 5_000, updatedAt: 5_000 });
  t.is(got.spec?.annotations?.name, 'web');

  tick = 6_000;
  await s.update((tx) => {
    const c = cloneObject('service', tx.get('service', 's1')!);
    c.spec!.annotations!.labels = { tier: 'front' };
    tx.update('service', c);
  });
  const upd = s.view((tx) => tx.get('service', 's1'))!;
  t.deepEqual(upd.meta, { version: 2, createdAt: 5_000, updatedAt: 6_000 });
  t.deepEqual(upd.spec?.annotations?.labels, { tier: 'front' });

  await s.update((tx) => tx.delete('service', 's1'));
  t.is(s.view((tx) => tx.get('service', 's1')), undefined);
  t.is(s.version(), 3);
  await rejects(t, s.update((tx) => tx.delete('service', 's1')), ErrorCode.NOT_FOUND);
  await rejects(t, s.update((tx) => tx.update('service', upd)), ErrorCode.NOT_FOUND);
});

test('an update carrying a stale version is refused with CONFLICT', async (t) => {
  const s = createStore(opts());
  await s.update((tx) => tx.create('service', service('s1', 'web')));
  const read = cloneObject('service', s.view((tx) => tx.get('service', 's1'))!);
  await s.update((tx) => tx.update('service', cloneObject('service', tx.get('service', 's1')!)));
  await rejects(t, s.update((tx) => tx.update('service', read)), ErrorCode.CONFLICT, /read version 1, current 2/);
});

test('a conflict found only at apply (two writers read the same version) rejects the later entry everywhere', async (t) => {
  // Two proposals built on the same read; the log applies both (as Raft would). The second is rejected at apply.
  const log = new LocalLog({ record: true });
  const s = createStore({ ...opts(), log });
  await s.update((tx) => tx.create('service', service('s1', 'web')));
  const read = s.view((tx) => tx.get('service', 's1'))!;
  const a = cloneObject('service', read);
  a.specVersion = 10;
  const b = cloneObject('service', read);
  b.specVersion = 20;
  // Stage both before either applies: the first call's entry is applied synchronously by LocalLog,
  // so build the second entry by hand with the same read version.
  await s.update((tx) => tx.update('service', a));
  const stale = StoreTransaction.encode({ id: 'x', timestamp: 1, actions: [{ kind: 1, target: { object: { $case: 'service', service: b } } }] }).finish();
  log.deliver(stale, 10);
  t.is(s.view((tx) => tx.get('service', 's1'))!.specVersion, 10);
  t.is(s.version(), 10, 'the rejected entry still advances the applied index');

  const follower = createStore({ log: new LocalLog() });
  const fl = follower.replicatedLog as LocalLog;
  for (const e of log.entries) fl.deliver(e.data, e.index);
  t.deepEqual(follower.dump(), s.dump());
});

test('creating an existing id or a taken name is ALREADY_EXISTS; names compare case-insensitively', async (t) => {
  const s = createStore(opts());
  await s.update((tx) => {
    tx.create('service', service('s1', 'web'));
    tx.create('network', network('n1', 'backend'));
  });
  await rejects(t, s.update((tx) => tx.create('service', service('s1', 'other'))), ErrorCode.ALREADY_EXISTS, /service s1 already exists/);
  await rejects(t, s.update((tx) => tx.create('service', service('s2', 'WEB'))), ErrorCode.ALREADY_EXISTS, /name "WEB" is already in use by service s1/);
  await rejects(t, s.update((tx) => tx.create('network', network('n2', 'backend'))), ErrorCode.ALREADY_EXISTS);
  // A service and a network may share a name; node hostnames are not unique.
  await s.update((tx) => {
    tx.create('service', service('s3', 'backend'));
    tx.create('node', node('a', 'host1'));
    tx.create('node', node('b', 'host1'));
  });
  t.is(s.view((tx) => tx.find('node', { name: 'HOST1' })).length, 2);
  // Renaming s1 away from "web" and taking "web" for a new service in one transaction works.
  await s.update((tx) => {
    const c = cloneObject('service', tx.get('service', 's1')!);
    c.spec!.annotations!.name = 'web-old';
    tx.update('service', c);
    tx.create('service', service('s4', 'web'));
  });
  t.is(s.view((tx) => tx.find('service', { name: 'web' }))[0].id, 's4');
});

test('indexes: by name, name prefix, service, node, desired state, slot, role; reads see the transaction own writes', async (t) => {
  const s = createStore(opts());
  await s.update((tx) => {
    tx.create('node', node('n1', 'alpha', NodeRole.NODE_ROLE_MANAGER));
    tx.create('node', node('n2', 'beta'));
    tx.create('service', service('s1', 'web'));
    tx.create('service', service('s2', 'worker'));
    tx.create('task', task('t1', 's1', 'n1', TaskState.TASK_STATE_RUNNING, 1));
    tx.create('task', task('t2', 's1', 'n2', TaskState.TASK_STATE_RUNNING, 2));
    tx.create('task', task('t3', 's2', 'n2', TaskState.TASK_STATE_SHUTDOWN, 1));
  });
  s.view((tx) => {
    const ids = (xs: readonly { id: string }[]) => xs.map((x) => x.id);
    t.deepEqual(ids(tx.find('task', { serviceId: 's1' })), ['t1', 't2']);
    t.deepEqual(ids(tx.find('task', { nodeId: 'n2' })), ['t2', 't3']);
    t.deepEqual(ids(tx.find('task', { desiredState: TaskState.TASK_STATE_RUNNING })), ['t1', 't2']);
    t.deepEqual(ids(tx.find('task', { serviceId: 's1', slot: 2 })), ['t2']);
    t.deepEqual(ids(tx.find('service', { namePrefix: 'w' })), ['s1', 's2']);
    t.deepEqual(ids(tx.find('service', { name: 'Worker' })), ['s2']);
    t.deepEqual(ids(tx.find('node', { role: NodeRole.NODE_ROLE_MANAGER })), ['n1']);
    t.deepEqual(ids(tx.find('task')), ['t1', 't2', 't3']);
  });
  await s.update((tx) => {
    const t2 = cloneObject('task', tx.get('task', 't2')!);
    t2.nodeId = 'n1';
    tx.update('task', t2);
    tx.delete('task', 't1');
    tx.create('task', task('t4', 's1', 'n1'));
    t.deepEqual(tx.find('task', { nodeId: 'n1' }).map((x) => x.id), ['t2', 't4']);
  });
  t.deepEqual(s.view((tx) => tx.find('task', { nodeId: 'n1' }).map((x) => x.id)), ['t2', 't4']);
  t.deepEqual(s.view((tx) => tx.find('task', { nodeId: 'n2' }).map((x) => x.id)), ['t3']);
  t.throws(() => s.view((tx) => tx.find('service', { nodeId: 'n1' } as never)), { message: /service cannot be found by nodeId/ });
});

test('objects handed out are frozen; changing the caller copy after create does not reach the store', async (t) => {
  const s = createStore(opts());
  const mine = service('s1', 'web');
  await s.update((tx) => tx.create('service', mine));
  mine.spec!.annotations!.name = 'changed';
  const got = s.view((tx) => tx.get('service', 's1'))!;
  t.is(got.spec?.annotations?.name, 'web');
  t.true(Object.isFrozen(got) && Object.isFrozen(got.spec) && Object.isFrozen(got.spec?.annotations?.labels));
  t.throws(() => {
    (got as { specVersion: number }).specVersion = 3;
  });
  const copy = cloneObject('service', got);
  copy.specVersion = 3;
  t.is(s.view((tx) => tx.get('service', 's1'))!.specVersion, 0);
});

test('a staged write is an immutable copy: later changes to the caller object, its nested parts or its bytes reach neither the batch nor the store', async (t) => {
  const s = createStore(opts());
  await s.update((tx) => tx.create('service', service('s1', 'web')));
  const cur = s.view((tx) => tx.get('service', 's1'))!;
  const mine = { ...cur, spec: { ...cur.spec!, annotations: { name: 'web', labels: { a: '1' } } } };
  const secret = makeObject('secret', { id: 'x1', spec: { annotations: { name: 'pw', labels: {} }, data: Buffer.from('hunter2') } });
  await s.batch(async (b) => {
    await b.update((tx) => {
      tx.update('service', mine);
      tx.create('secret', secret);
    });
    mine.spec.annotations.labels.a = '2';
    secret.spec!.data[0] = 0x78;
    await b.update((tx) => {
      const staged = tx.get('service', 's1')!;
      t.is(staged.spec?.annotations?.labels.a, '1', 'the batch reads what was staged');
      t.true(Object.isFrozen(staged) && Object.isFrozen(staged.spec?.annotations?.labels));
      t.is(staged.spec?.mode, cur.spec?.mode, 'frozen parts of the store object are shared, not copied');
      t.is(Buffer.from(tx.get('secret', 'x1')!.spec!.data).toString(), 'hunter2');
    });
  });
  t.false(Object.isFrozen(mine), "the caller's object stays its own");
  t.is(s.view((tx) => tx.get('service', 's1'))!.spec?.annotations?.labels.a, '1');
  t.is(Buffer.from(s.view((tx) => tx.get('secret', 'x1'))!.spec!.data).toString(), 'hunter2');
});

test('a failing callback proposes nothing; transactions cannot be used after their callback', async (t) => {
  const s = createStore(opts());
  await t.throwsAsync(
    s.update((tx) => {
      tx.create('service', service('s1', 'web'));
      throw new Error('boom');
    }),
    { message: 'boom' },
  );
  t.is(s.version(), 0);
  let kept: Tx | undefined;
  await s.update((tx) => {
    kept = tx;
  });
  t.throws(() => kept!.create('service', service('s1', 'web')), { message: /after its callback returned/ });
  t.throws(() => s.view((tx) => (tx as Tx).create('service', service('s1', 'web'))), { message: /read-only/ });
});

test('watch: create/update/delete events with old objects, then one commit per transaction', async (t) => {
  const s = createStore(opts());
  await s.update((tx) => tx.create('service', service('s0', 'pre')));
  const { snapshot, events } = s.viewAndWatch((tx) => tx.find('service').length);
  t.is(snapshot, 1);
  await s.update((tx) => {
    tx.create('service', service('s1', 'web'));
    tx.create('task', task('t1', 's1'));
  });
  await s.update((tx) => {
    const c = cloneObject('service', tx.get('service', 's1')!);
    c.specVersion = 7;
    tx.update('service', c);
  });
  await s.update((tx) => tx.delete('task', 't1'));
  const seen: StoreEvent[] = [];
  for await (const e of events) {
    seen.push(e);
    if (seen.length === 7) break;
  }
  t.deepEqual(
    seen.map((e) => (e.type === 'commit' ? `commit@${e.version}` : `${e.type} ${e.kind} ${e.object.id}@${e.version}`)),
    ['create service s1@2', 'create task t1@2', 'commit@2', 'update service s1@3', 'commit@3', 'delete task t1@4', 'commit@4'],
  );
  const upd = seen[3];
  t.true(upd.type === 'update' && upd.kind === 'service' && upd.old?.specVersion === 0 && upd.object.specVersion === 7);
});

test('watch matchers select events; commits only when asked for', async (t) => {
  const s = createStore(opts());
  const tasks = s.watch(onKind('task', 'create'));
  const commits = s.watch(onCommit);
  await s.update((tx) => tx.create('service', service('s1', 'web')));
  await s.update((tx) => tx.create('task', task('t1', 's1')));
  await s.update((tx) => tx.delete('task', 't1'));
  const first = await tasks.next();
  t.true(!first.done && first.value.type === 'create' && first.value.object.id === 't1');
  const c = [await commits.next(), await commits.next(), await commits.next()].map((r) => (r.value as { version: number }).version);
  t.deepEqual(c, [1, 2, 3]);
  await tasks.return!();
  await commits.return!();
});

test('a slow watcher is dropped with an error; the store and other watchers carry on', async (t) => {
  const s = createStore({ ...opts(), watchLimit: 5 });
  const slow = s.watch();
  const fast = s.watch(onCommit);
  const fastSeen: number[] = [];
  const consume = (async () => {
    for await (const e of fast) if (e.type === 'commit' && fastSeen.push(e.version) === 10) break;
  })();
  for (let i = 0; i < 10; i++) await s.update((tx) => tx.create('service', service(`s${i}`, `svc${i}`)));
  await consume;
  t.is(fastSeen.length, 10);
  const err = await t.throwsAsync(slow.next());
  t.true(isSwarmError(err, ErrorCode.UNAVAILABLE));
  t.regex(err.message, /fell 5 events behind/);
  t.is(s.version(), 10);
});

test('snapshot/restore round trip; restoring ends watchers so they re-read', async (t) => {
  const log = new LocalLog();
  const s = createStore({ ...opts(), log });
  await s.update((tx) => {
    tx.create('node', node('n1', 'alpha'));
    tx.create('service', service('s1', 'web'));
    tx.create('task', task('t1', 's1', 'n1'));
    tx.create('network', network('net1', 'ingress'));
    tx.create('cluster', makeObject('cluster', { id: 'c1', removedNodeIds: ['old'] }));
  });
  await s.update((tx) => tx.delete('task', 't1'));
  const snap = log.snapshot();
  t.is(snap.index, 2);

  const log2 = new LocalLog();
  const s2 = createStore({ log: log2 });
  await s2.update((tx) => tx.create('service', service('zz', 'gone')));
  const w = s2.watch();
  log2.restore(snap.data, snap.index);
  t.deepEqual(s2.dump(), s.dump());
  t.is(s2.version(), 2);
  t.is(s2.view((tx) => tx.find('service', { name: 'web' }))[0].id, 's1');
  t.true(Object.isFrozen(s2.view((tx) => tx.get('cluster', 'c1'))));
  const err = await t.throwsAsync(w.next());
  t.regex(err.message, /restored from a snapshot/);
  // The restored store keeps going from the snapshot's index.
  await s2.update((tx) => tx.create('task', task('t2', 's1')));
  t.is(s2.view((tx) => tx.get('task', 't2'))!.meta!.version, 3);
});

test('deterministic apply: two stores fed the same entries are identical', async (t) => {
  const log = new LocalLog({ record: true });
  const leader = createStore({ ...opts(), log });
  for (let i = 0; i < 20; i++) {
    tick += 7;
    await leader.update((tx) => {
      tx.create('task', task(`t${i}`, `s${i % 3}`, `n${i % 4}`));
      if (i > 0 && i % 2 === 0) {
        const c = cloneObject('task', tx.get('task', `t${i - 1}`)!);
        c.desiredState = TaskState.TASK_STATE_SHUTDOWN;
        tx.update('task', c);
      }
      if (i % 5 === 4) tx.delete('task', `t${i - 4}`);
    });
  }
  await leader.update((tx) => tx.create('task', task('t0', 'x'))).catch(() => undefined); // refused on the leader: no entry
  const followers = [new MemoryStore({ log: new LocalLog() }), new MemoryStore({ log: new LocalLog() })];
  for (const f of followers) for (const e of log.entries) (f.replicatedLog as LocalLog).deliver(e.data, e.index);
  for (const f of followers) {
    t.deepEqual(f.dump(), leader.dump());
    t.is(f.version(), leader.version());
    t.deepEqual(Buffer.from((f.replicatedLog as LocalLog).snapshot().data), Buffer.from(log.snapshot().data));
  }
});

test('batch: many callbacks become a few entries; a failing callback leaves no trace', async (t) => {
  const s = createStore({ ...opts(), maxBatchActions: 10 });
  const commits = s.watch(onCommit);
  let failed = 0;
  await s.batch(async (b) => {
    for (let i = 0; i < 25; i++) await b.update((tx) => tx.create('task', task(`t${i}`, 's1')));
    await b.update((tx) => tx.create('task', task('t3', 's1'))).catch(() => failed++);
  });
  t.is(failed, 1);
  t.is(s.view((tx) => tx.find('task').length), 25);
  t.is(s.version(), 3); // 10 + 10 + 5
  commits.return!().catch(() => undefined);
});

test('a follower refuses writes with UNAVAILABLE; leader changes are reported', async (t) => {
  const log = new LocalLog();
  const s = createStore({ log });
  const changes: boolean[] = [];
  log.onLeaderChange((l) => changes.push(l));
  log.setLeader(false);
  await rejects(t, s.update((tx) => tx.create('service', service('s1', 'web'))), ErrorCode.UNAVAILABLE, /not the leader/);
  log.setLeader(true);
  await s.update((tx) => tx.create('service', service('s1', 'web')));
  t.deepEqual(changes, [false, true]);
  const ac = new AbortController();
  ac.abort();
  await rejects(t, s.update((tx) => tx.create('service', service('s2', 'x')), { signal: ac.signal }), ErrorCode.CANCELLED);
});

test('createStore({ proposer: null }) is a store on a LocalLog', async (t) => {
  const s = createStore({ proposer: null });
  t.true(s.replicatedLog instanceof LocalLog);
  await s.update((tx) => tx.create('cluster', makeObject('cluster', { id: 'c' })));
  t.is(s.version(), 1);
});

test("a service's tasks hold one frozen copy of an equal spec (applied or restored); a different spec keeps its own, another service's equal one is equal", async (t) => {
  const log = new LocalLog();
  const s = createStore({ ...opts(), log });
  const spec = (image: string, env: string[]) => TaskSpec.fromPartial({ container: { image, env, labels: { tier: 'web' } }, resources: { limits: { nanoCpus: 5e8, memoryBytes: 2 ** 27 } } });
  const withSpec = (id: string, serviceId: string, ts: TaskSpec) => ({ ...task(id, serviceId), spec: ts });
  await s.update((tx) => {
    tx.create('service', service('s1', 'web'));
    tx.create('service', service('s2', 'api'));
    for (const id of ['a', 'b']) tx.create('task', withSpec(id, 's1', spec('web:1', ['A=1'])));
  });
  // written by another transaction, decoded from other bytes: still the same copy
  await s.update((tx) => tx.create('task', withSpec('c', 's1', spec('web:1', ['A=1']))));
  await s.update((tx) => {
    tx.create('task', withSpec('d', 's1', spec('web:2', ['A=1'])));
    tx.create('task', withSpec('e', 's1', spec('web:1', ['A=2'])));
    tx.create('task', withSpec('f', 's2', spec('web:1', ['A=1'])));
  });
  const specOf = (st: MemoryStore, id: string) => st.view((tx) => tx.get('task', id))!.spec!;
  const holds = (st: MemoryStore) => {
    t.is(specOf(st, 'a'), specOf(st, 'b'));
    t.is(specOf(st, 'a'), specOf(st, 'c'));
    t.not(specOf(st, 'a'), specOf(st, 'd'), 'another image');
    t.not(specOf(st, 'a'), specOf(st, 'e'), 'another env');
    t.deepEqual(specOf(st, 'd').container!.image, 'web:2');
    t.deepEqual(specOf(st, 'e').container!.env, ['A=2']);
    t.deepEqual(specOf(st, 'f'), specOf(st, 'a'));
    t.true(Object.isFrozen(specOf(st, 'a').container!.env));
  };
  holds(s);
  // an update of one task (its status) keeps it on the shared copy
  await s.update((tx) => tx.update('task', { ...cloneObject('task', tx.get('task', 'b')!), nodeId: 'n1' }));
  t.is(specOf(s, 'b'), specOf(s, 'a'));
  const s2 = createStore({ log: new LocalLog() });
  (s2.replicatedLog as LocalLog).restore(log.snapshot().data, log.snapshot().index);
  holds(s2);
});

test('sameValue: equal decoded values match; a nested field, a byte, a date, an array length or an extra key tells them apart', (t) => {
  const v = () => ({ a: 1, b: { c: ['x', 'y'], d: new Uint8Array([1, 2]), e: new Date(5), f: undefined as string | undefined } });
  t.true(sameValue(v(), v()));
  const changed = [
    (o: ReturnType<typeof v>) => (o.b.c[1] = 'z'),
    (o: ReturnType<typeof v>) => (o.b.d[0] = 9),
    (o: ReturnType<typeof v>) => (o.b.e = new Date(6)),
    (o: ReturnType<typeof v>) => o.b.c.push('w'),
    (o: ReturnType<typeof v>) => Object.assign(o.b, { g: 1 }),
    (o: ReturnType<typeof v>) => (o.b.f = ''),
  ];
  for (const [i, change] of changed.entries()) {
    const o = v();
    change(o);
    t.false(sameValue(v(), o), `change ${i}`);
    t.false(sameValue(o, v()), `change ${i}, reversed`);
  }
  t.false(sameValue([1], { 0: 1 }), 'an array is not an object with the same keys');
});
