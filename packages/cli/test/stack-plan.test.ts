import test from 'ava';
import { createHash } from 'node:crypto';
import { Network, RegistryAuth, Secret, Service, ServiceSpec } from '@swarmd/proto';
import { planDeploy, planRemove, planText, PlanError, withRegistryAuth, type Current } from '../src/stack/plan.js';
import { translateCompose, type Stack } from '../src/stack/translate.js';

const DIGEST = `@sha256:${'ab'.repeat(32)}`;

function stackOf(text: string, name = 'app', files: Record<string, string> = {}): Stack {
  return translateCompose(name, [{ path: '/x/compose.yml', text }], { env: {}, readFile: (p) => Buffer.from(files[p] ?? '') });
}

const V1 = `
services:
  web:
    image: reg:5000/web:1
    ports: ["8080:80"]
  api:
    image: reg:5000/api:1
    networks: [back]
networks:
  back:
    internal: true
`;

const ingress = Network.fromPartial({ id: 'n-ingress', spec: { annotations: { name: 'ingress' }, ingress: true } });

/** What the cluster holds after deploying `stack`, in the manager's form: ids for networks, the mesh's network added, digests pinned. */
function deployed(stack: Stack): Current {
  const networks = [ingress, ...stack.networks.map((n, i) => Network.fromPartial({ id: `n${i}`, spec: n.spec }))];
  const idOf = (name: string) => networks.find((n) => n.spec?.annotations?.name === name)!.id;
  const services = stack.services.map((spec, i) => {
    const s = ServiceSpec.fromPartial(spec);
    s.task!.container!.image += DIGEST;
    s.task!.networks = s.task!.networks.map((a) => ({ ...a, target: idOf(a.target) }));
    if (s.endpoint?.ports.length) s.task!.networks.push({ target: ingress.id, aliases: [] });
    return Service.fromPartial({ id: `s${i}`, meta: { version: 10 + i }, spec: s });
  });
  return { services, networks, secrets: [], configs: [] };
}

test('deploying the same files again changes nothing (pinned digests, network ids and the mesh network are not differences)', (t) => {
  const s = stackOf(V1);
  const steps = planDeploy(s, deployed(s), { prune: false });
  t.deepEqual(
    steps.map((x) => `${x.action} ${x.kind} ${x.name}`),
    ['unchanged network app_back', 'unchanged network app_default', 'unchanged service app_web', 'unchanged service app_api'],
  );
});

test('a first deploy creates networks before services', (t) => {
  const steps = planDeploy(stackOf(V1), { services: [], networks: [ingress], secrets: [], configs: [] }, { prune: false });
  t.is(planText(steps), ['create network app_back', 'create network app_default', 'create service app_web', 'create service app_api'].join('\n'));
});

test('one image changed: only that service is updated, with the changed field named', (t) => {
  const cur = deployed(stackOf(V1));
  const steps = planDeploy(stackOf(V1.replace('api:1', 'api:2')), cur, { prune: false });
  const changed = steps.filter((x) => x.action !== 'unchanged');
  t.deepEqual(
    changed.map((x) => [x.action, x.name, x.fields, x.id, x.version]),
    [['update', 'app_api', ['task.container.image'], 's1', 11]],
  );
});

test('replicas and environment changes are named field by field', (t) => {
  const cur = deployed(stackOf(V1));
  const v2 = V1.replace('    ports: ["8080:80"]', '    ports: ["8080:80"]\n    environment: [A=1]\n    deploy: { replicas: 3 }');
  const web = planDeploy(stackOf(v2), cur, { prune: false }).find((x) => x.name === 'app_web')!;
  t.deepEqual(web.fields, ['replicated.replicas', 'task.container.env']);
});

test('a service gone from the files is removed only with --prune', (t) => {
  const cur = deployed(stackOf(V1));
  const v2 = stackOf(V1.replace(/ {2}api:\n.*\n.*\n/, ''));
  t.false(planDeploy(v2, cur, { prune: false }).some((x) => x.action === 'remove'));
  t.deepEqual(
    planDeploy(v2, cur, { prune: true })
      .filter((x) => x.action === 'remove')
      .map((x) => [x.kind, x.name, x.id]),
    [['service', 'app_api', 's1']],
  );
});

test('services of another stack or of no stack are neither pruned nor taken over', (t) => {
  const cur = deployed(stackOf(V1));
  const other = Service.fromPartial({ id: 'o1', spec: { annotations: { name: 'app_web', labels: {} } } });
  t.throws(() => planDeploy(stackOf(V1), { ...cur, services: [other] }, { prune: true }), { instanceOf: PlanError, message: /service "app_web" exists and is not part of stack app/ });
  const foreign = deployed(stackOf(V1, 'other'));
  t.false(planDeploy(stackOf(V1), { ...cur, services: [...cur.services, ...foreign.services] }, { prune: true }).some((x) => x.action === 'remove'));
});

test('an external network or secret that does not exist is refused before anything is done', (t) => {
  const ext = 'services:\n  a:\n    image: x\n    networks: [shared]\nnetworks:\n  shared:\n    external: true\n';
  t.throws(() => planDeploy(stackOf(ext), { services: [], networks: [], secrets: [], configs: [] }, { prune: false }), { message: /network "shared" is declared as external, but could not be found/ });
  const sec = 'services:\n  a:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw:\n    external: true\n';
  t.throws(() => planDeploy(stackOf(sec), { services: [], networks: [], secrets: [], configs: [] }, { prune: false }), { message: /secret "pw" is declared as external/ });
});

test('a secret is created once; the same data again is unchanged, other data is refused (secrets cannot change)', (t) => {
  const text = 'services:\n  a:\n    image: x\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw\n';
  const s = stackOf(text, 'app', { '/x/pw': 'one' });
  const empty = { services: [], networks: [], secrets: [], configs: [] };
  t.deepEqual(
    planDeploy(s, empty, { prune: false }).filter((x) => x.kind === 'secret').map((x) => x.action),
    ['create'],
  );
  const stored = Secret.fromPartial({ id: 'sec1', spec: { annotations: { name: 'app_pw', labels: {} } }, digest: createHash('sha256').update('one').digest('hex') });
  t.deepEqual(
    planDeploy(s, { ...empty, secrets: [stored] }, { prune: false }).filter((x) => x.kind === 'secret').map((x) => x.action),
    ['unchanged'],
  );
  t.throws(() => planDeploy(stackOf(text, 'app', { '/x/pw': 'two' }), { ...empty, secrets: [stored] }, { prune: false }), { message: /secret "app_pw" exists with other data/ });
});

test('stack rm removes the stack objects only, services first', (t) => {
  const cur = deployed(stackOf(V1));
  const other = deployed(stackOf(V1, 'other'));
  const all: Current = { services: [...cur.services, ...other.services.map((s) => ({ ...s, id: `x${s.id}` }))], networks: [...cur.networks, ...other.networks.slice(1).map((n) => ({ ...n, id: `x${n.id}` }))], secrets: [], configs: [] };
  t.deepEqual(
    planRemove('app', all).map((x) => `${x.kind} ${x.name}`),
    ['service app_web', 'service app_api', 'network app_back', 'network app_default'],
  );
});

test('--with-registry-auth sends the credentials with every service, an unchanged one as an update of them alone; images without credentials are named', (t) => {
  const s = stackOf(V1);
  const auth = RegistryAuth.fromPartial({ username: 'deploy', password: 's3cret' });
  const r = withRegistryAuth(planDeploy(s, deployed(s), { prune: false }), (image) => (image.startsWith('reg:5000/web') ? auth : undefined));
  const web = r.steps.find((x) => x.name === 'app_web')!;
  t.deepEqual([web.action, web.fields, web.id], ['update', ['task.container.pullAuth'], 's0']);
  t.deepEqual(web.spec?.task?.container?.pullAuth, auth);
  t.is(r.steps.find((x) => x.name === 'app_api')!.action, 'unchanged');
  t.deepEqual(r.missing, ['reg:5000/api:1']);
  t.is(s.services[0].task?.container?.pullAuth, undefined, 'the stack itself is left as it was');
});
