import test from 'ava';
import { Rollout_State, Service, Task, UpdateStatus_State } from '@swarmd/proto';
import { serviceView, taskView } from '../src/web/server.js';

test("the web view shows a canary rollout's step, weight and gate on its service, and marks canary tasks", (t) => {
  const s = Service.fromPartial({
    id: 's1',
    spec: { annotations: { name: 'web' } },
    updateStatus: { state: UpdateStatus_State.UPDATING, message: 'canary rollout in progress' },
    rollout: { state: Rollout_State.WAITING, config: { steps: [20, 50, 100] }, step: 0, weight: 20, message: 'gate holding, waiting for promote' },
  });
  t.is(serviceView(s).rollout, 'step 1 of 3 at 20% (waiting): gate holding, waiting for promote');
  const done = Service.fromPartial({ ...s, rollout: { ...s.rollout, state: Rollout_State.COMPLETED } });
  t.is(serviceView(done).rollout, '', 'no rollout line once it ended');
  t.true(taskView(Task.fromPartial({ id: 't1', canary: { path: '', port: 0 } })).canary);
  t.false(taskView(Task.fromPartial({ id: 't2' })).canary);
});
