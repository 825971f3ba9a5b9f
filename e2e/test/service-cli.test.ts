// swarmctl service commands against the real control API on a unix socket, with the real
// orchestrators and scheduler on a store (no Raft) and a stand-in agent that reports every task
// assigned to its node as RUNNING: the `service create` data path of DESIGN.md minus the runtime.
import test, { type ExecutionContext } from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlService, NodeAvailability, NodeRole, NodeState, TaskState } from '@swarmd/proto';
import { swarmctl } from '@swarmd/cli/testing';
import { cloneObject, createControlService, createStore, makeObject, onKind, serviceControllers, type MemoryStore } from '@swarmd/manager';
import { systemClock } from '@swarmd/common';

async function setup(t: ExecutionContext): Promise<{ store: MemoryStore; host: string[] }> {
  const store = createStore();
  await store.update((tx) => {
    tx.create('cluster', makeObject('cluster', { id: 'c1', spec: { annotations: { name: 'default', labels: {} }, raft: undefined, dispatcher: undefined, caConfig: undefined, autolockManagers: false, orchestration: undefined } }));
    tx.create(
      'node',
      makeObject('node', {
        id: 'n1',
        role: NodeRole.NODE_ROLE_WORKER,
        spec: { annotations: { name: '', labels: {} }, desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
        description: { hostname: 'host1', platform: { os: 'linux', architecture: 'x86_64' }, resources: { nanoCpus: 2e9, memoryBytes: 2 ** 30 }, engineVersion: '', volumes: [], engineLabels: {} },
        status: { state: NodeState.NODE_STATE_READY, message: '', addr: '' },
      }),
    );
  });
  const ac = new AbortController();
  const runs = serviceControllers().map((c) => c.run({ store, clock: systemClock }, ac.signal).catch(() => undefined));
  // The stand-in agent: a task assigned to n1 starts running (an image named bad:* fails at once),
  // and one told to stop stops.
  const h = store.viewAndWatch(() => undefined, onKind('task'));
  const agent = (async () => {
    for await (const e of h.events) {
      if (e.type === 'commit' || e.kind !== 'task' || e.type === 'delete') continue;
      const task = e.object;
      const state = task.status?.state ?? TaskState.TASK_STATE_NEW;
      const stop = task.desiredState > TaskState.TASK_STATE_RUNNING && state >= TaskState.TASK_STATE_ASSIGNED && state <= TaskState.TASK_STATE_RUNNING;
      if (!stop && (state !== TaskState.TASK_STATE_ASSIGNED || task.desiredState !== TaskState.TASK_STATE_RUNNING)) continue;
      const fails = task.spec?.container?.image.startsWith('bad:');
      await store
        .update((tx) => {
          const cur = tx.get('task', task.id);
          if (cur?.status?.state !== state) return;
          const u = cloneObject('task', cur);
          u.status = stop
            ? { ...u.status!, state: TaskState.TASK_STATE_SHUTDOWN, timestamp: Date.now(), message: 'shutdown' }
            : fails
              ? { ...u.status!, state: TaskState.TASK_STATE_FAILED, timestamp: Date.now(), message: 'failed', err: 'task: non-zero exit (1)' }
              : { ...u.status!, state: TaskState.TASK_STATE_RUNNING, timestamp: Date.now(), message: 'started' };
          tx.update('task', u);
        })
        .catch(() => undefined);
    }
  })();
  const control = createControlService({ store, isLeader: () => true, leaderAddr: () => undefined });
  const dir = await mkdtemp(join(tmpdir(), 'svc-cli-'));
  const sock = join(dir, 'control.sock');
  const server = new grpc.Server();
  server.addService(ControlService, control.local);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  t.teardown(async () => {
    server.forceShutdown();
    control.close();
    ac.abort();
    h.close();
    await Promise.all([...runs, agent]);
    await rm(dir, { recursive: true, force: true });
  });
  return { store, host: ['--host', `unix://${sock}`] };
}

test('service create converges with progress; ls/ps/scale/rm; an unschedulable service fails with the scheduler reason', async (t) => {
  const { store, host } = await setup(t);
  const c = await swarmctl([...host, 'service', 'create', '--name', 'web', '--replicas', '3', '--no-resolve-image', '--timeout', '30s', 'web:1']);
  t.is(c.code, 0, c.stderr);
  t.regex(c.stderr, /1\/3: (assigned|running)/);
  t.regex(c.stderr, /3\/3: running/);
  t.regex(c.stderr, /verify: Service converged\n$/);
  const ls = await swarmctl([...host, 'service', 'ls']);
  t.regex(ls.stdout, /web\s+replicated\s+3\/3\s+web:1/);
  const ps = await swarmctl([...host, 'service', 'ps', 'web']);
  t.is(ps.stdout.trim().split('\n').length, 4);
  t.regex(ps.stdout, /web\.3\s+web:1\s+host1\s+Running\s+Running/);
  const big = await swarmctl([...host, 'service', 'create', '--name', 'big', '--reserve-memory', '8G', '--no-resolve-image', '--timeout', '2s', 'big:1']);
  t.is(big.code, 1);
  t.regex(big.stderr, /service big did not converge within 2s: pending: no suitable node \(insufficient resources on 1 node\)/);
  const bigPs = await swarmctl([...host, 'service', 'ps', 'big']);
  t.regex(bigPs.stdout, /Pending .* ago\s+"no suitable node/);
  const sc = await swarmctl([...host, 'service', 'scale', 'web=1']);
  t.is(sc.code, 0, sc.stderr);
  t.regex(sc.stderr, /verify: Service converged/);
  t.is(store.view((tx) => tx.find('task')).filter((x) => x.desiredState === TaskState.TASK_STATE_RUNNING && x.serviceId !== store.view((tx2) => tx2.find('service', { name: 'big' })[0]?.id)).length, 1);
  const rmr = await swarmctl([...host, 'service', 'rm', 'web', 'big']);
  t.is(rmr.code, 0, rmr.stderr);
  t.deepEqual(
    store.view((tx) => tx.find('service')),
    [],
  );
});

test('service update replaces the tasks one at a time and waits for the update to complete; a failing image pauses it, naming the task', async (t) => {
  const { store, host } = await setup(t);
  const c = await swarmctl([...host, 'service', 'create', '--name', 'web', '--replicas', '3', '--no-resolve-image', '--update-monitor', '300ms', 'web:1']);
  t.is(c.code, 0, c.stderr);
  const first = store.view((tx) => tx.find('task')).map((x) => x.id);
  const u = await swarmctl([...host, 'service', 'update', '--env-add', 'A=1', '--timeout', '20s', 'web']);
  t.is(u.code, 0, u.stderr);
  // What must hold whatever the machine skips: the counts only grow, none past 3, and the
  // completed line comes last (a fast update prints fewer progress lines).
  const counts = [...u.stderr.matchAll(/update: (\d+) of 3 tasks updated/g)].map((m) => Number(m[1]));
  t.deepEqual(counts, [...counts].sort((a, b) => a - b));
  t.true(counts.every((c) => c <= 3));
  t.regex(u.stderr, /verify: Service converged \(update completed\)\n$/);
  const tasks = store.view((tx) => tx.find('task'));
  const live = tasks.filter((x) => x.desiredState === TaskState.TASK_STATE_RUNNING);
  t.is(live.length, 3);
  t.true(live.every((x) => x.spec?.container?.env.includes('A=1') && !first.includes(x.id) && x.status?.state === TaskState.TASK_STATE_RUNNING));
  t.true(tasks.filter((x) => first.includes(x.id)).every((x) => x.status?.state === TaskState.TASK_STATE_SHUTDOWN));
  // One at a time: each new task was created once the one before it ran.
  const created = live.map((x) => x.meta!.createdAt).sort((a, b) => a - b);
  const ranAt = (slot: number) => live.find((x) => x.slot === slot)!.status!.timestamp;
  t.true(created[1] >= ranAt(1) && created[2] >= ranAt(2));

  const bad = await swarmctl([...host, 'service', 'update', '--image', 'bad:1', '--no-resolve-image', '--timeout', '20s', 'web']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /swarmctl: service web: update paused due to failure or early termination of task \w+ \(web\.1: failed, task: non-zero exit \(1\)\)/);
  const ins = await swarmctl([...host, 'service', 'inspect', 'web']);
  t.regex(ins.stdout, /Update status:\s+paused\n/);
  const images = store.view((tx) => tx.find('task')).filter((x) => x.desiredState === TaskState.TASK_STATE_RUNNING).map((x) => [x.slot, x.spec?.container?.image]);
  t.deepEqual(images.filter(([slot]) => slot !== 1).map(([, image]) => image), ['web:1', 'web:1'], 'slots 2 and 3 were not touched');
  const d = await swarmctl([...host, 'service', 'update', '-d', '--no-resolve-image', '--image', 'web:2', 'web']);
  t.is(d.code, 0, d.stderr);
  t.is(d.stderr, '');
});

test('stack deploy --with-registry-auth stores the docker config credentials; a redeploy without the flag keeps them', async (t) => {
  const { store, host } = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'stack-auth-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'docker'));
  await writeFile(join(dir, 'docker', 'config.json'), JSON.stringify({ auths: { 'reg.example:5000': { auth: Buffer.from('deploy:s3cret').toString('base64') } } }));
  const file = join(dir, 'compose.yml');
  await writeFile(file, 'services:\n  web:\n    image: reg.example:5000/web:1\n');
  const env = { ...process.env, DOCKER_CONFIG: join(dir, 'docker') };
  const pullAuth = () => store.view((tx) => tx.find('service', { name: 'app_web' })[0]?.spec?.task?.container?.pullAuth);
  const first = await swarmctl([...host, 'stack', 'deploy', '-c', file, '--resolve-image', 'never', '--with-registry-auth', 'app'], env);
  t.is(first.code, 0, first.stderr);
  t.like(pullAuth(), { username: 'deploy', password: 's3cret' });
  await writeFile(file, 'services:\n  web:\n    image: reg.example:5000/web:2\n');
  const second = await swarmctl([...host, 'stack', 'deploy', '-c', file, '--resolve-image', 'never', 'app'], env);
  t.is(second.code, 0, second.stderr);
  t.regex(second.stdout, /Updating service app_web .*task\.container\.image/);
  t.is(store.view((tx) => tx.find('service', { name: 'app_web' })[0]?.spec?.task?.container?.image), 'reg.example:5000/web:2');
  t.like(pullAuth(), { username: 'deploy', password: 's3cret' }, 'the stored credentials stay');
});
