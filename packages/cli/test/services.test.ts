import test from 'ava';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Mount_Type, PortConfig_Protocol, PortConfig_PublishMode, RestartPolicy_Condition, Service, Task, TaskState, UpdateConfig_FailureAction, UpdateConfig_Order, type ServiceSpec } from '@swarmd/proto';
import { applyUpdateFlags, defaultServiceName, parseCpus, parseMemory, parseMount, parsePort, registryAuthOf, specOfCreateFlags, type CreateFlags } from '../src/service-spec.js';
import { logPrefix, servicesTable, tasksTable } from '../src/service-format.js';
import { convergence } from '../src/progress.js';
import { UsageError } from '../src/errors.js';
import { startFakeServices, type FakeServices } from './helpers/fake-services.js';
import { swarmctl } from '../src/testing.js';

const bad = (m: string) => new UsageError(m, 'service create');

test('sizes, CPUs, ports and mounts parse as Docker writes them', (t) => {
  t.is(parseMemory('64M'), 64 * 2 ** 20);
  t.is(parseMemory('1G'), 2 ** 30);
  t.is(parseMemory('1.5g'), 1.5 * 2 ** 30);
  t.is(parseMemory('512k'), 512 * 1024);
  t.is(parseMemory('100'), 100);
  t.is(parseMemory('64MB'), 64 * 2 ** 20);
  t.is(parseMemory('lots'), undefined);
  t.is(parseCpus('0.5'), 5e8);
  t.is(parseCpus('two'), undefined);
  t.deepEqual(parsePort('8080:80', bad), { name: '', protocol: PortConfig_Protocol.TCP, targetPort: 80, publishedPort: 8080, publishMode: PortConfig_PublishMode.INGRESS });
  t.like(parsePort('53:53/udp', bad), { protocol: PortConfig_Protocol.UDP, targetPort: 53, publishedPort: 53 });
  t.like(parsePort('published=8080,target=80,mode=host,protocol=tcp', bad), { publishMode: PortConfig_PublishMode.HOST, targetPort: 80, publishedPort: 8080 });
  t.like(parsePort('80', bad), { targetPort: 80, publishedPort: 0 });
  t.like(parseMount('type=bind,source=/srv,target=/data,readonly', bad), { type: Mount_Type.BIND, source: '/srv', target: '/data', readOnly: true });
  t.like(parseMount('src=cache,dst=/cache', bad), { type: Mount_Type.VOLUME, source: 'cache', target: '/cache', readOnly: false });
  t.like(parseMount('type=tmpfs,target=/tmp,tmpfs-size=64M', bad), { type: Mount_Type.TMPFS, tmpfsSizeBytes: 64 * 2 ** 20 });
});

const refused: [string, Partial<CreateFlags>, RegExp][] = [
  ['bad memory', { 'limit-memory': '12 apples' }, /--limit-memory 12 apples: expected a size/],
  ['bad cpus', { 'reserve-cpu': 'x' }, /--reserve-cpu x: expected a number of CPUs/],
  ['bad duration', { 'restart-delay': '5 minutes' }, /--restart-delay 5 minutes: expected a duration/],
  ['bad health interval', { 'health-interval': 'soon' }, /--health-interval soon/],
  ['bad restart condition', { 'restart-condition': 'always' }, /--restart-condition always: expected none, on-failure or any/],
  ['bad mode', { mode: 'both' }, /--mode both: expected replicated or global/],
  ['replicas with global', { mode: 'global', replicas: 2 }, /--replicas can only be used with replicated mode/],
  ['negative replicas', { replicas: -1 }, /--replicas -1/],
  ['bad port', { publish: ['80:99999'] }, /--publish 80:99999: target "99999" is not a port/],
  ['bad port mode', { publish: ['published=1,target=2,mode=x'] }, /--publish .*: mode "x" is host or ingress/],
  ['mount without target', { mount: ['type=volume,source=x'] }, /--mount type=volume,source=x: target= is required/],
  ['bind without source', { mount: ['type=bind,target=/x'] }, /a bind mount needs source=/],
  ['relative bind source', { mount: ['type=bind,source=rel,target=/x'] }, /a bind mount's source "rel" must be an absolute path/],
  ['relative target', { mount: ['source=v,target=data'] }, /target "data" must be an absolute path/],
  ['bad mount type', { mount: ['type=nfs,target=/x'] }, /type "nfs" is bind, volume or tmpfs/],
  ['bad constraint', { constraint: ['node.labels.zone=a'] }, /--constraint node.labels.zone=a: expected KEY==VALUE/],
  ['bad placement pref', { 'placement-pref': ['node.labels.zone'] }, /--placement-pref node.labels.zone: expected spread=/],
  ['healthcheck both ways', { 'no-healthcheck': true, 'health-cmd': 'true' }, /--no-healthcheck conflicts/],
  ['relative workdir', { workdir: 'app' }, /--workdir app: must be an absolute path/],
  ['bad env', { env: ['=x'] }, /--env =x: expected KEY=VALUE/],
  ['bad name', { name: 'web site' }, /--name web site/],
];
for (const [title, flags, re] of refused) {
  test(`create flags refused: ${title}`, (t) => {
    const e = t.throws(() => specOfCreateFlags(flags as CreateFlags, 'web:1', []), { instanceOf: UsageError });
    t.regex(e?.message ?? '', re);
  });
}

test('create flags make the spec Docker would', (t) => {
  const s = specOfCreateFlags(
    {
      name: 'web',
      replicas: 3,
      env: ['A=1', 'B=2'],
      workdir: '/app',
      user: 'nobody',
      hostname: 'h',
      label: ['tier=front'],
      'container-label': ['c=1'],
      mount: ['type=tmpfs,target=/tmp'],
      constraint: ['node.labels.zone==a'],
      'placement-pref': ['spread=node.labels.zone'],
      'reserve-cpu': '0.25',
      'reserve-memory': '32M',
      'limit-cpu': '1',
      'limit-memory': '64M',
      'limit-pids': 100,
      'restart-condition': 'on-failure',
      'restart-delay': '10s',
      'restart-max-attempts': 3,
      'restart-window': '1m30s',
      'health-cmd': 'wget -q -O- localhost',
      'health-interval': '5s',
      'health-retries': 2,
      'stop-signal': 'sigint',
      'stop-grace-period': '20s',
      publish: ['8080:80'],
      network: ['host'],
      entrypoint: 'sh -c',
    },
    'nginx:1',
    ['echo hi'],
  );
  const c = s.task!.container!;
  t.is(s.annotations?.name, 'web');
  t.deepEqual(s.mode, { $case: 'replicated', replicated: { replicas: 3 } });
  t.deepEqual(c.command, ['sh', '-c']);
  t.deepEqual(c.args, ['echo hi']);
  t.deepEqual(c.env, ['A=1', 'B=2']);
  t.is(c.dir, '/app');
  t.deepEqual(c.healthcheck, { test: ['CMD-SHELL', 'wget -q -O- localhost'], intervalMs: 5000, timeoutMs: 0, retries: 2, startPeriodMs: 0 });
  t.is(c.stopSignal, 'SIGINT');
  t.is(c.stopGracePeriodMs, 20_000);
  t.deepEqual(s.task!.resources, { limits: { nanoCpus: 1e9, memoryBytes: 64 * 2 ** 20 }, reservations: { nanoCpus: 2.5e8, memoryBytes: 32 * 2 ** 20 }, pidsLimit: 100 });
  t.deepEqual(s.task!.restart, { condition: RestartPolicy_Condition.ON_FAILURE, delayMs: 10_000, maxAttempts: 3, windowMs: 90_000 });
  t.deepEqual(s.task!.placement?.constraints, ['node.labels.zone==a']);
  t.deepEqual(s.task!.placement?.preferences, [{ spreadDescriptor: 'node.labels.zone' }]);
  t.deepEqual(s.task!.networks, [{ target: 'host', aliases: [] }]);
  t.is(s.endpoint?.ports[0]?.publishedPort, 8080);
  t.deepEqual(specOfCreateFlags({ 'no-healthcheck': true }, 'x', []).task!.container!.healthcheck?.test, ['NONE']);
});

test('update flags change only what they name; nothing to change is refused', (t) => {
  const base = specOfCreateFlags({ name: 'web', env: ['A=1', 'B=2'], label: ['x=1'], constraint: ['node.role==worker'] }, 'web:1@sha256:' + 'a'.repeat(64), []);
  const u = applyUpdateFlags(base, { image: 'web:2', 'env-add': ['A=9'], 'env-rm': ['B'], 'label-add': ['y=2'], 'label-rm': ['x'], 'constraint-rm': ['node.role==worker'], 'constraint-add': ['node.labels.a==b'], replicas: 4 });
  t.is(u.task!.container!.image, 'web:2');
  t.deepEqual(u.task!.container!.env, ['A=9']);
  t.deepEqual(u.annotations!.labels, { y: '2' });
  t.deepEqual(u.task!.placement!.constraints, ['node.labels.a==b']);
  t.deepEqual(u.mode, { $case: 'replicated', replicated: { replicas: 4 } });
  t.is(applyUpdateFlags(base, { force: true }).task!.forceUpdate, 1);
  t.throws(() => applyUpdateFlags(base, {}), { message: /nothing to change/ });
  t.throws(() => applyUpdateFlags(base, { 'limit-memory': 'big' }), { message: /--limit-memory big/ });
});

test('canary flags alone change nothing: the refusal says a canary needs a change to roll out', (t) => {
  const base = specOfCreateFlags({ name: 'web' }, 'web:1@sha256:' + 'a'.repeat(64), []);
  t.throws(() => applyUpdateFlags(base, { 'canary-weight': 25 }), { message: /nothing to change: a canary rollout needs a change to the service to roll out/ });
  t.notThrows(() => applyUpdateFlags(base, { 'canary-weight': 25, image: 'web:2' }));
});

test('--update-* flags set the update config (Docker defaults for the rest); a bad value names its flag', (t) => {
  const c = specOfCreateFlags({ name: 'web', 'update-parallelism': 2, 'update-delay': '10s' }, 'web:1', []);
  t.deepEqual(c.update, { parallelism: 2, delayMs: 10_000, failureAction: UpdateConfig_FailureAction.PAUSE, monitorMs: 5_000, maxFailureRatio: 0, order: UpdateConfig_Order.STOP_FIRST });
  t.is(specOfCreateFlags({ name: 'web' }, 'web:1', []).update, undefined, 'none given: the manager fills the defaults');
  const u = applyUpdateFlags(c, { 'update-order': 'start-first', 'update-failure-action': 'continue', 'update-monitor': '30s', 'update-max-failure-ratio': '0.25', 'update-parallelism': 0 });
  t.deepEqual(u.update, { parallelism: 0, delayMs: 10_000, failureAction: UpdateConfig_FailureAction.CONTINUE, monitorMs: 30_000, maxFailureRatio: 0.25, order: UpdateConfig_Order.START_FIRST });
  t.is(applyUpdateFlags(c, { 'update-failure-action': 'rollback' }).update!.failureAction, UpdateConfig_FailureAction.ROLLBACK);
  for (const [f, m] of [
    [{ 'update-parallelism': -1 }, /^--update-parallelism -1: expected a whole number ≥ 0/],
    [{ 'update-parallelism': 1.5 }, /^--update-parallelism 1.5:/],
    [{ 'update-delay': 'soon' }, /^--update-delay soon: expected a duration/],
    [{ 'update-monitor': '5 parsecs' }, /^--update-monitor 5 parsecs: expected a duration/],
    [{ 'update-order': 'random' }, /^--update-order random: expected stop-first or start-first$/],
    [{ 'update-failure-action': 'panic' }, /^--update-failure-action panic: expected pause, continue or rollback$/],
    [{ 'update-max-failure-ratio': '2' }, /^--update-max-failure-ratio 2: expected a number from 0 to 1/],
    [{ 'update-max-failure-ratio': 'half' }, /^--update-max-failure-ratio half:/],
  ] as const) {
    t.throws(() => applyUpdateFlags(c, f), { instanceOf: UsageError, message: m });
    t.throws(() => specOfCreateFlags({ name: 'web', ...f }, 'web:1', []), { instanceOf: UsageError, message: m });
  }
});

test('a service without --name gets one from its image', (t) => {
  t.is(defaultServiceName('10.0.0.1:5000/team/nginx:1.25@sha256:' + 'a'.repeat(64), () => 'abcde'), 'nginx-abcde');
  t.is(defaultServiceName('busybox', () => '00000'), 'busybox-00000');
});

test('--with-registry-auth reads the docker config entry of the image registry', (t) => {
  const cfg = { auths: { '10.0.0.1:5000': { auth: Buffer.from('bob:pw').toString('base64') }, 'https://index.docker.io/v1/': { username: 'hub', password: 'x' } } };
  t.deepEqual(registryAuthOf(cfg, '10.0.0.1:5000/app:1'), { username: 'bob', password: 'pw', identityToken: '' });
  t.deepEqual(registryAuthOf(cfg, 'library/busybox'), { username: 'hub', password: 'x', identityToken: '' });
  t.is(registryAuthOf(cfg, 'other.io/app'), undefined);
});

function task(id: string, slot: number, state: TaskState, o: Partial<Task> = {}): Task {
  return Task.fromPartial({
    id,
    meta: { version: 1, createdAt: 1000, updatedAt: 1000 },
    spec: { container: { image: `web:1@sha256:${'b'.repeat(64)}` } },
    serviceId: 's1',
    slot,
    nodeId: 'n1',
    annotations: { name: `web.${slot}` },
    serviceAnnotations: { name: 'web' },
    status: { timestamp: 1000, state },
    desiredState: TaskState.TASK_STATE_RUNNING,
    specVersion: 1,
    ...o,
  });
}

test('tables: service ls counts running/desired; service ps shows the scheduler reason; logs prefix', (t) => {
  const spec = specOfCreateFlags({ name: 'web', replicas: 3, publish: ['8080:80'] }, `web:1@sha256:${'b'.repeat(64)}`, []) satisfies ServiceSpec;
  const svc = Service.fromPartial({ id: 's1' + 'x'.repeat(23), spec, specVersion: 1 });
  const tasks = [task('t1', 1, TaskState.TASK_STATE_RUNNING), task('t2', 2, TaskState.TASK_STATE_RUNNING), task('t3', 3, TaskState.TASK_STATE_PENDING, { nodeId: '' })];
  tasks[2].status!.err = 'no suitable node (scheduling constraints not satisfied on 2 nodes)';
  for (const x of tasks) x.serviceId = svc.id;
  const ls = servicesTable([svc], tasks).split('\n');
  t.regex(ls[0], /^ID\s+NAME\s+MODE\s+REPLICAS\s+IMAGE\s+PORTS$/);
  t.regex(ls[1], /^s1x{10}\s+web\s+replicated\s+2\/3\s+web:1\s+\*:8080->80\/tcp$/);
  const ps = tasksTable(tasks, [], { now: 31_000, noTrunc: true }).split('\n');
  t.regex(ps[0], /^ID\s+NAME\s+IMAGE\s+NODE\s+DESIRED STATE\s+CURRENT STATE\s+ERROR$/);
  t.regex(ps[1], /^t1\s+web\.1\s+web:1@sha256:b+\s+n1\s+Running\s+Running 30 seconds ago$/);
  t.regex(ps[3], /web\.3 .*Pending 30 seconds ago\s+"no suitable node \(scheduling constraints not satisfied on 2 nodes\)"$/);
  t.is(logPrefix({ serviceId: 's1', taskId: 'abcdefghijklmnopqrstuvwxy', nodeId: 'n1', timestamp: 0, stream: 'stdout', data: Buffer.alloc(0) }, tasks[0], []), 'web.1.abcdefghijkl@n1');
  const c = convergence(svc, tasks);
  t.false(c.converged);
  t.deepEqual(c.reasons, ['pending: no suitable node (scheduling constraints not satisfied on 2 nodes)']);
  t.true(convergence(svc, tasks.slice(0, 2).concat(task('t4', 3, TaskState.TASK_STATE_RUNNING, { serviceId: svc.id }))).converged);
});

let fs: FakeServices;
test.beforeEach(async () => {
  fs = await startFakeServices();
});
test.afterEach.always(async () => fs.stop());

test.serial('service create --detach / ls / ps / scale / rm against a Control server', async (t) => {
  const h = ['--host', fs.host];
  const c = await swarmctl([...h, 'service', 'create', '-d', '--name', 'web', '--replicas', '2', '--no-resolve-image', '-e', 'A=1', 'web:1', 'sleep', '100']);
  t.is(c.code, 0, c.stderr);
  t.regex(c.stdout, /^svc\d+\n$/);
  const sent = fs.calls.find((x) => x.method === 'createService')!.request as { spec: ServiceSpec; noResolveImage: boolean };
  t.true(sent.noResolveImage);
  t.deepEqual(sent.spec.task?.container?.args, ['sleep', '100']);
  t.deepEqual(sent.spec.task?.container?.env, ['A=1']);
  const ls = await swarmctl([...h, 'service', 'ls']);
  t.is(ls.code, 0, ls.stderr);
  t.regex(ls.stdout, /web\s+replicated\s+2\/2\s+web:1/);
  const ps = await swarmctl([...h, 'service', 'ps', 'web', '--filter', 'desired-state=running']);
  t.is(ps.code, 0, ps.stderr);
  t.regex(ps.stdout, /web\.1\s+web:1\s+h2\s+Running\s+Running/);
  t.regex(ps.stdout, /web\.2\s+web:1\s+h1/);
  const j = await swarmctl([...h, 'service', 'ps', 'web', '--format', 'json']);
  t.deepEqual((JSON.parse(j.stdout) as { desiredState: string }[]).map((x) => x.desiredState), ['TASK_STATE_RUNNING', 'TASK_STATE_RUNNING']);
  const sc = await swarmctl([...h, 'service', 'scale', 'web=3']);
  t.is(sc.code, 0, sc.stderr);
  t.regex(sc.stdout, /web scaled to 3/);
  t.regex(sc.stderr, /3\/3: running/);
  t.regex(sc.stderr, /verify: Service converged/);
  const tl = await swarmctl([...h, 'task', 'ls', '--filter', 'service=web', '-q']);
  t.is(tl.stdout.trim().split('\n').length, 3);
  const rm = await swarmctl([...h, 'service', 'rm', 'web']);
  t.is(rm.code, 0, rm.stderr);
  t.is(rm.stdout, 'web\n');
  t.is(fs.services.length, 0);
  const missing = await swarmctl([...h, 'service', 'rm', 'web']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /service web not found/);
});

test.serial('service rm a b c removes those that exist, names the others and exits 1', async (t) => {
  const h = ['--host', fs.host];
  for (const name of ['ra', 'rc']) t.is((await swarmctl([...h, 'service', 'create', '--detach', '--name', name, 'web:1'])).code, 0);
  const rm = await swarmctl([...h, 'service', 'rm', 'ra', 'nosuch', 'rc']);
  t.is(rm.code, 1);
  t.is(rm.stdout, 'ra\nrc\n');
  t.regex(rm.stderr, /service nosuch not found/);
  t.regex(rm.stderr, /1 of 3 services not removed: nosuch/);
  t.false(fs.services.some((s) => ['ra', 'rc'].includes(s.spec?.annotations?.name ?? '')));
});

test.serial('service create waits for convergence, prints progress; a stuck service fails with the scheduler reason', async (t) => {
  const h = ['--host', fs.host];
  const ok = await swarmctl([...h, 'service', 'create', '--name', 'api', '--replicas', '2', 'offline/x:1']);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, /warning: image offline\/x could not be accessed/);
  t.regex(ok.stderr, /1\/2: running/);
  t.regex(ok.stderr, /2\/2: running/);
  t.regex(ok.stderr, /verify: Service converged/);
  fs.stuck = 'no suitable node (insufficient resources on 2 nodes)';
  const stuck = await swarmctl([...h, 'service', 'create', '--name', 'big', '--reserve-memory', '1T', '--timeout', '1s', 'big:1']);
  t.is(stuck.code, 1);
  t.regex(stuck.stderr, /1\/1: pending \(no suitable node/);
  t.regex(stuck.stderr, /swarmctl: service big did not converge within 1s: pending: no suitable node \(insufficient resources on 2 nodes\)/);
});

test.serial('bad flags send nothing; update, inspect and logs', async (t) => {
  const h = ['--host', fs.host];
  const b = await swarmctl([...h, 'service', 'create', '--limit-memory', 'huge', 'web:1']);
  t.is(b.code, 1);
  t.regex(b.stderr, /swarmctl: --limit-memory huge: expected a size like 64M or 1G/);
  t.is(fs.calls.length, 0);
  t.is((await swarmctl([...h, 'service', 'create', '-d', '--name', 'web', 'web:1'])).code, 0);
  t.is((await swarmctl([...h, 'service', 'create', '-d', 'library/redis:7'])).code, 0);
  t.regex(fs.services[1].spec?.annotations?.name ?? '', /^redis-[0-9a-z]{5}$/);
  const u = await swarmctl([...h, 'service', 'update', '-d', '--image', 'web:2', '--env-add', 'X=1', 'web']);
  t.is(u.code, 0, u.stderr);
  const req = fs.calls.find((x) => x.method === 'updateService')!.request as { serviceVersion: number; spec: ServiceSpec };
  t.is(req.spec.task?.container?.image, 'web:2');
  t.deepEqual(req.spec.task?.container?.env, ['X=1']);
  const rb = await swarmctl([...h, 'service', 'update', '-d', '--rollback', 'web']);
  t.is(rb.code, 0, rb.stderr);
  t.is(fs.services[0].spec?.task?.container?.image, 'web:1');
  const ins = await swarmctl([...h, 'service', 'inspect', 'web']);
  t.regex(ins.stdout, /Image:\s+web:1/);
  t.regex(ins.stdout, /Previous image:\s+web:2/);
  const task0 = fs.tasks[0];
  fs.logs.push({ serviceId: fs.services[0].id, taskId: task0.id, nodeId: task0.nodeId, timestamp: Date.parse('2026-01-01T00:00:00Z'), stream: 'stdout', data: Buffer.from('hello\nworld\n') });
  const logs = await swarmctl([...h, 'service', 'logs', '--tail', '5', '-t', 'web']);
  t.is(logs.code, 0, logs.stderr);
  t.regex(logs.stdout, /^web\.1\.task\d+x+@h2\s+\| 2026-01-01T00:00:00\.000Z hello\n/);
  t.regex(logs.stdout, /\| 2026-01-01T00:00:00\.000Z world\n$/);
  t.like(fs.calls.find((x) => x.method === 'logs')!.request, { tail: 5, follow: false });
  const jl = await swarmctl([...h, 'service', 'logs', '--format', 'json', 'web']);
  t.like(JSON.parse(jl.stdout.split('\n')[0]) as object, { service: 'web', slot: 1, stream: 'stdout', line: 'hello\nworld', timestamp: '2026-01-01T00:00:00.000Z' });
  const home = join(fs.dir, 'home');
  await mkdir(join(home, '.docker'), { recursive: true });
  await writeFile(join(home, '.docker', 'config.json'), JSON.stringify({ auths: { 'reg.example:5000': { auth: Buffer.from('u:p').toString('base64') } } }));
  const auth = await swarmctl([...h, 'service', 'create', '-d', '--with-registry-auth', '--name', 'priv', 'reg.example:5000/app:1'], { HOME: home });
  t.is(auth.code, 0, auth.stderr);
  const sent = fs.calls.filter((x) => x.method === 'createService').pop()!.request as { spec: ServiceSpec };
  t.deepEqual(sent.spec.task?.container?.pullAuth, { username: 'u', password: 'p', identityToken: '' });
});

test.serial('service update waits for the rolling update, with progress; a paused update fails naming the task; --detach returns at once; inspect shows the status', async (t) => {
  const h = ['--host', fs.host];
  t.is((await swarmctl([...h, 'service', 'create', '--name', 'web', '--replicas', '2', 'web:1'])).code, 0);
  const u = await swarmctl([...h, 'service', 'update', '--image', 'web:2', '--update-parallelism', '1', 'web']);
  t.is(u.code, 0, u.stderr);
  t.is(u.stdout, 'web\n');
  // What must hold, however fast the update goes (a watch may see it only once it is done):
  // every slot ends running, the counts of updated tasks only grow, the stability wait comes
  // once all are updated, and the last line says the update completed.
  const lines = u.stderr.trimEnd().split('\n');
  t.true(lines.includes('1/2: running') && lines.includes('2/2: running'), u.stderr);
  const counts = lines.filter((l) => l.startsWith('update: ')).map((l) => Number(/^update: (\d+) of 2 tasks updated$/.exec(l)?.[1] ?? NaN));
  t.true(counts.every((n, i) => n <= 2 && (i === 0 || n > counts[i - 1])), u.stderr);
  const verify = lines.indexOf('verify: Waiting 5s to verify that tasks are stable...');
  if (verify >= 0) t.true(lines.slice(0, verify).includes('update: 2 of 2 tasks updated'), u.stderr);
  t.is(lines.at(-1), 'verify: Service converged (update completed)');
  const sent = fs.calls.filter((x) => x.method === 'updateService').pop()!.request as { spec: ServiceSpec };
  t.is(sent.spec.update?.parallelism, 1);
  const ins = await swarmctl([...h, 'service', 'inspect', 'web']);
  t.regex(ins.stdout, /Update config:\s+parallelism 1, delay 0s, stop-first, on failure pause, monitor 5s, max failure ratio 0\n/);
  t.regex(ins.stdout, /Update status:\s+completed\n/);
  t.regex(ins.stdout, /Update message:\s+update completed\n/);

  const bad = await swarmctl([...h, 'service', 'update', '--image', 'bad/web:3', 'web']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /swarmctl: service web: update paused due to failure or early termination of task task\d+x+ \(web\.1: failed, task: non-zero exit \(1\)\)/);
  t.regex(bad.stderr, /run `swarmctl service update` again to resume/);
  const insBad = await swarmctl([...h, 'service', 'inspect', '--format', 'json', 'web']);
  t.like((JSON.parse(insBad.stdout) as object[])[0], { updateStatus: { state: 'PAUSED' } });

  const before = fs.calls.length;
  const d = await swarmctl([...h, 'service', 'update', '-d', '--force', 'web']);
  t.is(d.code, 0, d.stderr);
  t.is(d.stderr, '');
  t.deepEqual(fs.calls.slice(before).map((x) => x.method), ['listServices', 'updateService']);
  t.is((fs.calls.pop()!.request as { spec: ServiceSpec }).spec.task?.forceUpdate, 1);
  const badFlag = await swarmctl([...h, 'service', 'update', '--update-order', 'sideways', 'web']);
  t.is(badFlag.code, 1);
  t.regex(badFlag.stderr, /--update-order sideways: expected stop-first or start-first/);
});

test.serial('service logs takes a task id (or its prefix) in place of a service', async (t) => {
  const h = ['--host', fs.host];
  t.is((await swarmctl([...h, 'service', 'create', '--name', 'web', 'web:1'])).code, 0);
  const task0 = fs.tasks[0];
  fs.logs.push({ serviceId: fs.services[0].id, taskId: task0.id, nodeId: task0.nodeId, timestamp: 0, stream: 'stdout', data: Buffer.from('hi\n') });
  const r = await swarmctl([...h, 'service', 'logs', task0.id.slice(0, 10)]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^web\.1\.task\d+x+@h2\s+\| hi\n$/);
  t.like(fs.calls.find((x) => x.method === 'logs')!.request, { serviceIds: [], taskIds: [task0.id] });
});

test('--rollback-* flags set the rollback config; a rollback cannot itself fail over to a rollback', (t) => {
  const spec = specOfCreateFlags({ 'rollback-parallelism': 2, 'rollback-monitor': '3s', 'rollback-order': 'start-first', 'rollback-failure-action': 'continue', 'rollback-max-failure-ratio': '0.5' }, 'web:1', []);
  t.like(spec.rollback, { parallelism: 2, monitorMs: 3000, order: UpdateConfig_Order.START_FIRST, failureAction: UpdateConfig_FailureAction.CONTINUE, maxFailureRatio: 0.5 });
  t.is(spec.update, undefined, 'the update config is left alone');
  t.throws(() => specOfCreateFlags({ 'rollback-failure-action': 'rollback' }, 'web:1', []), { message: /--rollback-failure-action rollback: expected pause, continue$/ });
  t.throws(() => specOfCreateFlags({ 'rollback-parallelism': -1 }, 'web:1', []), { message: /--rollback-parallelism -1/ });
});
