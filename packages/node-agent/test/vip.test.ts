/**
 * VIP load balancing on two test hosts: the overlay layer programs each local task's VIP table
 * (nft, in the task's netns) from hand-built NetworkStateSets; servers run in the endpoint tasks'
 * netns (busybox httpd answering the task id, or a small node server), clients are busybox `nc`
 * or node in a client task's netns.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import type { NetworkPeer, NetworkStateSet } from '@swarmd/proto';
import { requires, type Teardown } from '@swarmd/testkit';
import { NFT } from '../src/networking/host-exec.js';
import { OverlayNetworking } from '../src/networking/overlay/overlay-networking.js';
import { overlayNet, overlayTask, service, stateSet } from './helpers/overlay-env.js';
import { at, setAll, twoNodes, type OverlayNode } from './helpers/overlay-hosts.js';

const rootTest = requires('root', 'netns', 'nft', 'busybox');

const inNet = (nsPath: string, cmd: string, args: string[], timeoutMs = 60_000) => run('nsenter', [`--net=${nsPath}`, cmd, ...args], { okCodes: [0, 1], timeoutMs });

async function waitListening(nsPath: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await inNet(nsPath, 'ss', ['-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on :${port} in ${nsPath}`);
}

/** A task of `svc` attached on node `n` (a netns of its own, as a container would have). */
async function attach(n: OverlayNode, taskId: string, svc: string, address: string, networkId: string): Promise<string> {
  return (await n.overlay.attach(overlayTask(taskId, svc, [{ networkId, address }]))).netnsPath!;
}

/** Runs a server in a netns until the test ends. */
function serve(t: Teardown, nsPath: string, cmd: string, args: string[]): void {
  const c = spawn('nsenter', [`--net=${nsPath}`, cmd, ...args], { stdio: 'ignore' });
  t.teardown(() => void c.kill('SIGKILL'));
}

/** An endpoint task: busybox httpd on port 80 in its netns answering its task id. */
async function httpEndpoint(t: Teardown, n: OverlayNode, taskId: string, svc: string, address: string, networkId: string): Promise<string> {
  const nsPath = await attach(n, taskId, svc, address, networkId);
  const www = await mkdtemp(join(tmpdir(), 'swarmd-vip-'));
  t.teardown(() => rm(www, { recursive: true, force: true }));
  await writeFile(join(www, 'index.html'), `${taskId}\n`);
  serve(t, nsPath, 'busybox', ['httpd', '-f', '-p', '80', '-h', www]);
  await waitListening(nsPath, 80);
  return nsPath;
}

/** `count` HTTP/1.0 requests to ip:80 from a netns, a connection each (busybox nc): who answered. */
async function ask(nsPath: string, ip: string, count: number): Promise<string[]> {
  const one = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 ${ip} 80 | busybox tail -n 1`;
  const r = await inNet(nsPath, 'busybox', ['sh', '-c', `for i in $(busybox seq ${count}); do ${one}; done`], 120_000);
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

const tally = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});

/** How a connection attempt from a netns ended (node: `connected`, an errno code, `answered`, `timeout`) and after how long. */
async function probe(nsPath: string, proto: 'tcp' | 'udp', ip: string, port: number): Promise<{ end: string; ms: number }> {
  const attempt =
    proto === 'tcp'
      ? `const c = require('net').connect(${port}, '${ip}'); c.on('connect', () => done('connected')); c.on('error', (e) => done(e.code));`
      : `const s = require('dgram').createSocket('udp4'); s.on('error', (e) => done(e.code)); s.on('message', () => done('answered'));
         s.connect(${port}, '${ip}', () => s.send('x'));`;
  const script = `const t0 = process.hrtime.bigint();
    const done = (end) => { console.log(JSON.stringify({ end, ms: Number(process.hrtime.bigint() - t0) / 1e6 })); process.exit(0); };
    setTimeout(() => done('timeout'), 5000); ${attempt}`;
  return JSON.parse((await inNet(nsPath, process.execPath, ['-e', script])).stdout) as { end: string; ms: number };
}

/** Nodes n1/n2, a network `front` (VNI, 10.X.0.0/24) and a set builder: the web service's VIP is .2, the client's .3. */
async function cluster(t: Teardown, vni: number, x: number) {
  const { nodes } = await twoNodes(t);
  const net = overlayNet('front', vni, `10.${x}.0.0/24`);
  const ip = (n: number) => `10.${x}.0.${n}`;
  const set = (...peers: NetworkPeer[]): NetworkStateSet =>
    stateSet({ network: net, peers, services: [service('web', { vip: `${ip(2)}/24` }), service('client', { vip: `${ip(3)}/24` })] });
  return { nodes, ip, set, cidr: (n: number) => `${ip(n)}/24` };
}

rootTest('vip: connections from a task on another host to a VIP are spread over every ready endpoint', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4121, 121);
  const [n1, n2] = nodes;
  const client = at(n2, 'c1', 'client', cidr(20));
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11)), at(n1, 'w2', 'web', cidr(12)), at(n2, 'w3', 'web', cidr(13)), client));
  await httpEndpoint(t, n1, 'w1', 'web', cidr(11), 'front');
  await httpEndpoint(t, n1, 'w2', 'web', cidr(12), 'front');
  await httpEndpoint(t, n2, 'w3', 'web', cidr(13), 'front');
  const c1 = await attach(n2, 'c1', 'client', cidr(20), 'front');

  const answers = await ask(c1, ip(2), 120);
  t.is(answers.length, 120, 'every request answered');
  const counts = tally(answers);
  t.deepEqual(Object.keys(counts).sort(), ['w1', 'w2', 'w3'], 'two endpoints on the other host and one on the same');
  for (const [who, n] of Object.entries(counts)) t.true(n >= 15, `${who} got ${n} of 120`);
});

rootTest('vip: after a set with fewer ready endpoints (one gone, one not ready), new connections reach only those left', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4122, 122);
  const [n1, n2] = nodes;
  const client = at(n2, 'c1', 'client', cidr(20));
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11)), at(n1, 'w2', 'web', cidr(12)), at(n2, 'w3', 'web', cidr(13)), client));
  for (const [n, id, k] of [[n1, 'w1', 11], [n1, 'w2', 12], [n2, 'w3', 13]] as const) await httpEndpoint(t, n, id, 'web', cidr(k), 'front');
  const c1 = await attach(n2, 'c1', 'client', cidr(20), 'front');
  t.is(Object.keys(tally(await ask(c1, ip(2), 30))).length, 3);

  // w2 turns unhealthy (still running, still reachable by address), w3 leaves the set.
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11)), at(n1, 'w2', 'web', cidr(12), { ready: false }), client));
  t.deepEqual(tally(await ask(c1, ip(2), 60)), { w1: 60 });
  t.deepEqual(await ask(c1, ip(12), 1), ['w2'], 'a task not ready is still reachable by its address');
});

rootTest('vip: a VIP whose service has no ready endpoint refuses TCP connections at once', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4123, 123);
  const [n1, n2] = nodes;
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11), { ready: false }), at(n2, 'c1', 'client', cidr(20))));
  const c1 = await attach(n2, 'c1', 'client', cidr(20), 'front');
  const r = await probe(c1, 'tcp', ip(2), 80);
  t.is(r.end, 'ECONNREFUSED');
  t.true(r.ms < 1000, `refused after ${r.ms.toFixed(1)} ms`);
  const nc = await inNet(c1, 'busybox', ['nc', '-w', '3', ip(2), '8080'], 10_000);
  t.regex(nc.stderr, /refused/, 'any port');
});

rootTest('vip: a VIP whose service has no ready endpoint refuses UDP at once (ICMP port unreachable)', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4124, 124);
  const [n2] = [nodes[1]];
  await setAll(nodes, set(at(n2, 'c1', 'client', cidr(20))));
  const c1 = await attach(n2, 'c1', 'client', cidr(20), 'front');
  const r = await probe(c1, 'udp', ip(2), 53);
  t.is(r.end, 'ECONNREFUSED');
  t.true(r.ms < 1000, `refused after ${r.ms.toFixed(1)} ms`);
});

rootTest("vip: a task reaches its own service's VIP where it is the only endpoint (local delivery)", async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4125, 125);
  const [n1] = nodes;
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11))));
  const w1 = await httpEndpoint(t, n1, 'w1', 'web', cidr(11), 'front');
  t.deepEqual(tally(await ask(w1, ip(2), 10)), { w1: 10 });
});

rootTest('vip: an established connection stays on its backend when a set drains it; new connections go to the others', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4126, 126);
  const [n1, n2] = nodes;
  const peers = [at(n1, 'w1', 'web', cidr(11)), at(n1, 'w2', 'web', cidr(12)), at(n2, 'c1', 'client', cidr(20))];
  await setAll(nodes, set(...peers));
  // A line server per endpoint: its id on connect, then `id:line` for every line.
  for (const [id, k] of [['w1', 11], ['w2', 12]] as const) {
    const ns = await attach(n1, id, 'web', cidr(k), 'front');
    serve(t, ns, process.execPath, ['-e', `require('net').createServer((s) => { s.write('${id}\\n'); s.on('data', (d) => s.write('${id}:' + d)); }).listen(7000)`]);
    await waitListening(ns, 7000);
  }
  const c1 = await attach(n2, 'c1', 'client', cidr(20), 'front');
  const client: ChildProcessWithoutNullStreams = spawn('nsenter', [
    `--net=${c1}`,
    process.execPath,
    '-e',
    `const c = require('net').connect(7000, '${ip(2)}'); c.pipe(process.stdout); process.stdin.pipe(c);`,
  ]);
  t.teardown(() => void client.kill('SIGKILL'));
  const lines: string[] = [];
  client.stdout.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)));
  const line = async (n: number) => {
    for (let i = 0; i < 200 && lines.length < n; i++) await sleep(25);
    return lines[n - 1];
  };
  const backend = await line(1);
  t.true(backend === 'w1' || backend === 'w2', backend);
  const other = backend === 'w1' ? 'w2' : 'w1';

  // Drained (not ready: the task still runs and keeps its address and FDB entries until it stops).
  await setAll(nodes, set(...peers.map((p) => (p.taskId === backend ? { ...p, ready: false } : p))));
  client.stdin.write('still-there\n');
  t.is(await line(2), `${backend}:still-there`, 'conntrack keeps the connection on its backend');
  const fresh = `const net = require('net'); const out = [];
    const one = () => new Promise((res) => { const c = net.connect(7000, '${ip(2)}'); c.once('data', (d) => { out.push(String(d).trim()); c.destroy(); res(); }); c.on('error', (e) => { out.push(e.code); res(); }); });
    (async () => { for (let i = 0; i < 20; i++) await one(); console.log(JSON.stringify(out)); })();`;
  const answers = JSON.parse((await inNet(c1, process.execPath, ['-e', fresh])).stdout) as string[];
  t.deepEqual(tally(answers), { [other]: 20 });
});

requires('root', 'netns', 'nft', 'conntrack', 'busybox')('vip: a connection whose SYN an endpoint never answered goes to a ready endpoint at its next retransmission once a set withdraws that one', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4127, 127);
  const [n1, n2] = nodes;
  const client = at(n2, 'c1', 'client', cidr(20));
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11)), at(n1, 'w2', 'web', cidr(12), { ready: false }), client));
  const ns: Record<string, string> = {};
  for (const [id, k] of [['w1', 11], ['w2', 12]] as const) {
    ns[id] = await attach(n1, id, 'web', cidr(k), 'front');
    serve(t, ns[id], process.execPath, ['-e', `require('net').createServer((s) => s.end('${id}\\n')).listen(7000)`]);
    await waitListening(ns[id], 7000);
  }
  // w1 drops every SYN, as a server whose accept queue is full does.
  for (const cmd of [['add', 'table', 'ip', 'synblock'], ['add', 'chain', 'ip', 'synblock', 'in', '{ type filter hook input priority 0; policy accept; }'], ['add', 'rule', 'ip', 'synblock', 'in', 'tcp', 'dport', '7000', 'tcp', 'flags', 'syn', 'drop']]) {
    const r = await inNet(ns.w1, NFT, cmd);
    t.is(r.code, 0, r.stderr);
  }
  const c1 = await attach(n2, 'c1', 'client', cidr(20), 'front');
  // The client's SYN is DNATed to w1 (the only ready endpoint) and dropped; Linux retransmits it 1 s, 3 s and 7 s later.
  const attempt = inNet(c1, process.execPath, [
    '-e',
    `const t0 = Date.now(); const done = (end) => { console.log(JSON.stringify({ end, ms: Date.now() - t0 })); process.exit(0); };
     setTimeout(() => done('timeout'), 6500);
     const c = require('net').connect(7000, '${ip(2)}'); c.on('data', (d) => done(String(d).trim())); c.on('error', (e) => done(e.code));`,
  ]);
  await sleep(300);
  await setAll(nodes, set(at(n1, 'w1', 'web', cidr(11), { ready: false }), at(n1, 'w2', 'web', cidr(12)), client));
  const r = JSON.parse((await attempt).stdout) as { end: string; ms: number };
  t.is(r.end, 'w2', `the connection ended with ${r.end} after ${r.ms} ms`);
  t.true(r.ms < 4000, `answered after ${r.ms} ms (a retransmission, not the client's timeout)`);
});

/** The handle of a netns' VIP table (a reload makes a new one), or undefined without one. */
async function tableHandle(nsPath: string): Promise<string | undefined> {
  const r = await inNet(nsPath, NFT, ['-a', 'list', 'table', 'ip', 'swarmd_vip']);
  return /^table ip swarmd_vip \{ # handle (\d+)/m.exec(r.stdout)?.[1];
}

rootTest('vip: a set reloads only the tables of tasks whose rules change (one nft transaction each); dnsrr services get none', async (t) => {
  const { nodes } = await twoNodes(t);
  const [n1, n2] = nodes;
  const a = overlayNet('a', 4127, '10.127.0.0/24');
  const b = overlayNet('b', 4128, '10.128.0.0/24');
  const d = overlayNet('d', 4129, '10.129.0.0/24');
  const push = (bEndpoints: NetworkPeer[]) =>
    setAll(
      nodes,
      stateSet(
        { network: a, peers: [at(n1, 'wa', 'sa', '10.127.0.11/24'), at(n2, 'ca', 'ca', '10.127.0.20/24')], services: [service('sa', { vip: '10.127.0.2/24' })] },
        { network: b, peers: [...bEndpoints, at(n2, 'cb', 'cb', '10.128.0.20/24')], services: [service('sb', { vip: '10.128.0.2/24' })] },
        { network: d, peers: [at(n1, 'wd', 'sd', '10.129.0.11/24'), at(n2, 'cd', 'cd', '10.129.0.20/24')], services: [service('sd', { dnsrr: true })] },
      ),
    );
  await push([at(n1, 'wb1', 'sb', '10.128.0.11/24')]);
  const ca = await attach(n2, 'ca', 'ca', '10.127.0.20/24', 'a');
  const cb = await attach(n2, 'cb', 'cb', '10.128.0.20/24', 'b');
  const cd = await attach(n2, 'cd', 'cd', '10.129.0.20/24', 'd');
  const [ha, hb] = [await tableHandle(ca), await tableHandle(cb)];
  t.truthy(ha && hb);
  t.is(await tableHandle(cd), undefined, 'a task whose networks have only dnsrr services has no VIP table');

  await push([at(n1, 'wb1', 'sb', '10.128.0.11/24'), at(n1, 'wb2', 'sb', '10.128.0.12/24')]);
  t.is(await tableHandle(ca), ha, 'untouched');
  t.not(await tableHandle(cb), hb, 'reloaded');
  t.regex((await inNet(cb, NFT, ['list', 'table', 'ip', 'swarmd_vip'])).stdout, /numgen random mod 2 vmap \{ 0 : goto ep-10-128-0-11, 1 : goto ep-10-128-0-12 \}/);
  t.like(n2.overlay.programming().at(-1), { vipTables: 1, failed: 0 });
  t.like(n1.overlay.programming().at(-1), { vipTables: 0 }, 'no local client task on n1');

  await push([at(n1, 'wb1', 'sb', '10.128.0.11/24'), at(n1, 'wb2', 'sb', '10.128.0.12/24')]);
  t.like(n2.overlay.programming().at(-1), { vipTables: 0 }, 'the same set again touches nothing');
  t.true(n2.overlay.programming().every((p) => p.ms >= 0 && p.ms < 10_000));
});

rootTest('vip: a restarted agent loads its tasks\' VIP tables from the set it starts with', async (t) => {
  const { nodes, ip, set, cidr } = await cluster(t, 4130, 130);
  const [n1] = nodes;
  const client = at(n1, 'c1', 'client', cidr(20));
  await n1.overlay.setState(set(at(n1, 'w1', 'web', cidr(11)), client));
  const c1 = await attach(n1, 'c1', 'client', cidr(20), 'front');
  t.regex((await inNet(c1, NFT, ['list', 'table', 'ip', 'swarmd_vip'])).stdout, new RegExp(`${ip(2)} comment "web" : goto svc-web-`));
  await n1.overlay.stop();

  const again = new OverlayNetworking({ nodeId: n1.nodeId, stateDir: n1.host.stateDir, hostNetns: n1.host.nsPath, underlayAddr: n1.host.addr, dns: { upstreams: [] } });
  t.teardown(() => again.destroy());
  await again.setState(set(at(n1, 'w2', 'web', cidr(12)), client));
  await again.start();
  const table = (await inNet(c1, NFT, ['list', 'table', 'ip', 'swarmd_vip'])).stdout;
  t.regex(table, new RegExp(`dnat to ${ip(12)}`));
  t.notRegex(table, new RegExp(`dnat to ${ip(11)}`));
});
