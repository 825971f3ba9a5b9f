import test from 'ava';
import { isSwarmError, ErrorCode } from '@swarmd/common';
import { Mount_Type, RestartPolicy_Condition, PortConfig_PublishMode, EndpointSpec_ResolutionMode, type ServiceSpec, type Mount } from '@swarmd/proto';
import { validateServiceSpec, serviceSpecProblems, applyServiceDefaults, SERVICE_DEFAULTS, parseConstraint } from '../src/specs/index.js';
import { mkSpec } from './orchestrator-harness.js';

const mount = (o: Partial<Mount>): Mount => ({
  type: Mount_Type.BIND,
  source: '',
  target: '',
  readOnly: false,
  volumeDriver: '',
  volumeLabels: {},
  tmpfsSizeBytes: 0,
  tmpfsMode: 0,
  ...o,
});
const port = (target: number, published: number, publishMode = PortConfig_PublishMode.INGRESS, protocol = 0) => ({ name: '', protocol, targetPort: target, publishedPort: published, publishMode });

/** [case, how to break the spec, the message expected (a substring)] */
const CASES: [string, (s: ServiceSpec) => void, string][] = [
  ['no image', (s) => (s.task!.container!.image = ''), 'spec.task.container.image: required'],
  ['no container', (s) => (s.task!.container = undefined), 'spec.task.container: required'],
  ['no task', (s) => (s.task = undefined), 'spec.task: required'],
  ['uppercase image', (s) => (s.task!.container!.image = 'Nginx'), 'repository name must be lowercase'],
  ['negative replicas', (s) => (s.mode = { $case: 'replicated', replicated: { replicas: -1 } }), 'spec.mode.replicated.replicas: must be ≥ 0'],
  ['no name', (s) => (s.annotations!.name = ''), 'spec.annotations.name: required'],
  ['bad name', (s) => (s.annotations!.name = '-web'), 'spec.annotations.name: "-web" must match'],
  ['name with a space', (s) => (s.annotations!.name = 'my web'), 'spec.annotations.name'],
  ['long name', (s) => (s.annotations!.name = 'a'.repeat(64)), 'spec.annotations.name: at most 63 characters'],
  ['constraint without operator', (s) => (s.task!.placement = { constraints: ['node.labels.zone'], preferences: [], platforms: [], maxReplicas: 0 }), 'spec.task.placement.constraints[0]'],
  ['constraint unknown key', (s) => (s.task!.placement = { constraints: ['node.color==red'], preferences: [], platforms: [], maxReplicas: 0 }), 'unknown key "node.color"'],
  ['constraint bad role', (s) => (s.task!.placement = { constraints: ['node.role==boss'], preferences: [], platforms: [], maxReplicas: 0 }), 'node.role is manager or worker'],
  [
    'preference not a node label',
    (s) => (s.task!.placement = { constraints: [], preferences: [{ spreadDescriptor: 'node.hostname' }], platforms: [], maxReplicas: 0 }),
    'spec.task.placement.preferences[0].spread_descriptor: "node.hostname": only node.labels.<name> is supported',
  ],
  ['relative mount target', (s) => s.task!.container!.mounts.push(mount({ source: '/data', target: 'data' })), 'spec.task.container.mounts[0].target: "data" must be an absolute path'],
  ['bind with relative source', (s) => s.task!.container!.mounts.push(mount({ source: 'data', target: '/data' })), 'must be an absolute path for a bind mount'],
  ['tmpfs with a source', (s) => s.task!.container!.mounts.push(mount({ type: Mount_Type.TMPFS, source: '/x', target: '/t' })), 'mounts[0].source: must be empty for tmpfs'],
  ['unknown mount type', (s) => s.task!.container!.mounts.push(mount({ type: 9 as Mount_Type, target: '/t' })), 'mounts[0].type: bind, volume or tmpfs'],
  [
    'same target twice',
    (s) => s.task!.container!.mounts.push(mount({ type: Mount_Type.VOLUME, source: 'v', target: '/d' }), mount({ type: Mount_Type.VOLUME, source: 'w', target: '/d/' })),
    'mounts[1].target: "/d/" is mounted twice',
  ],
  [
    'memory limit below 4 MiB',
    (s) => (s.task!.resources = { limits: { nanoCpus: 0, memoryBytes: 1024 }, reservations: undefined, pidsLimit: 0 }),
    'spec.task.resources.limits.memory_bytes: must be ≥ 4 MiB',
  ],
  [
    'reservation above the limit',
    (s) => (s.task!.resources = { limits: { nanoCpus: 1e9, memoryBytes: 0 }, reservations: { nanoCpus: 2e9, memoryBytes: 0 }, pidsLimit: 0 }),
    'reservations.nano_cpus: above the limit',
  ],
  ['bad restart condition', (s) => (s.task!.restart = { condition: 7 as RestartPolicy_Condition, delayMs: 0, maxAttempts: 0, windowMs: 0 }), 'spec.task.restart.condition'],
  ['negative restart delay', (s) => (s.task!.restart = { condition: RestartPolicy_Condition.ANY, delayMs: -1, maxAttempts: 0, windowMs: 0 }), 'spec.task.restart.delay_ms: must be ≥ 0'],
  [
    'health check without a command',
    (s) => (s.task!.container!.healthcheck = { test: ['CMD'], intervalMs: 1000, timeoutMs: 1000, retries: 3, startPeriodMs: 0 }),
    'spec.task.container.healthcheck.test: CMD needs a command',
  ],
  [
    'health check negative interval',
    (s) => (s.task!.container!.healthcheck = { test: ['CMD-SHELL', 'true'], intervalMs: -5, timeoutMs: 0, retries: 0, startPeriodMs: 0 }),
    'healthcheck.interval_ms: must be 0 or a positive duration',
  ],
  ['health check bad kind', (s) => (s.task!.container!.healthcheck = { test: ['RUN', 'x'], intervalMs: 0, timeoutMs: 0, retries: 0, startPeriodMs: 0 }), 'must start with CMD, CMD-SHELL or NONE'],
  ['duplicate published port', (s) => (s.endpoint = { mode: 0, ports: [port(80, 8080), port(81, 8080)] }), 'spec.endpoint.ports[1].published_port: 8080/tcp is published twice'],
  ['target port 0', (s) => (s.endpoint = { mode: 0, ports: [port(0, 8080)] }), 'spec.endpoint.ports[0].target_port: must be 1-65535'],
  ['dnsrr with ingress', (s) => (s.endpoint = { mode: EndpointSpec_ResolutionMode.DNSRR, ports: [port(80, 8080)] }), 'cannot be used with dnsrr'],
  ['env without a name', (s) => s.task!.container!.env.push('=x'), 'spec.task.container.env[0]'],
  [
    'max_replicas on a global service',
    (s) => {
      s.mode = { $case: 'global', global: {} };
      s.task!.placement = { constraints: [], preferences: [], platforms: [], maxReplicas: 2 };
    },
    'max_replicas: only for replicated services',
  ],
  [
    'update max failure ratio',
    (s) => (s.update = { parallelism: 1, delayMs: 0, failureAction: 0, monitorMs: 0, maxFailureRatio: 2, order: 0 }),
    'spec.update.max_failure_ratio: must be between 0 and 1',
  ],
];

for (const [name, breakIt, msg] of CASES) {
  test(`validateServiceSpec refuses: ${name}`, (t) => {
    const s = mkSpec('web');
    breakIt(s);
    const err = t.throws(() => validateServiceSpec(s));
    t.true(isSwarmError(err, ErrorCode.INVALID_ARGUMENT));
    t.true(err.message.includes(msg), `"${err.message}" should include "${msg}"`);
  });
}

test('validateServiceSpec accepts good specs (and the same port on two protocols, host ports, volumes, tmpfs)', (t) => {
  const s = mkSpec('web.front_1', { replicas: 3, constraints: ['node.labels.zone==a', 'node.role!=manager', 'engine.labels.ssd==true'], prefs: ['node.labels.zone'] });
  s.task!.container!.mounts.push(mount({ source: '/srv', target: '/srv' }), mount({ type: Mount_Type.VOLUME, source: 'data', target: '/data' }), mount({ type: Mount_Type.TMPFS, target: '/tmp' }));
  s.task!.container!.healthcheck = { test: ['CMD-SHELL', 'curl -f localhost'], intervalMs: 1000, timeoutMs: 500, retries: 3, startPeriodMs: 0 };
  s.task!.resources = { limits: { nanoCpus: 1e9, memoryBytes: 4 * 2 ** 20 }, reservations: { nanoCpus: 5e8, memoryBytes: 2 ** 20 }, pidsLimit: 0 };
  s.endpoint = { mode: 0, ports: [port(53, 53, 0, 0), port(53, 53, 0, 1), port(80, 8080, PortConfig_PublishMode.HOST)] };
  t.notThrows(() => validateServiceSpec(s));
  t.notThrows(() => validateServiceSpec(applyServiceDefaults(s)));
  t.deepEqual(serviceSpecProblems(mkSpec('g', { global: true })), []);
});

test('every problem is reported, in details.fields', (t) => {
  const s = mkSpec('');
  s.task!.container!.image = '';
  const err = t.throws(() => validateServiceSpec(s));
  t.deepEqual((err as unknown as { details: { fields: string[] } }).details.fields, ['spec.annotations.name: required', 'spec.task.container.image: required']);
});

test('applyServiceDefaults fills Docker defaults and keeps what is given', (t) => {
  const s = mkSpec('web');
  s.mode = undefined;
  const d = applyServiceDefaults(s);
  t.deepEqual(d.mode, { $case: 'replicated', replicated: { replicas: 1 } });
  t.deepEqual(d.task!.restart, SERVICE_DEFAULTS.restart);
  t.is(d.task!.restart!.delayMs, 5_000);
  t.is(d.task!.container!.stopGracePeriodMs, 10_000);
  t.is(d.update!.parallelism, 1);
  t.is(d.rollback!.parallelism, 1);
  t.is(s.update, undefined, 'the input is not changed');
  const given = mkSpec('web', { restart: { condition: RestartPolicy_Condition.NONE } });
  given.task!.container!.stopGracePeriodMs = 3_000;
  const g = applyServiceDefaults(given);
  t.is(g.task!.restart!.condition, RestartPolicy_Condition.NONE);
  t.is(g.task!.container!.stopGracePeriodMs, 3_000);
});

test('parseConstraint', (t) => {
  t.deepEqual(parseConstraint('node.labels.Zone == a'), { key: 'node.labels.Zone', op: '==', value: 'a' });
  t.deepEqual(parseConstraint('NODE.ROLE!=manager'), { key: 'node.role', op: '!=', value: 'manager' });
  t.regex(parseConstraint('node.id==a==b') as string, /more than one operator/);
  t.regex(parseConstraint('node.labels.==a') as string, /empty label name/);
  t.regex(parseConstraint('node.id==') as string, /empty value/);
});
