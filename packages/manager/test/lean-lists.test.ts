import test from 'ava';
import { ControlService, ListServicesResponse, ListTasksRequest, ListTasksResponse, Service, Task, TaskState } from '@swarmd/proto';
import { ControlServiceDefinition, repeatedFieldSerializer, withLeanLists } from '../src/index.js';

const spec = { container: { image: 'registry.local:5000/web@sha256:' + 'a'.repeat(64), env: ['A=1', 'B=' + 'x'.repeat(300)] }, placement: { constraints: ['node.role==worker'] } };
const task = (i: number) =>
  Task.fromPartial({
    id: `t${i}`,
    serviceId: 's1',
    slot: i,
    desiredState: TaskState.TASK_STATE_RUNNING,
    spec,
    annotations: { name: `web.${i}`, labels: { k: 'v' } },
    status: { state: TaskState.TASK_STATE_PENDING, message: 'pending', err: 'no suitable node', timestamp: 1_700_000_000_000 + i },
    meta: { version: 2 ** 40 + i, createdAt: 1_700_000_000_000 },
  });

test('a list answered item by item is byte for byte what the generated encoder writes (empty, small items, items past 127 and 16,383 bytes)', (t) => {
  const ser = ControlServiceDefinition.listTasks.responseSerialize;
  for (const tasks of [[], [Task.fromPartial({ id: 'x' })], Array.from({ length: 300 }, (_, i) => task(i)), [Task.fromPartial({ id: 'big', spec: { container: { image: 'i', env: ['X=' + 'y'.repeat(20_000)] } } })]]) {
    const want = Buffer.from(ListTasksResponse.encode({ tasks }).finish());
    const got = ser({ tasks });
    t.true(got.equals(want), `${tasks.length} tasks: ${got.length} bytes, generated ${want.length}`);
    t.deepEqual(ListTasksResponse.decode(got), ListTasksResponse.decode(want));
  }
  const services = [Service.fromPartial({ id: 's1', spec: { annotations: { name: 'web' } } })];
  t.true(ControlServiceDefinition.listServices.responseSerialize({ services }).equals(Buffer.from(ListServicesResponse.encode({ services }).finish())));
});

test('a list serializer grows its buffer past its first guess without losing bytes', (t) => {
  const tasks = Array.from({ length: 3 }, (_, i) => Task.fromPartial({ id: `t${i}`, spec: { container: { image: 'i', env: ['X=' + 'y'.repeat(5_000)] } } }));
  const got = repeatedFieldSerializer('tasks', Task)({ tasks });
  t.deepEqual(ListTasksResponse.decode(got).tasks.map((x) => x.id), ['t0', 't1', 't2']);
  t.true(got.equals(Buffer.from(ListTasksResponse.encode({ tasks }).finish())));
});

test('withLeanLists refuses a response with another field than the list, and a method the service does not have', (t) => {
  t.throws(() => withLeanLists(ControlService, { listTasks: { key: 'tasks', item: Task, response: ListTasksRequest } }), { message: /\/swarm.v1.Control\/ListTasks answers fields filters, not only "tasks"/ });
  t.throws(() => withLeanLists(ControlService, { listNothing: { key: 'tasks', item: Task, response: ListTasksResponse } }), { message: /listNothing is not a unary method/ });
});
