import test from 'ava';
import { Endpoint, StoreTransaction, Task, TaskSpec, ContainerSpec, StoreAction_Kind } from '@swarmd/proto';
import { makeObject, wrapObject } from '../src/index.js';
import { withDecodeMemo } from '../src/store/decode-memo.js';

const spec = (image: string, env: string[]) => TaskSpec.fromPartial({ container: ContainerSpec.fromPartial({ image, env }) });
const task = (id: string, s: TaskSpec) => makeObject('task', { id, serviceId: 'svc', slot: 1, spec: s, endpoint: Endpoint.fromPartial({ spec: undefined, ports: [], virtualIps: [] }) });
const entry = (tasks: Task[]) =>
  StoreTransaction.encode({ id: 'tx', timestamp: 1, actions: tasks.map((t) => ({ kind: StoreAction_Kind.CREATE, target: wrapObject('task', t) })) }).finish();

test('inside the memo an entry decodes to what a plain decode gives, its tasks holding one frozen spec per distinct value', (t) => {
  const tasks = [task('a', spec('web:1', ['A=1'])), task('b', spec('web:1', ['A=1'])), task('c', spec('web:2', ['A=1'])), task('d', spec('web:1', ['A=1']))];
  const bytes = entry(tasks);
  const plain = StoreTransaction.decode(bytes);
  const memo = withDecodeMemo(() => StoreTransaction.decode(bytes));
  t.deepEqual(memo, plain);
  const specs = memo.actions.map((a) => (a.target!.object as { task: Task }).task.spec);
  t.is(specs[0], specs[1], 'the same bytes: the same object');
  t.is(specs[0], specs[3]);
  t.not(specs[0], specs[2], 'another image: another object');
  t.is(specs[2]!.container!.image, 'web:2');
  t.true(Object.isFrozen(specs[0]) && Object.isFrozen(specs[0]!.container!.env));
  // a later entry with the same spec bytes gets the same object again
  const again = withDecodeMemo(() => StoreTransaction.decode(entry([task('e', spec('web:1', ['A=1']))])));
  t.is((again.actions[0].target!.object as { task: Task }).task.spec, specs[0]);
});

test('outside the memo the codecs decode fresh, mutable objects as before', (t) => {
  const bytes = entry([task('a', spec('web:1', ['A=1'])), task('b', spec('web:1', ['A=1']))]);
  withDecodeMemo(() => StoreTransaction.decode(bytes));
  const after = StoreTransaction.decode(bytes).actions.map((a) => (a.target!.object as { task: Task }).task.spec!);
  t.not(after[0], after[1]);
  t.false(Object.isFrozen(after[0]));
  after[0].container!.env.push('B=2');
  t.deepEqual(after[1].container!.env, ['A=1']);
  const direct = TaskSpec.decode(TaskSpec.encode(spec('web:1', ['A=1'])).finish());
  t.false(Object.isFrozen(direct), 'a decode of a whole buffer is never memoized');
});

test('a decode that throws inside the memo leaves the codecs as they were', (t) => {
  const codec = TaskSpec as { decode: unknown };
  const before = codec.decode;
  t.throws(() => withDecodeMemo(() => StoreTransaction.decode(new Uint8Array([0x12, 0xff, 0xff, 0xff, 0x0f]))));
  t.is(codec.decode, before);
});
