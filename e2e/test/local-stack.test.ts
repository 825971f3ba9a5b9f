// Stacks on a real local cluster (swarmd processes in network namespaces, containers under runc),
// deployed from Compose files with `swarmctl stack deploy`: services answer on a published port
// and by their short names on the stack's networks, a store keeps data in a named volume and
// reads a secret no other task has; a redeploy rolls only the service whose image changed;
// --prune and `stack rm` leave nothing behind.
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@swarmd/common';
import { clusterTest, RUNNING, startLocalCluster, type LocalCluster, type TaskJson } from './helpers/local-cluster.js';
import { fetchByName, inContainer, pidsOf } from './helpers/containers.js';

/** A busybox web server answering `hello from WHAT` on 8080 ($$ keeps `$` from interpolation). */
const serve = (mark: string, what: string, before = '') =>
  JSON.stringify(['sh', '-c', `: ${mark}; ${before}echo "hello from ${what}" > /www/index.html; httpd -f -p 8080 -h /www & pid=$$!; trap 'kill $$pid; exit 0' TERM INT; wait $$pid`]);

function threeServices(mark: string, image: string, port: number, apiImage = image): string {
  return `
x-image: &image ${image}
services:
  web:
    image: *image
    command: ${serve(`${mark}-web`, 'web')}
    ports:
      - "${port}:8080"
    networks: [default, back]
  api:
    image: ${apiImage}
    command: ${serve(`${mark}-api`, 'api')}
    networks: [back]
    deploy:
      replicas: 2
  store:
    image: *image
    command: ${serve(`${mark}-store`, 'store', 'date > /data/written-by-store; ')}
    networks: [back]
    volumes:
      - data:/data
    secrets:
      - source: db_password
        mode: 0400
networks:
  back:
    internal: true
volumes:
  data:
secrets:
  db_password:
    file: ./db_password.txt
`;
}

async function composeDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'swarmd-stacks-compose-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  return dir;
}

const runningIds = (tasks: readonly TaskJson[]) =>
  tasks
    .filter((x) => x.desiredState === RUNNING && x.status?.state === RUNNING)
    .map((x) => x.id)
    .sort();

async function stackServices(c: LocalCluster, stack: string): Promise<string[]> {
  const r = await c.ctl('stack', 'services', stack, '--format', 'json');
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as { spec?: { annotations?: { name?: string } } }[]).map((s) => s.spec?.annotations?.name ?? '').sort();
}

clusterTest('a 3-service stack: the web answers on its published port, reaches the api by name on an internal network, the store has its volume and a secret only it can read', async (t) => {
  const NAME = `stk${process.pid % 10000}`;
  const NET = '10.254.91';
  const c = await startLocalCluster(t, NAME, NET, 1, 1);
  const password = `pw-${process.pid}-${Date.now()}`;
  const dir = await composeDir({ 'stack.yml': threeServices(NAME, c.image, 9080), 'db_password.txt': password });
  const out = await c.ok('stack', 'deploy', '-c', join(dir, 'stack.yml'), '--detach=false', 'shop');
  t.regex(out, /Creating network shop_default/);
  t.regex(out, /Creating network shop_back/);
  t.regex(out, /Creating secret shop_db_password/);
  t.deepEqual(await stackServices(c, 'shop'), ['shop_api', 'shop_store', 'shop_web']);
  t.deepEqual(JSON.parse(await c.ok('stack', 'ls', '--format', 'json')), [{ name: 'shop', services: 3 }]);
  t.is((JSON.parse(await c.ok('stack', 'ps', 'shop', '--format', 'json')) as TaskJson[]).filter((x) => x.status?.state === RUNNING).length, 4);

  // The published port answers on every node through the routing mesh.
  for (const host of [2, 3]) {
    await c.until(`the web answers on ${NET}.${host}:9080`, async () => (await run('curl', ['-s', '-m', '3', `http://${NET}.${host}:9080/`]).catch(() => ({ stdout: '' }))).stdout.startsWith('hello from web'), 60);
  }
  // Short compose names resolve on the stack's networks: web → api, api → store.
  const [web] = await pidsOf(`${NAME}-web`);
  const [api] = await pidsOf(`${NAME}-api`);
  const [store] = await pidsOf(`${NAME}-store`);
  t.truthy(web && api && store, 'the three containers run');
  await c.until('web reaches api by name', async () => (await fetchByName(web, 'api')).out.startsWith('hello from api'), 30);
  await c.until('api reaches store by name', async () => (await fetchByName(api, 'store')).out.startsWith('hello from store'), 30);

  // The secret: in the store's task at /run/secrets/db_password, mode 0400, and nowhere else.
  const inStore = await inContainer(store, 'cat /run/secrets/db_password; echo; stat -c %a /run/secrets/db_password');
  t.is(inStore.code, 0, inStore.out);
  t.deepEqual(inStore.out.trim().split('\n'), [password, '400']);
  for (const [who, pid] of [['web', web], ['api', api]] as const) {
    const r = await inContainer(pid, 'cat /run/secrets/db_password');
    t.not(r.code, 0, `${who} cannot read the secret: ${r.out}`);
  }
  const inspect = await c.ok('secret', 'inspect', 'shop_db_password', '--format', 'json');
  t.false(inspect.includes(password), 'secret inspect never shows the data');
  t.false(inspect.includes(Buffer.from(password).toString('base64')));
  // The named volume: made on the store's node, holding what the store wrote.
  const w = await inContainer(store, 'cat /data/written-by-store');
  t.is(w.code, 0, w.out);
  const volumeHosts: string[] = [];
  for (const h of await readdir(c.dir, { withFileTypes: true })) {
    if (!h.isDirectory()) continue;
    const f = join(c.dir, h.name, 'runtime', 'volumes', 'shop_data', '_data', 'written-by-store');
    if ((await readFile(f, 'utf8').catch(() => undefined)) === w.out) volumeHosts.push(h.name);
  }
  t.is(volumeHosts.length, 1, `the volume shop_data on one host: ${volumeHosts.join(', ')}`);
});

clusterTest('redeploying with one image changed rolls only that service; --dry-run before it shows the plan and changes nothing', async (t) => {
  const NAME = `stu${process.pid % 10000}`;
  const NET = '10.254.92';
  const c = await startLocalCluster(t, NAME, NET, 1, 1);
  const v2 = c.image.replace(/:latest$/, ':v2');
  await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${c.image}`, `docker://${v2}`]);
  const dir = await composeDir({ 'v1.yml': threeServices(NAME, c.image, 9081), 'v2.yml': threeServices(NAME, c.image, 9081, v2), 'db_password.txt': 'x' });
  await c.ok('stack', 'deploy', '-c', join(dir, 'v1.yml'), '--detach=false', 'app');
  const before = { web: runningIds(await c.tasks('app_web')), api: runningIds(await c.tasks('app_api')), store: runningIds(await c.tasks('app_store')) };
  t.is(before.api.length, 2);

  const plan = await c.ok('stack', 'deploy', '-c', join(dir, 'v2.yml'), '--dry-run', 'app');
  t.is(
    plan.trim(),
    [
      'unchanged network app_back',
      'unchanged network app_default',
      'unchanged secret app_db_password',
      'unchanged service app_web',
      'update service app_api (task.container.image)',
      'unchanged service app_store',
    ].join('\n'),
  );
  t.deepEqual(runningIds(await c.tasks('app_api')), before.api, 'the dry run changed nothing');
  const again = await c.ok('stack', 'deploy', '-c', join(dir, 'v1.yml'), 'app');
  t.regex(again, /every service is up to date/);

  const out = await c.ok('stack', 'deploy', '-c', join(dir, 'v2.yml'), '--detach=false', 'app');
  t.regex(out, /Updating service app_api/);
  t.notRegex(out, /Updating service app_(web|store)/);
  const api = await c.running('app_api');
  t.is(api.length, 2);
  t.true(api.every((x) => x.spec?.container?.image?.startsWith(v2)), 'the api runs the new image');
  t.deepEqual(
    runningIds(api).filter((id) => before.api.includes(id)),
    [],
    'every api task was replaced',
  );
  t.deepEqual(runningIds(await c.tasks('app_web')), before.web, 'the web did not roll');
  t.deepEqual(runningIds(await c.tasks('app_store')), before.store, 'the store did not roll');
});

clusterTest('--prune removes a service gone from the file; stack rm leaves no service, network, secret or secret mount', async (t) => {
  const NAME = `stp${process.pid % 10000}`;
  const NET = '10.254.93';
  const c = await startLocalCluster(t, NAME, NET, 1, 1);
  const full = threeServices(NAME, c.image, 9082);
  const withoutApi = full.replace(/ {2}api:\n(?: {4}.*\n| {6}.*\n)+/, '');
  t.notRegex(withoutApi, /api:/);
  const dir = await composeDir({ 'full.yml': full, 'less.yml': withoutApi, 'db_password.txt': 'x' });
  await c.ok('stack', 'deploy', '-c', join(dir, 'full.yml'), '--detach=false', 'tmp');
  const kept = await c.ok('stack', 'deploy', '-c', join(dir, 'less.yml'), 'tmp');
  t.notRegex(kept, /Removing/);
  t.deepEqual(await stackServices(c, 'tmp'), ['tmp_api', 'tmp_store', 'tmp_web'], 'without --prune the api stays');
  const pruned = await c.ok('stack', 'deploy', '-c', join(dir, 'less.yml'), '--prune', 'tmp');
  t.regex(pruned, /Removing service tmp_api/);
  t.deepEqual(await stackServices(c, 'tmp'), ['tmp_store', 'tmp_web']);

  const rm = await c.ok('stack', 'rm', 'tmp');
  t.regex(rm, /Removing service tmp_web/);
  t.regex(rm, /Removing secret tmp_db_password/);
  t.regex(rm, /Removing network tmp_back/);
  t.deepEqual(JSON.parse(await c.ok('stack', 'ls', '--format', 'json')), []);
  t.deepEqual(JSON.parse(await c.ok('service', 'ls', '--format', 'json')), []);
  t.deepEqual(JSON.parse(await c.ok('secret', 'ls', '--format', 'json')), []);
  const nets = JSON.parse(await c.ok('network', 'ls', '--format', 'json')) as { spec?: { annotations?: { name?: string } } }[];
  t.deepEqual(nets.map((n) => n.spec?.annotations?.name), ['ingress']);
  const secretMounts = async () => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(`${c.dir}/`) && l.includes('/secrets/'));
  await c.until('no secret tmpfs left mounted on any host', async () => (await secretMounts()).length === 0, 60);
  t.regex((await c.ctl('stack', 'rm', 'tmp')).stderr, /Nothing found in stack: tmp/);
});
