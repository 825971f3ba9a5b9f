// Autolock and `volume ls` on a real local cluster (swarmd processes in network namespaces,
// containers under runc): with autolock on, a manager's secrets key and TLS key are encrypted on
// disk; a restarted manager stays locked (no TCP port, its control socket answering only Unlock)
// until it gets its unlock key on that host, refuses a wrong one, and once unlocked opens the
// secrets it sealed before the restart; `volume ls` lists a named volume on every node a service
// made it on.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { run } from '@swarmd/common';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';
import { inContainer, pidsOf } from './helpers/containers.js';
import { findSwarmd } from '@swarmd/cli/local/swarmd';

const sleeper = (mark: string, before = ''): string[] => ['--', 'sh', '-c', `: ${mark}; ${before}while true; do sleep 1; done`];

/** A host's advertised IP:PORT (DIR/swarmd.json). */
const advertiseOf = async (dir: string, host: string): Promise<string> => (JSON.parse(await readFile(join(dir, host, 'swarmd.json'), 'utf8')) as { advertiseAddr: string }).advertiseAddr;
/** Whether IP:PORT accepts TCP connections. */
const portOpen = (addr: string) =>
  new Promise<boolean>((resolve) => {
    const [host, port] = addr.split(':');
    const s = connect(Number(port), host);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
const plainKeyIn = async (file: string): Promise<boolean> => (await readFile(file, 'utf8')).includes('BEGIN PRIVATE KEY');

clusterTest('autolock: a restarted manager keeps its TLS key encrypted, stays locked on its control socket only, refuses a wrong key, and with the right key serves again with its secrets', async (t) => {
  const name = `al${process.pid % 100000}`;
  const c = await startLocalCluster(t, name, '10.252.60', 1, 1);
  const password = randomBytes(12).toString('hex');
  const created = await c.ctlIn(password, 'secret', 'create', 'db_pw', '-');
  t.is(created.code, 0, created.stderr);

  const update = await c.ok('cluster', 'update', '--autolock=true');
  const key = /SWMKEY-1-\S+/.exec(update)?.[0] ?? '';
  t.truthy(key, `cluster update printed an unlock key: ${update}`);
  t.regex(update, /swarmctl swarm unlock/);
  t.is((await c.ok('swarm', 'unlock-key', '-q')).trim(), key);
  const keyFile = join(c.dir, 'm1', 'secrets.key');
  const tlsKeyFile = join(c.dir, 'm1', 'certs', 'node-key.pem');
  await c.until('m1 secrets.key wrapped', async () => (await readFile(keyFile)).subarray(0, 4).toString() === 'SWL1', 30);
  await c.until('m1 TLS key encrypted', async () => !(await plainKeyIn(tlsKeyFile)), 30);
  t.true(await plainKeyIn(join(c.dir, 'w1', 'certs', 'node-key.pem')), 'a worker key is never encrypted');

  await c.ok('local', 'stop', '--name', name, 'm1');
  const started = c.ctl('local', 'start', '--name', name, 'm1', '--timeout', '180');
  const sock = `unix://${join(c.dir, 'm1', 'control.sock')}`;
  let said = '';
  await c.until('m1 answering on its control socket that it is locked', async () => {
    const r = await c.ctl('--host', sock, 'node', 'ls');
    said = r.stderr;
    return r.code !== 0 && /locked/.test(r.stderr);
  }, 90);
  t.regex(said, /this manager is locked.*swarmctl swarm unlock/);
  t.false(await plainKeyIn(tlsKeyFile), 'no private key in the clear on the locked manager\'s disk');
  // Its port stays closed (no TLS identity before unlock): swarmctl from elsewhere says to unlock it on its host.
  const addr = await advertiseOf(c.dir, 'm1');
  t.false(await portOpen(addr), `${addr} closed while locked`);
  const w1certs = join(c.dir, 'w1', 'certs');
  const tlsFlags = ['--tlscacert', join(w1certs, 'ca.pem'), '--tlscert', join(w1certs, 'node.pem'), '--tlskey', join(w1certs, 'node-key.pem')];
  const remote = await c.ctlIn(`${key}\n`, '--host', addr, ...tlsFlags, 'swarm', 'unlock');
  t.not(remote.code, 0);
  t.regex(remote.stderr, /no manager was unlocked.*may be locked.*run `swarmd unlock`.*on that host/);

  const wrong = await c.ctlIn(`SWMKEY-1-${randomBytes(32).toString('base64')}\n`, '--host', sock, 'swarm', 'unlock');
  t.not(wrong.code, 0);
  t.regex(wrong.stderr, /not the right one/);
  const swarmd = findSwarmd(process.env);
  const wrongByDaemon = await run(swarmd[0], [...swarmd.slice(1), 'unlock', '--state-dir', join(c.dir, 'm1')], { input: 'SWMKEY-1-nope\n', okCodes: [0, 1] });
  t.is(wrongByDaemon.code, 1);
  t.regex(wrongByDaemon.stderr, /swarmd unlock: .*malformed/);
  t.regex((await c.ctl('--host', sock, 'node', 'ls')).stderr, /locked/, 'still locked after the wrong keys');

  const right = await c.ctlIn(`${key}\n`, '--host', sock, 'swarm', 'unlock');
  t.is(right.code, 0, right.stderr);
  t.regex(right.stdout, /m1.*unlocked/);
  const back = await started;
  t.is(back.code, 0, `local start: ${back.stderr}${back.stdout}`);
  t.true(await portOpen(addr), 'its port serves again');
  t.is((await readFile(keyFile)).subarray(0, 4).toString(), 'SWL1', 'the key stays wrapped on disk');
  t.false(await plainKeyIn(tlsKeyFile), 'the TLS key stays encrypted on disk');

  // The restarted manager (the only one) opens the secret sealed before the restart for a new task.
  const mark = `${name}-reader`;
  await c.ok('service', 'create', '--name', 'reader', '--secret', 'db_pw', '--constraint', 'node.role==worker', c.image, ...sleeper(mark));
  await c.until('reader running', async () => (await c.running('reader')).length === 1, 120);
  const [pid] = await pidsOf(mark);
  t.is((await inContainer(pid, 'cat /run/secrets/db_pw')).out, password);
});

clusterTest('autolock with 3 managers: every manager wraps its keys, swarmctl goes past a locked follower (port closed), and swarm unlock finds its socket among the managers', async (t) => {
  const name = `am${process.pid % 100000}`;
  const c = await startLocalCluster(t, name, '10.252.62', 3, 0);
  const key = /SWMKEY-1-\S+/.exec(await c.ok('cluster', 'update', '--autolock=true'))?.[0] ?? '';
  t.truthy(key);
  const wrapped = async (host: string) =>
    (await readFile(join(c.dir, host, 'secrets.key'))).subarray(0, 4).toString() === 'SWL1' && !(await plainKeyIn(join(c.dir, host, 'certs', 'node-key.pem')));
  await c.until('every manager secrets.key wrapped', async () => (await wrapped('m1')) && (await wrapped('m2')) && (await wrapped('m3')), 30);
  const leader = (await c.nodes()).find((n) => n.managerStatus?.leader)?.description?.hostname ?? '';
  const follower = ['m1', 'm2', 'm3'].find((h) => `${name}-${h}` !== leader)!;

  await c.ok('local', 'stop', '--name', name, follower);
  const started = c.ctl('local', 'start', '--name', name, follower, '--timeout', '180');
  const sock = `unix://${join(c.dir, follower, 'control.sock')}`;
  await c.until(`${follower} locked`, async () => /locked/.test((await c.ctl('--host', sock, 'node', 'ls')).stderr), 90);
  // Through the context (every manager): the locked one is passed over.
  const ls = await c.ctl('node', 'ls', '--format', 'json');
  t.is(ls.code, 0, ls.stderr);
  t.is((JSON.parse(ls.stdout) as unknown[]).length, 3);

  t.false(await portOpen(await advertiseOf(c.dir, follower)), 'the locked follower serves no port');
  // The local context lists every manager's control socket: the locked one's is among them.
  const un = await c.ctlIn(`${key}\n`, 'swarm', 'unlock', '--format', 'json');
  t.is(un.code, 0, un.stderr);
  const outcomes = (JSON.parse(un.stdout) as { manager: string; outcome: string }[]).map((o) => `${/manager (m\d)/.exec(o.manager)?.[1]}:${o.outcome}`).sort();
  t.deepEqual(outcomes, ['m1', 'm2', 'm3'].map((h) => `${h}:${h === follower ? 'unlocked' : 'not-locked'}`));
  const back = await started;
  t.is(back.code, 0, `local start: ${back.stderr}${back.stdout}`);
  await c.until(`${follower} a reachable manager again`, async () => {
    const n = await c.byHost(follower);
    const reach = (n as { managerStatus?: { reachability?: string } } | undefined)?.managerStatus?.reachability;
    return n?.status?.state === 'NODE_STATE_READY' && reach === 'REACHABLE';
  }, 60);
  t.true(await wrapped(follower));
});

clusterTest('volume ls: a named volume of a service on two nodes is listed on each, by node', async (t) => {
  const name = `vl${process.pid % 100000}`;
  const c = await startLocalCluster(t, name, '10.254.61', 1, 2);
  const mark = `${name}-vol`;
  await c.ok('service', 'create', '--name', 'keeper', '--mode', 'global', '--constraint', 'node.role==worker', '--mount', 'type=volume,source=appdata,target=/data', c.image, ...sleeper(mark, 'date > /data/x; '));
  await c.until('keeper running on both workers', async () => (await c.running('keeper')).length === 2, 120);
  type Row = { node: string; nodeId: string; name: string; driver: string };
  let rows: Row[] = [];
  await c.until('appdata listed on both workers', async () => {
    rows = (JSON.parse(await c.ok('volume', 'ls', '--format', 'json')) as Row[]).filter((r) => r.name === 'appdata');
    return rows.length === 2;
  }, 60);
  t.deepEqual(rows.map((r) => `${r.node} ${r.driver}`).sort(), [`${name}-w1 local`, `${name}-w2 local`]);
  t.is(rows.find((r) => r.node === `${name}-w1`)?.nodeId, await c.nodeOf('w1'));
  const table = await c.ok('volume', 'ls');
  t.regex(table, /NODE\s+DRIVER\s+VOLUME NAME/);
  t.regex(table, new RegExp(`${name}-w2\\s+local\\s+appdata`));
  const one = JSON.parse(await c.ok('volume', 'ls', '--filter', 'name=appdata', '--filter', `node=${name}-w2`, '--format', 'json')) as Row[];
  t.deepEqual(one.map((r) => r.node), [`${name}-w2`]);
  const bad = await c.ctl('volume', 'ls', '--filter', 'size=3');
  t.not(bad.code, 0);
  t.regex(bad.stderr, /--filter size=3: expected name=VOLUME or node=NODE/);
});
