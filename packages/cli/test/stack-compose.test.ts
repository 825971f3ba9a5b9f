import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { EndpointSpec_ResolutionMode, Mount_Type, PortConfig_PublishMode, RestartPolicy_Condition, UpdateConfig_FailureAction, UpdateConfig_Order, type ServiceSpec } from '@swarmd/proto';
import { interpolate, parseEnvFile } from '../src/stack/interpolate.js';
import { ComposeError, lineOf } from '../src/stack/load.js';
import { translateCompose, STACK_LABEL, type Stack } from '../src/stack/translate.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/compose/', import.meta.url));
const readFile = (p: string) => readFileSync(p);

function fixture(name: string, env: Record<string, string> = {}, stack = 'demo'): Stack {
  const path = join(FIXTURES, name);
  return translateCompose(stack, [{ path, text: readFileSync(path, 'utf8') }], { env, readFile });
}

function inline(text: string, env: Record<string, string> = {}, files: Record<string, string> = {}): Stack {
  return translateCompose('st', [{ path: '/srv/app/docker-compose.yml', text }], {
    env,
    readFile: (p) => {
      if (p in files) return Buffer.from(files[p]);
      throw new Error('ENOENT: no such file');
    },
  });
}

function composeError(fn: () => unknown): ComposeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ComposeError) return e;
    throw e;
  }
  throw new Error('no ComposeError thrown');
}

const svc = (s: Stack, name: string): ServiceSpec => {
  const found = s.services.find((x) => x.annotations?.name === name);
  if (!found) throw new Error(`no service ${name} in ${s.services.map((x) => x.annotations?.name).join(', ')}`);
  return found;
};

// ---- interpolation ------------------------------------------------------------------------

test('interpolation: plain, braces, defaults for unset and empty, alternatives, $$ and nesting', (t) => {
  const env = { A: 'a', EMPTY: '' };
  t.is(interpolate('$A-${A}', env), 'a-a');
  t.is(interpolate('${MISSING:-x}|${EMPTY:-y}|${EMPTY-z}|${MISSING-w}', env), 'x|y||w');
  t.is(interpolate('${A:+set}|${MISSING:+set}', env), 'set|');
  t.is(interpolate('cost $$5 ${MISSING:-${A}}', env), 'cost $5 a');
});

test('interpolation: a required variable without a value is an error naming it and the message', (t) => {
  t.throws(() => interpolate('${DB:?set the DB password}', {}), { message: /required variable DB is missing a value: set the DB password/ });
  t.throws(() => interpolate('${A', { A: 'x' }), { message: /not closed/ });
});

test('env files: comments, export, quotes, keys without a value', (t) => {
  t.deepEqual(
    parseEnvFile('# c\nA=1\nexport B="two words"\nC=\'q\'\nD\nE=x # trailing\n'),
    [
      { key: 'A', value: '1', line: 2 },
      { key: 'B', value: 'two words', line: 3 },
      { key: 'C', value: 'q', line: 4 },
      { key: 'D', value: undefined, line: 5 },
      { key: 'E', value: 'x', line: 6 },
    ],
  );
});

// ---- held real-world files: warnings, not crashes -----------------------------------------

test('held compose files written for Docker translate with warnings, not errors', (t) => {
  const cases: [string, Record<string, string>, number][] = [
    ['wordpress.yml', {}, 2],
    ['voting-app.yml', {}, 6],
    ['dev-compose.yml', { DB_PASSWORD: 'pw' }, 2],
    ['monitoring.yml', { SLACK: 'x' }, 4],
    ['gitea.yml', {}, 2],
  ];
  for (const [file, env, services] of cases) {
    const s = fixture(file, env);
    t.is(s.services.length, services, file);
    for (const spec of s.services) t.truthy(spec.task?.container?.image, `${file}: ${spec.annotations?.name} has an image`);
  }
});

test('keys a stack ignores are named in warnings (build, links, depends_on conditions, container_name, restart, logging...)', (t) => {
  const w = fixture('dev-compose.yml', { DB_PASSWORD: 'pw' }).warnings;
  for (const key of ['services.api.build', 'services.api.container_name', 'services.api.links', 'services.api.logging', 'services.api.cap_add', 'services.api.profiles', 'services.db.restart', 'services.db.shm_size', 'name']) {
    t.true(w.some((x) => x.startsWith(`${key}:`)), `warning for ${key} in ${w.join(' | ')}`);
  }
  t.true(w.some((x) => x.startsWith('services.api.depends_on:') && /conditions are not supported/.test(x)));
  t.true(w.some((x) => x.startsWith('services.api.ports[0]:') && /127\.0\.0\.1/.test(x)), 'a host address in a port is named');
  const g = fixture('gitea.yml').warnings;
  for (const key of ['services.server.mem_limit', 'services.server.ulimits', 'services.db.sysctls', 'services.db.privileged']) t.true(g.some((x) => x.startsWith(`${key}:`)), key);
});

// ---- translation --------------------------------------------------------------------------

test('names are prefixed with the stack, labelled with the namespace; services without networks get STACK_default with their name as an alias', (t) => {
  const s = fixture('wordpress.yml');
  const wp = svc(s, 'demo_wordpress');
  t.is(wp.annotations?.labels[STACK_LABEL], 'demo');
  t.is(wp.task?.container?.labels[STACK_LABEL], 'demo');
  t.deepEqual(wp.task?.networks, [{ target: 'demo_default', aliases: ['wordpress'] }]);
  t.deepEqual(
    s.networks.map((n) => [n.name, n.spec.driver, n.spec.annotations?.labels[STACK_LABEL]]),
    [['demo_default', 'overlay', 'demo']],
  );
  t.deepEqual(
    s.volumes.map((v) => v.name),
    ['demo_db_data', 'demo_wp_data'],
  );
  const db = svc(s, 'demo_db');
  t.deepEqual(db.task?.container?.mounts.map((m) => [m.type, m.source, m.target]), [[Mount_Type.VOLUME, 'demo_db_data', '/var/lib/mysql']]);
  t.deepEqual(db.task?.container?.args, ['--default-authentication-plugin=mysql_native_password']);
  t.true(db.task?.container?.env.includes('MYSQL_DATABASE=wordpress'));
  t.deepEqual(wp.endpoint?.ports.map((p) => [p.publishedPort, p.targetPort, p.publishMode]), [[80, 80, PortConfig_PublishMode.INGRESS]]);
});

test('deploy: replicas, mode, placement, resources, restart policy, update and rollback config, endpoint mode, labels', (t) => {
  const v = fixture('voting-app.yml');
  const worker = svc(v, 'demo_worker');
  t.deepEqual(worker.mode, { $case: 'replicated', replicated: { replicas: 2 } });
  t.deepEqual(worker.task?.placement?.constraints, ['node.role==manager']);
  t.deepEqual(worker.task?.restart, { condition: RestartPolicy_Condition.ON_FAILURE, delayMs: 10_000, maxAttempts: 3, windowMs: 120_000 });
  t.is(worker.annotations?.labels.APP, 'VOTING');
  t.deepEqual(worker.task?.networks.map((n) => n.target), ['demo_frontend', 'demo_backend']);
  t.is(svc(v, 'demo_db').task?.placement?.maxReplicas, 1);
  t.deepEqual(svc(v, 'demo_redis').update, { parallelism: 2, delayMs: 10_000, failureAction: UpdateConfig_FailureAction.PAUSE, monitorMs: 5_000, maxFailureRatio: 0, order: UpdateConfig_Order.STOP_FIRST });
  t.is(svc(v, 'demo_visualizer').task?.container?.stopGracePeriodMs, 90_000);
  t.deepEqual(svc(v, 'demo_visualizer').task?.container?.mounts.map((m) => [m.type, m.source, m.target]), [[Mount_Type.BIND, '/var/run/docker.sock', '/var/run/docker.sock']]);

  const m = fixture('monitoring.yml');
  const prom = svc(m, 'demo_prometheus');
  t.deepEqual(prom.task?.resources?.limits, { nanoCpus: 500_000_000, memoryBytes: 1024 * 1024 * 1024 });
  t.deepEqual(prom.task?.resources?.reservations, { nanoCpus: 250_000_000, memoryBytes: 512 * 1024 * 1024 });
  t.deepEqual(prom.task?.container?.args, ['--config.file=/etc/prometheus/prometheus.yml', '--storage.tsdb.retention.time=15d']);
  const ne = svc(m, 'demo_node-exporter');
  t.deepEqual(ne.mode, { $case: 'global', global: {} });
  t.is(ne.endpoint?.mode, EndpointSpec_ResolutionMode.DNSRR);
  const g = svc(m, 'demo_grafana');
  t.is(g.update?.order, UpdateConfig_Order.START_FIRST);
  t.is(g.update?.failureAction, UpdateConfig_FailureAction.ROLLBACK);
  t.is(g.update?.monitorMs, 30_000);
  t.is(g.rollback?.parallelism, 0);
  t.deepEqual(g.task?.networks, [{ target: 'demo_monitoring', aliases: ['grafana', 'dashboards'] }]);
  t.deepEqual(m.networks[0].spec.ipam, [{ subnet: '10.42.0.0/24', gateway: '', range: '' }]);
  t.true(m.networks[0].spec.attachable);
});

test('secrets and configs: data from a file or content, targets and modes, external ones not created', (t) => {
  const m = fixture('monitoring.yml');
  t.deepEqual(
    m.secrets.map((s) => [s.name, s.external, s.data?.toString()]),
    [
      ['demo_grafana_admin_password', false, 's3cr3t-admin\n'],
      ['slack_webhook', true, undefined],
    ],
  );
  t.deepEqual(
    m.configs.map((c) => [c.name, c.data?.toString()]),
    [
      ['demo_prometheus_config', 'global:\n  scrape_interval: 15s\n'],
      ['demo_alert_rules', 'groups: []\n'],
    ],
  );
  const grafana = svc(m, 'demo_grafana').task!.container!;
  t.deepEqual(grafana.secrets.map((r) => [r.secretName, r.file]), [['demo_grafana_admin_password', { name: '/run/secrets/grafana_admin_password', uid: '0', gid: '0', mode: 0o444 }]]);
  const am = svc(m, 'demo_alertmanager').task!.container!;
  t.deepEqual(am.secrets.map((r) => [r.secretName, r.file]), [['slack_webhook', { name: '/run/secrets/slack.url', uid: '65534', gid: '65534', mode: 0o400 }]]);
  const prom = svc(m, 'demo_prometheus').task!.container!;
  t.deepEqual(
    prom.configs.map((r) => [r.configName, r.file?.name, r.file?.mode]),
    [
      ['demo_prometheus_config', '/etc/prometheus/prometheus.yml', 0o444],
      ['demo_alert_rules', '/etc/prometheus/alert.rules.yml', 0o440],
    ],
  );
});

test('environment: env_file then environment, ${VAR:-default}, a key without a value from the shell, anchors merged', (t) => {
  const s = fixture('dev-compose.yml', { DB_PASSWORD: 'pw', EMPTY_FROM_SHELL: 'shell', API_TAG: '1.2' });
  const api = svc(s, 'demo_api').task!.container!;
  t.is(api.image, 'registry.example.com/shop/api:1.2');
  t.deepEqual(api.env, ['CACHE_TTL=30', 'DATABASE_URL=postgres://shop:pw@db:5432/shop', 'EMPTY_FROM_SHELL=shell', 'FEATURE_X=on', 'LOG_LEVEL=info', 'TZ=UTC']);
  t.is(api.user, '1000:1000');
  t.is(api.dir, '/srv/app');
  t.is(api.hostname, 'api');
  t.is(api.stopSignal, 'SIGINT');
  t.deepEqual(api.healthcheck, { test: ['CMD', 'wget', '-qO-', 'http://localhost:8000/health'], intervalMs: 10_000, timeoutMs: 3_000, retries: 5, startPeriodMs: 20_000 });
  t.deepEqual(api.mounts.map((m) => [m.type, m.target, m.tmpfsSizeBytes]), [[Mount_Type.TMPFS, '/tmp', 64 * 1024 * 1024]]);
  const db = svc(s, 'demo_db').task!.container!;
  t.deepEqual(db.healthcheck?.test, ['CMD-SHELL', 'pg_isready -U shop']);
  t.deepEqual(
    db.mounts.map((m) => [m.type, m.source, m.target, m.readOnly]),
    [
      [Mount_Type.VOLUME, 'demo_pgdata', '/var/lib/postgresql/data', false],
      [Mount_Type.BIND, join(FIXTURES, 'init.sql'), '/docker-entrypoint-initdb.d/init.sql', true],
    ],
  );
});

test('a required variable left unset refuses the file, naming file, line and key', (t) => {
  const e = composeError(() => fixture('dev-compose.yml'));
  t.is(e.file, join(FIXTURES, 'dev-compose.yml'));
  t.is(e.line, 23);
  t.is(e.key, 'services.api.environment.DATABASE_URL');
  t.regex(e.message, /required variable DB_PASSWORD is missing a value: set DB_PASSWORD/);
});

test('ports: ranges, protocols and the long syntax with host mode', (t) => {
  const s = inline(`
services:
  web:
    image: nginx
    ports:
      - "8000-8001:80-81/udp"
      - 9000
      - target: 443
        published: 8443
        mode: host
`);
  t.deepEqual(
    svc(s, 'st_web').endpoint?.ports.map((p) => [p.publishedPort, p.targetPort, p.protocol, p.publishMode]),
    [
      [8000, 80, 1, PortConfig_PublishMode.INGRESS],
      [8001, 81, 1, PortConfig_PublishMode.INGRESS],
      [0, 9000, 0, PortConfig_PublishMode.INGRESS],
      [8443, 443, 0, PortConfig_PublishMode.HOST],
    ],
  );
});

test('several files merge in order: mappings by key, environment by key, ports appended, volumes by target', (t) => {
  const base = `
services:
  web:
    image: web:1
    environment: [A=1, B=2]
    ports: ["80:80"]
    volumes: ["data:/data"]
    deploy: { replicas: 2, labels: { tier: front } }
volumes:
  data:
  other:
`;
  const prod = `
services:
  web:
    image: web:2
    environment:
      B: "20"
      C: "3"
    ports: ["443:443"]
    volumes: ["other:/data"]
    deploy: { replicas: 5 }
`;
  const s = translateCompose('st', [
    { path: '/a/base.yml', text: base },
    { path: '/a/prod.yml', text: prod },
  ], { env: {}, readFile });
  const web = svc(s, 'st_web');
  t.is(web.task?.container?.image, 'web:2');
  t.deepEqual(web.task?.container?.env, ['A=1', 'B=20', 'C=3']);
  t.deepEqual(web.endpoint?.ports.map((p) => p.targetPort), [80, 443]);
  t.deepEqual(web.task?.container?.mounts.map((m) => m.source), ['st_other']);
  t.deepEqual(web.mode, { $case: 'replicated', replicated: { replicas: 5 } });
  t.is(web.annotations?.labels.tier, 'front');
});

// ---- refused files ------------------------------------------------------------------------

test('a value of the wrong type is refused with file, line and key', (t) => {
  const e = composeError(() =>
    inline(`services:
  web:
    image: nginx
    deploy:
      replicas: three
`),
  );
  t.is(e.message, '/srv/app/docker-compose.yml:5: services.web.deploy.replicas: expected a whole number ≥ 0, got "three"');
});

test('an unknown key is refused, naming it and where it is', (t) => {
  const e = composeError(() =>
    inline(`services:
  web:
    image: nginx
    deploy:
      replica: 3
`),
  );
  t.is(e.line, 5);
  t.is(e.key, 'services.web.deploy.replica');
  t.regex(e.message, /unknown key "replica"/);
});

test('a YAML syntax error names its line', (t) => {
  const e = composeError(() => inline('services:\n  web:\n    image: nginx\n   ports: [\n'));
  t.is(e.file, '/srv/app/docker-compose.yml');
  t.truthy(e.line);
});

test('undeclared named volumes, networks and secrets, a missing image and a build-only service are refused', (t) => {
  t.regex(composeError(() => inline('services:\n  a:\n    image: x\n    volumes: ["data:/d"]\n')).message, /:4: services\.a\.volumes\[0\]: named volume "data" is not declared/);
  t.regex(composeError(() => inline('services:\n  a:\n    image: x\n    networks: [back]\n')).message, /network "back" is not declared/);
  t.regex(composeError(() => inline('services:\n  a:\n    image: x\n    secrets: [pw]\n')).message, /secret "pw" is not declared/);
  t.regex(composeError(() => inline('services:\n  a:\n    build: .\n')).message, /:2: services\.a: image: is required \(build: is not supported/);
  t.regex(composeError(() => inline('services:\n  a:\n    image: x\nsecrets:\n  pw:\n    file: ./pw.txt\n')).message, /:6: secrets\.pw\.file: cannot read \/srv\/app\/pw\.txt/);
});

test('a secret file is read relative to the compose file', (t) => {
  const s = inline('services:\n  a:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw.txt\n', {}, { '/srv/app/pw.txt': 'hunter2' });
  t.is(s.secrets[0].data?.toString(), 'hunter2');
  t.is(s.secrets[0].name, 'st_pw');
});

test('lineOf finds keys inside list items and skips same-named keys of other blocks', (t) => {
  const text = 'services:\n  a:\n    deploy:\n      image: no\n    image: yes\n    ports:\n      - target: 1\n        published: 2\n      - target: 3\n        published: 4\n';
  t.is(lineOf(text, ['services', 'a', 'image']), 5);
  t.is(lineOf(text, ['services', 'a', 'ports', 1, 'published']), 10);
  t.is(lineOf(text, ['services', 'a', 'ports', 0, 'target']), 7);
});
