import { TaskState } from '@swarmd/proto';
import { requires } from '@swarmd/testkit';
import { ContainerExecutor, LABEL_TASK } from '../src/executor/container-executor.js';
import { startTaskSupervisor } from '../src/task-runner/task-supervisor.js';
import { FakeAssignments, makeTask, newRuntimeEnv, registryWithBusybox, Reports } from './helpers/executor-env.js';

const S = TaskState;
const need = requires('root', 'runc', 'conmon', 'registry', 'busybox');

need('tasks run to COMPLETE, FAILED with the exit code, REJECTED for a missing image', async (t) => {
  const env = await newRuntimeEnv(t);
  const { ref, reg } = await registryWithBusybox(t, env.images);
  const executor = new ContainerExecutor({ images: env.images, containers: env.containers, nodeId: 'node-1' });
  const reports = new Reports();
  const tasks = new FakeAssignments([
    makeTask('ok1', { image: ref(), command: ['sh', '-c', 'echo hello; sleep 0.3'] }, { resources: { limits: { nanoCpus: 5e8, memoryBytes: 64 << 20 }, reservations: undefined, pidsLimit: 50 } }),
    makeTask('fail1', { image: ref(), command: ['sh', '-c', 'exit 3'] }),
    makeTask('bad1', { image: `${reg.host}/test/nope:1` }),
    makeTask('bad2', { image: 'Not A Reference' }),
  ]);
  const sup = await startTaskSupervisor({ executor, assignments: tasks, report: reports.report, retryDelayMs: 50 });
  t.teardown(() => sup.stop());
  tasks.confirm();

  const done = await reports.state('ok1', S.TASK_STATE_COMPLETE);
  t.deepEqual(reports.states('ok1'), ['PREPARING', 'READY', 'STARTING', 'RUNNING', 'COMPLETE']);
  t.is(done.state, S.TASK_STATE_COMPLETE);
  t.is(done.container?.exitCode, 0);
  t.is(done.container?.containerId, 'ok1');
  const info = await env.containers.inspect('ok1');
  t.is(info.spec.labels?.[LABEL_TASK], 'ok1');
  t.is(info.spec.resources?.memoryBytes, 64 << 20);
  t.is(info.spec.resources?.cpuQuotaUs, 50_000);

  const failed = await reports.state('fail1', S.TASK_STATE_COMPLETE);
  t.is(TaskState[failed.state], 'TASK_STATE_FAILED');
  t.is(failed.err, 'task: non-zero exit (3)');
  t.is(failed.container?.exitCode, 3);

  const rejected = await reports.state('bad1', S.TASK_STATE_COMPLETE);
  t.is(TaskState[rejected.state], 'TASK_STATE_REJECTED');
  t.regex(rejected.err, /test\/nope:1/);
  const rejected2 = await reports.state('bad2', S.TASK_STATE_COMPLETE);
  t.is(TaskState[rejected2.state], 'TASK_STATE_REJECTED');
  t.regex(rejected2.err, /Not A Reference/);

  // Tasks leaving the assignments are removed (containers and all).
  tasks.complete([]);
  await sup.idle();
  t.deepEqual(await env.containers.list(), []);
});

need('health checks: healthy before RUNNING, unhealthy → FAILED; the image HEALTHCHECK is the default', async (t) => {
  const env = await newRuntimeEnv(t);
  const { ref } = await registryWithBusybox(t, env.images, {
    hc: { Healthcheck: { Test: ['CMD-SHELL', 'test -f /tmp/ready'], Interval: 100e6, Timeout: 2000e6, Retries: 2, StartPeriod: 20_000e6 } },
  });
  const executor = new ContainerExecutor({ images: env.images, containers: env.containers, nodeId: 'node-1' });
  const reports = new Reports();
  const hc = (test: string[]) => ({ test, intervalMs: 100, timeoutMs: 2000, retries: 2, startPeriodMs: 0 });
  const tasks = new FakeAssignments([
    // From the image: healthy once /tmp/ready exists, then unhealthy when it goes away.
    makeTask('img', { image: ref('hc'), command: ['sh', '-c', 'sleep 0.5; touch /tmp/ready; sleep 1000'], stopGracePeriodMs: 300 }),
    makeTask('never', { image: ref(), command: ['sleep', '1000'], stopGracePeriodMs: 300, healthcheck: hc(['CMD', 'false']) }),
    makeTask('off', { image: ref('hc'), command: ['sleep', '1000'], stopGracePeriodMs: 300, healthcheck: hc(['NONE']) }),
  ]);
  const sup = await startTaskSupervisor({ executor, assignments: tasks, report: reports.report, retryDelayMs: 50 });
  t.teardown(() => sup.stop());
  tasks.confirm();

  const running = await reports.state('img', S.TASK_STATE_RUNNING);
  t.is(TaskState[running.state], 'TASK_STATE_RUNNING');
  t.is(running.container?.health, 2 /* HEALTHY */);
  t.true((await env.containers.exec('img', ['test', '-f', '/tmp/ready'])).exitCode === 0, 'RUNNING only once the check passed');
  await env.containers.exec('img', ['rm', '/tmp/ready']);
  const unhealthy = await reports.state('img', S.TASK_STATE_COMPLETE);
  t.is(TaskState[unhealthy.state], 'TASK_STATE_FAILED');
  t.regex(unhealthy.err, /^task: unhealthy container/);

  const never = await reports.state('never', S.TASK_STATE_COMPLETE);
  t.is(TaskState[never.state], 'TASK_STATE_FAILED');
  t.regex(never.err, /unhealthy container/);
  t.false(reports.states('never').includes('RUNNING'));

  const off = await reports.state('off', S.TASK_STATE_RUNNING);
  t.is(off.container?.health, 0 /* NONE */);

  // The failed tasks' containers are still running (FAILED by health): shutdown stops them.
  for (const id of ['img', 'never', 'off']) tasks.update({ ...tasks.tasks().find((x) => x.id === id)!, desiredState: S.TASK_STATE_SHUTDOWN });
  await reports.state('off', S.TASK_STATE_SHUTDOWN);
  tasks.complete([]);
  await sup.idle();
  t.deepEqual(await env.containers.list(), []);
});

need('shutdown with the grace period; re-attach after an agent restart; orphans removed', async (t) => {
  const env = await newRuntimeEnv(t);
  const { ref } = await registryWithBusybox(t, env.images);
  const executor = new ContainerExecutor({ images: env.images, containers: env.containers, nodeId: 'node-1' });
  const reports = new Reports();
  const stubborn = makeTask('stubborn', { image: ref(), command: ['sh', '-c', "trap '' TERM; while true; do sleep 0.1; done"], stopGracePeriodMs: 300 });
  const polite = makeTask('polite', { image: ref(), command: ['sleep', '1000'] });
  const orphan = makeTask('orphan', { image: ref(), command: ['sleep', '1000'] });
  const tasks = new FakeAssignments([stubborn, polite, orphan]);
  const sup = await startTaskSupervisor({ executor, assignments: tasks, report: reports.report });
  tasks.confirm();
  await Promise.all(['stubborn', 'polite', 'orphan'].map((id) => reports.state(id, S.TASK_STATE_RUNNING)));
  const pidBefore = (await env.containers.inspect('polite')).pid;
  await sup.stop(); // the agent goes away; containers keep running
  t.is((await env.containers.inspect('polite')).status, 'running');

  // A new agent (new services on the same root) with the persisted set, minus the orphan.
  const again = await env.reopen();
  const executor2 = new ContainerExecutor({ images: again.images, containers: again.containers, nodeId: 'node-1' });
  const reports2 = new Reports();
  const withStatus = (id: string) => ({ ...tasks.tasks().find((x) => x.id === id)!, status: reports.last(id) });
  // `late` was assigned but had no container yet when the agent went away: the managers may have
  // given its slot to another node since, so it waits for their complete set.
  const late = makeTask('late', { image: ref(), command: ['sleep', '1000'], stopGracePeriodMs: 300 });
  const tasks2 = new FakeAssignments([withStatus('stubborn'), withStatus('polite'), late]);
  const sup2 = await startTaskSupervisor({ executor: executor2, assignments: tasks2, report: reports2.report });
  t.teardown(() => sup2.stop());
  await sup2.idle();
  t.is(sup2.status('polite')?.state, S.TASK_STATE_RUNNING);
  t.is((await again.containers.inspect('polite')).pid, pidBefore, 'the same container, not a new one');
  t.deepEqual((await again.containers.list()).map((c) => c.id).sort(), ['polite', 'stubborn'], 'the orphan was removed; late not started');
  t.deepEqual(reports2.states('late'), [], 'late untouched before the managers confirm it');
  tasks2.confirm();
  t.is((await reports2.state('late', S.TASK_STATE_RUNNING)).state, S.TASK_STATE_RUNNING, 'late runs once confirmed');
  tasks2.remove('late');
  await sup2.idle();

  // The re-attached runner sees the exit of the container it did not start.
  await again.containers.kill('polite', 'SIGKILL');
  const killed = await reports2.state('polite', S.TASK_STATE_COMPLETE);
  t.is(killed.err, 'task: non-zero exit (137)');

  // Shutdown: TERM ignored → SIGKILL after the 300 ms grace.
  tasks2.update({ ...withStatus('stubborn'), status: sup2.status('stubborn'), desiredState: S.TASK_STATE_SHUTDOWN });
  const down = await reports2.state('stubborn', S.TASK_STATE_SHUTDOWN);
  t.is(TaskState[down.state], 'TASK_STATE_SHUTDOWN');
  t.is(down.container?.exitCode, 137);
  tasks2.complete([]);
  await sup2.idle();
  t.deepEqual(await again.containers.list(), []);
});
