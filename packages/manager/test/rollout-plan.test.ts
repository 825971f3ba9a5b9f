// The canary rollout's pure decision (rollout/plan.ts) and the kit's rules for a rollout
// (controller-kit/rollout.ts), with the canary config check (specs/canary.ts).
import test from 'ava';
import { HealthState, Rollout_State, TaskState, UpdateStatus_State, type CanaryConfig, type Rollout, type Service, type Task } from '@swarmd/proto';
import { newTask } from '../src/controller-kit/task.js';
import { atStep, canaryCountFor } from '../src/controller-kit/rollout.js';
import { checkCanaryConfig } from '../src/specs/canary.js';
import { planRollout, MIN_CHECKS } from '../src/rollout/plan.js';
import { mkService } from './orchestrator-harness.js';

const T0 = 1_000_000;
const S = TaskState;

function config(o: Partial<CanaryConfig> = {}): CanaryConfig {
  return { steps: [20, 50, 100], intervalMs: 0, replicas: 1, maxFailureRatio: 0, checkPath: '', checkPort: 0, checkSuccess: 0.99, ...o };
}

/** A service of 4 replicas whose spec v2 is being rolled out with `c`. */
function service(c: CanaryConfig, o: Partial<Rollout> = {}): Service {
  const s = mkService('s', 'web', { replicas: 4 });
  s.specVersion = 2;
  s.previousSpec = structuredClone(s.spec);
  s.updateStatus = { state: UpdateStatus_State.UPDATING, startedAt: T0, completedAt: 0, message: 'canary rollout in progress', failedTaskIds: [] };
  const base: Rollout = { state: 0, config: c, step: 0, weight: 0, specVersion: 2, replicas: c.replicas, startedAt: T0, stepStartedAt: 0, nextStepAt: 0, completedAt: 0, message: '', failedTaskIds: [], baselines: [] };
  s.rollout = { ...atStep(base, 0, T0), ...o };
  return s;
}

let seq = 0;
function task(of: Service, slot: number, o: { state?: TaskState; desired?: TaskState; canary?: boolean; health?: HealthState; check?: [number, number]; created?: number } = {}): Task {
  const t = newTask(of, { id: `t${String(++seq).padStart(4, '0')}`, slot, now: 0 });
  t.nodeId = 'n1';
  t.desiredState = o.desired ?? S.TASK_STATE_RUNNING;
  t.status = {
    ...t.status!,
    state: o.state ?? S.TASK_STATE_RUNNING,
    container: o.health ? { containerId: 'c', pid: 1, exitCode: 0, oomKilled: false, health: o.health, healthOutput: '' } : undefined,
    canaryCheck: o.check ? { ok: o.check[0], total: o.check[1], lastError: o.check[0] < o.check[1] ? 'GET /healthz: HTTP 500' : '', lastAt: T0 } : undefined,
  };
  if (o.canary) t.canary = { path: '', port: 0 };
  t.meta = { version: 1, createdAt: o.created ?? (o.canary ? T0 + 1 : 0), updatedAt: 0 };
  return t;
}
const olds = (s: Service): Task[] => [1, 2, 3, 4].map((slot) => task(s, slot));

test('a rollout starts its canaries in the slots after the replicas and touches no old task', (t) => {
  const s = service(config({ replicas: 2 }));
  const p = planRollout({ service: s, tasks: olds(s), replicas: 4, now: T0 });
  t.deepEqual(p.create, [5, 6]);
  t.deepEqual(p.shutdown, []);
  t.is(p.abort, undefined);
  t.regex(p.rollout?.message ?? '', /^waiting for 2 of 2 canary tasks to run/);
});

test('the gate holds once every canary runs: the step starts then, with the check baselines; a canary that stops being ready starts it over', (t) => {
  const s = service(config({ intervalMs: 60_000 }));
  const c = task(s, 5, { canary: true, check: [3, 4] });
  const p = planRollout({ service: s, tasks: [...olds(s), c], replicas: 4, now: T0 + 10 });
  t.is(p.rollout?.stepStartedAt, T0 + 10);
  t.is(p.rollout?.nextStepAt, T0 + 10 + 60_000);
  t.deepEqual(p.rollout?.baselines, [{ taskId: c.id, ok: 3, total: 4 }]);
  t.is(p.wakeAt, T0 + 10 + 60_000);
  const holding = { ...s, rollout: p.rollout };
  const starting = task(s, 5, { canary: true, health: HealthState.HEALTH_STATE_STARTING });
  const q = planRollout({ service: holding, tasks: [...olds(s), starting], replicas: 4, now: T0 + 20 });
  t.is(q.rollout?.stepStartedAt, 0);
  t.is(q.rollout?.nextStepAt, 0);
  t.is(q.rollout?.message, 'waiting for 1 of 1 canary tasks to run');
});

test('timed steps move on once the gate held for the interval; past the last canary step the rollout promotes', (t) => {
  const s = service(config({ intervalMs: 60_000, steps: [10, 50] }), { stepStartedAt: T0, nextStepAt: T0 + 60_000 });
  const tasks = [...olds(s), task(s, 5, { canary: true })];
  t.is(planRollout({ service: s, tasks, replicas: 4, now: T0 + 59_999 }).rollout, undefined, 'nothing before the interval ends');
  const p = planRollout({ service: s, tasks, replicas: 4, now: T0 + 60_000 });
  t.is(p.rollout?.step, 1);
  t.is(p.rollout?.weight, 50);
  t.is(p.rollout?.state, Rollout_State.PROGRESSING);
  t.is(p.rollout?.stepStartedAt, 0, 'the next step holds from when the gate is seen holding');
  const last = { ...s, rollout: { ...p.rollout!, stepStartedAt: T0 + 60_000, nextStepAt: T0 + 120_000 } };
  const q = planRollout({ service: last, tasks, replicas: 4, now: T0 + 120_000 });
  t.is(q.rollout?.state, Rollout_State.PROMOTING);
  t.is(q.rollout?.weight, 100);
});

test('a manual step waits for promote however long the gate holds', (t) => {
  const s = service(config(), { stepStartedAt: T0, message: 'gate holding, waiting for promote' });
  const p = planRollout({ service: s, tasks: [...olds(s), task(s, 5, { canary: true })], replicas: 4, now: T0 + 3_600_000 });
  t.is(p.rollout, undefined);
  t.is(p.create.length, 0);
  t.is(s.rollout?.state, Rollout_State.WAITING);
});

test('a canary that fails past the failure ratio aborts the rollout, naming the task; below it, the canary is replaced', (t) => {
  const s = service(config(), { stepStartedAt: T0 });
  const failed = task(s, 5, { canary: true, state: S.TASK_STATE_FAILED });
  failed.status!.err = 'exit code 3';
  const p = planRollout({ service: s, tasks: [...olds(s), failed], replicas: 4, now: T0 + 1 });
  t.regex(p.abort?.message ?? '', new RegExp(`^gate failed at step 1 \\(20%\\): canary task ${failed.id} \\(web.5\\) ended: exit code 3$`));
  const tolerant = service(config({ replicas: 2, maxFailureRatio: 0.5 }), { stepStartedAt: T0 });
  const q = planRollout({ service: tolerant, tasks: [...olds(tolerant), failed, task(tolerant, 6, { canary: true })], replicas: 4, now: T0 + 1 });
  t.is(q.abort, undefined);
  t.deepEqual(q.create, [5]);
  t.deepEqual(q.rollout?.failedTaskIds, [failed.id]);
  const unhealthy = task(s, 5, { canary: true, health: HealthState.HEALTH_STATE_UNHEALTHY });
  t.regex(planRollout({ service: s, tasks: [...olds(s), unhealthy], replicas: 4, now: T0 + 1 }).abort?.message ?? '', /is: unhealthy$/);
});

test("an HTTP check ratio that can no longer reach the threshold aborts, naming the check and its last error; a good one lets the step pass; too few checks make it wait", (t) => {
  const c = config({ intervalMs: 60_000, checkPath: '/healthz', checkPort: 8080, steps: [20, 100] });
  const holding = (ok: number, total: number) => {
    const s = service(c, { stepStartedAt: T0, nextStepAt: T0 + 60_000 });
    const canary = task(s, 5, { canary: true, check: [ok, total] });
    s.rollout!.baselines = [{ taskId: canary.id, ok: 0, total: 0 }];
    return { s, tasks: [...olds(s), canary] };
  };
  const bad = holding(MIN_CHECKS - 1, MIN_CHECKS);
  const p = planRollout({ service: bad.s, tasks: bad.tasks, replicas: 4, now: T0 + 5_000 });
  t.regex(p.abort?.message ?? '', /^gate failed at step 1 \(20%\): HTTP check GET \/healthz on the canaries succeeded 4 of 5 times in this step \(below 0\.99\); last error: GET \/healthz: HTTP 500 \(task t\d+\)$/);
  const clean = holding(MIN_CHECKS, MIN_CHECKS);
  t.is(planRollout({ service: clean.s, tasks: clean.tasks, replicas: 4, now: T0 + 5_000 }).abort, undefined, 'no failure: the step goes on');
  const good = holding(60, 60);
  t.is(planRollout({ service: good.s, tasks: good.tasks, replicas: 4, now: T0 + 60_000 }).rollout?.state, Rollout_State.PROMOTING);
  const slow = holding(10, 10);
  const w = planRollout({ service: slow.s, tasks: slow.tasks, replicas: 4, now: T0 + 60_000 });
  t.regex(w.rollout?.message ?? '', /^waiting for HTTP check results \(10 so far\)$/);
  t.is(w.wakeAt, T0 + 61_000);
});

test('promoting: once the update of the old tasks completes the canaries go and the rollout completes; a rolled back update ends it aborted', (t) => {
  const s = service(config(), { state: Rollout_State.PROMOTING, weight: 100 });
  const canary = task(s, 5, { canary: true });
  t.is(planRollout({ service: s, tasks: [...olds(s), canary], replicas: 4, now: T0 }).rollout, undefined, 'nothing while the update runs');
  const done = { ...s, updateStatus: { ...s.updateStatus!, state: UpdateStatus_State.COMPLETED } };
  const p = planRollout({ service: done, tasks: [...olds(s), canary], replicas: 4, now: T0 + 5 });
  t.is(p.rollout?.state, Rollout_State.COMPLETED);
  t.deepEqual(p.shutdown.map((x) => x.id), [canary.id]);
  const rolledBack = { ...s, specVersion: 3, updateStatus: { ...s.updateStatus!, state: UpdateStatus_State.ROLLBACK_STARTED, message: 'update rolled back due to …' } };
  const q = planRollout({ service: rolledBack, tasks: [...olds(s), canary], replicas: 4, now: T0 + 5 });
  t.is(q.rollout?.state, Rollout_State.ABORTED);
  t.deepEqual(q.shutdown.map((x) => x.id), [canary.id]);
});

test("canaries of an earlier rollout are not this one's: not counted as failures, not kept", (t) => {
  const s = service(config());
  const earlier = task(s, 5, { canary: true, state: S.TASK_STATE_FAILED, created: T0 - 1 });
  const p = planRollout({ service: s, tasks: [...olds(s), earlier], replicas: 4, now: T0 + 1 });
  t.is(p.abort, undefined);
  t.deepEqual(p.create, [5]);
});

test('the default canary count: the fewest whose share of the tasks is at least the first weight', (t) => {
  t.is(canaryCountFor(4, 20), 1);
  t.is(canaryCountFor(4, 10), 1);
  t.is(canaryCountFor(4, 50), 4);
  t.is(canaryCountFor(9, 25), 3);
  t.is(canaryCountFor(3, 100), 3);
});

test('a canary config is refused naming each problem: weights not increasing or outside 1..100, a global service, a check without a port, bad ratios', (t) => {
  const spec = mkService('s', 'web', { replicas: 4 }).spec!;
  const bad = (c: Partial<CanaryConfig>, s = spec) => t.throws(() => checkCanaryConfig(config(c), s)).message;
  t.regex(bad({ steps: [50, 20] }), /canary\.steps\[1\]: weights must increase \(50 then 20\)/);
  t.regex(bad({ steps: [0, 101] }), /canary\.steps\[0\]: 0 is not a weight in percent \(1\.\.100\).*canary\.steps\[1\]: 101/);
  t.regex(bad({ steps: [] }), /at least one weight/);
  t.regex(bad({ maxFailureRatio: 2 }), /canary\.max_failure_ratio: 2 must be between 0 and 1/);
  t.regex(bad({ checkPath: '/healthz' }), /canary\.check_port: the service publishes no port to check/);
  t.regex(bad({ checkPath: 'healthz', checkPort: 80 }), /canary\.check_path: "healthz" must start with \//);
  t.regex(bad({ intervalMs: 500 }), /shorter than a second/);
  const global = { ...spec, mode: { $case: 'global' as const, global: {} } };
  t.regex(bad({}, global), /canary rollouts are for replicated services/);
  const ok = checkCanaryConfig(config({ checkSuccess: 0, checkPath: '/h', checkPort: 8080 }), spec);
  t.is(ok.checkSuccess, 0.99);
  t.is(ok.checkPort, 8080);
});
