/**
 * VIP load balancing: HTTP requests per second through a service's VIP against requests straight
 * to one task's address, from the same client in the same run; and how long a pushed set takes to
 * reach the kernel (every local task's VIP table).
 *
 * Two netns hosts on an underlay bridge, the overlay programmed by the agent's OverlayNetworking
 * from a hand-built NetworkStateSet. Host 1 runs three endpoint tasks (busybox httpd, which forks
 * a child per connection: one task or three, the servers have the same CPUs to use); host 2 the
 * client task, whose netns holds its VIP table. Per round, in rotating order, `ab` (Debian's
 * apache2-utils: HTTP/1.0, a new connection per request, so every request passes the DNAT) runs
 * BENCH_SECONDS against each path: `direct` (task w1's address, port 80), `vip1` (a service whose
 * only endpoint is w1, port 81: the cost of the DNAT alone) and `vip` (the service over w1..w3,
 * port 82: numgen spread); every endpoint's httpd listens on all three ports.
 * R is the median of the per-round vip/direct ratios (the load of this shared machine drifts
 * within seconds). Ends with `vip/direct requests: R`.
 *
 * Programming latency: host 2 gets client tasks up to BENCH_LOCAL_TASKS (a list: one part each;
 * they are all endpoints of the client service's own VIP, so every table holds that service too),
 * then BENCH_PUSHES sets, each changing web's endpoints (one turns not ready / ready again, a
 * fourth comes and goes), so every local table changes: from setState to its promise (the kernel
 * holds it: one spawn, an `nft -f` per task, 16 side by side), p50/p99, checked against a table.
 *
 *   npm run bench:lb     (root; BENCH_ROUNDS=5 BENCH_SECONDS=3 BENCH_CONCURRENCY=8 BENCH_LOCAL_TASKS=10,50 BENCH_PUSHES=40)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, run, describeError } from '@swarmd/common';
import { EndpointSpec_ResolutionMode, type NetworkPeer, type NetworkStateSet, type Task } from '@swarmd/proto';
import { createHosts, type TestHost, type TestHosts } from '@swarmd/testkit/hosts';
import { NFT, OverlayNetworking } from '@swarmd/node-agent';
import { benchNetwork, median, preflight, quantile, waitListening } from './lib/overlay.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const LOCAL_TASKS = (process.env.BENCH_LOCAL_TASKS ?? '10,50').split(',').map(Number);
const PUSHES = Number(process.env.BENCH_PUSHES ?? 40);
const SUBNET = '10.89.0';
const VIP = `${SUBNET}.2`;
const VIP1 = `${SUBNET}.3`;
/** Every endpoint's httpd ports: direct, vip1 and vip each use one. */
const PORTS = [80, 81, 82] as const;


interface Member {
  taskId: string;
  service: string;
  ip: string;
  host: TestHost;
  nodeId: string;
  ready?: boolean;
}

function stateOf(members: Member[]): NetworkStateSet {
  const peer = (m: Member): NetworkPeer => ({
    taskId: m.taskId,
    taskName: `${m.service}.1.${m.taskId}`,
    hostname: '',
    serviceId: `svc-${m.service}`,
    serviceName: m.service,
    address: `${m.ip}/24`,
    nodeId: m.nodeId,
    nodeAddr: m.host.addr,
    ready: m.ready ?? true,
    aliases: [],
  });
  const svc = (name: string, vip: string) => ({ serviceId: `svc-${name}`, name, mode: EndpointSpec_ResolutionMode.VIP, vip: `${vip}/24`, ports: [], aliases: [] });
  return {
    networks: [
      {
        network: benchNetwork('lb', 4343, SUBNET),
        peers: members.map(peer),
        services: [svc('web', VIP), svc('client', `${SUBNET}.4`)],
        nodeAddress: '',
      },
    ],
  };
}

/** `one`: a service whose only endpoint is w1 (a second VIP on the same task). */
const withOne = (s: NetworkStateSet): NetworkStateSet => {
  const [n] = s.networks;
  const w1 = n.peers.find((p) => p.taskId === 'w1')!;
  return {
    networks: [
      {
        ...n,
        peers: [...n.peers, { ...w1, taskId: 'w1-one', taskName: 'one.1.w1-one', serviceId: 'svc-one', serviceName: 'one', address: w1.address }],
        services: [...n.services, { serviceId: 'svc-one', name: 'one', mode: EndpointSpec_ResolutionMode.VIP, vip: `${VIP1}/24`, ports: [], aliases: [] }],
      },
    ],
  };
};

const task = (m: Member): Task => ({ id: m.taskId, serviceId: `svc-${m.service}`, networks: [{ networkId: 'lb', addresses: [`${m.ip}/24`], aliases: [] }] }) as unknown as Task;
const inNs = (ns: string, cmd: string, args: string[], timeoutMs = (SECONDS + 30) * 1000) => run('nsenter', [`--net=${ns}`, cmd, ...args], { timeoutMs });

/** Requests per second of `ab` from a netns to IP:PORT (a new connection per request); throws on failed requests. */
async function ab(ns: string, target: string): Promise<number> {
  const r = await inNs(ns, 'ab', ['-q', '-t', String(SECONDS), '-n', '10000000', '-c', String(CONCURRENCY), `http://${target}/`]);
  const rps = /Requests per second:\s+([\d.]+)/.exec(r.stdout)?.[1];
  const failed = Number(/Failed requests:\s+(\d+)/.exec(r.stdout)?.[1] ?? 'NaN');
  const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(r.stdout)?.[1] ?? 0);
  if (!rps || failed || non2xx) throw new Error(`ab to ${target}: ${failed} failed, ${non2xx} non-2xx\n${r.stdout}`);
  return Number(rps);
}

/** The endpoints in a netns' VIP table for `vip` (numgen arms, or the single goto). */
async function endpointsIn(ns: string, vip: string): Promise<number> {
  const table = (await inNs(ns, NFT, ['list', 'table', 'ip', 'swarmd_vip'])).stdout;
  const chain = new RegExp(`${vip.replace(/\./g, '\\.')}[^,}]* : goto ([\\w-]+)`).exec(table)?.[1];
  if (!chain) return 0;
  const body = new RegExp(`chain ${chain} \\{([^}]*\\}?)`).exec(table)?.[1] ?? '';
  return (body.match(/goto ep-/g) ?? []).length;
}

async function main(): Promise<void> {
  await preflight('bench:lb', 'ab', ['-V'], 'apache2-utils');
  const www = await mkdtemp(join(tmpdir(), 'swarmd-lb-bench-'));
  const overlays: OverlayNetworking[] = [];
  const children: ChildProcess[] = [];
  let hosts: TestHosts | undefined;
  const cleanup = async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const o of overlays) await o.destroy().catch(() => undefined);
    await hosts?.destroy();
    await rm(www, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    hosts = await createHosts(2);
    const [h1, h2] = hosts.hosts;
    const nodeOf = new Map([
      [h1, 'bench-n1'],
      [h2, 'bench-n2'],
    ]);
    const member = (taskId: string, service: string, k: number, host: TestHost): Member => ({ taskId, service, ip: `${SUBNET}.${k}`, host, nodeId: nodeOf.get(host)! });
    const endpoints = [member('w1', 'web', 11, h1), member('w2', 'web', 12, h1), member('w3', 'web', 13, h1)];
    const client = member('c0', 'client', 20, h2);
    let members = [...endpoints, client];
    const overlay = new Map<TestHost, OverlayNetworking>();
    for (const h of [h1, h2]) {
      const logger = createLogger({ format: 'human', level: 'warn', component: `overlay ${nodeOf.get(h)}` });
      const o = new OverlayNetworking({ nodeId: nodeOf.get(h)!, stateDir: h.stateDir, hostNetns: h.nsPath, underlayAddr: h.addr, dns: { upstreams: [] }, logger });
      overlays.push(o);
      overlay.set(h, o);
    }
    const push = (ms: Member[]) => Promise.all(overlays.map((o) => o.setState(withOne(stateOf(ms)))));
    await push(members);
    const ns = new Map<string, string>();
    for (const m of members) ns.set(m.taskId, (await overlay.get(m.host)!.attach(task(m))).netnsPath!);
    for (const e of endpoints) {
      const dir = join(www, e.taskId);
      await mkdir(dir);
      await writeFile(join(dir, 'index.html'), `hello from ${e.taskId}\n`);
      for (const port of PORTS) children.push(spawn('nsenter', [`--net=${ns.get(e.taskId)}`, 'busybox', 'httpd', '-f', '-p', String(port), '-h', dir], { stdio: 'ignore' }));
    }
    for (const e of endpoints) for (const port of PORTS) await waitListening(ns.get(e.taskId)!, port);
    const clientNs = ns.get('c0')!;
    if ((await endpointsIn(clientNs, VIP)) !== 3 || (await endpointsIn(clientNs, VIP1)) !== 1) throw new Error("the client's VIP table is not as pushed");

    console.log(`client ${client.ip} on host 2 → endpoints w1..w3 (${endpoints.map((e) => e.ip).join(', ')}) on host 1 over VXLAN; busybox httpd`);
    console.log(`${ROUNDS} rounds, ab -c ${CONCURRENCY} for ${SECONDS} s per path (HTTP/1.0, a connection per request): direct = w1's address, vip1 = ${VIP1} (w1 only), vip = ${VIP} (w1..w3), ports ${PORTS.join('/')}`);
    // A port per path: a DNATed connection's reply tuple (w1:port → client:sport) must not clash
    // with a direct one's in the client's conntrack table (TIME_WAIT entries live 120 s), or the
    // clashing SYN is dropped and retried a second later.
    const paths = { direct: `${endpoints[0].ip}:${PORTS[0]}`, vip1: `${VIP1}:${PORTS[1]}`, vip: `${VIP}:${PORTS[2]}` } as const;
    type Path = keyof typeof paths;
    const names = Object.keys(paths) as Path[];
    const rps: Record<Path, number[]> = { direct: [], vip1: [], vip: [] };
    await ab(clientNs, paths.vip); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]);
      for (const p of order) rps[p].push(await ab(clientNs, paths[p]));
      console.log(`round ${r + 1}  ${names.map((p) => `${p} ${rps[p][r].toFixed(0)}/s`).join('   ')}`);
    }
    const ratio = (p: Path) => rps[p].map((x, i) => x / rps.direct[i]);
    console.log('');
    console.log('| path | requests/s median (rounds) | per-round ratio to direct |');
    console.log('|---|---|---|');
    for (const p of names) console.log(`| ${p} | ${median(rps[p]).toFixed(0)} (${rps[p].map((x) => x.toFixed(0)).join(', ')}) | ${ratio(p).map((x) => x.toFixed(2)).join(', ')} |`);
    console.log(`vip1/direct requests (one endpoint: the DNAT alone): ${median(ratio('vip1')).toFixed(2)}`);

    // Programming latency: more local client tasks on host 2, then sets that change every table.
    const o2 = overlay.get(h2)!;
    const latency: string[] = [];
    let next = 100;
    for (const k of LOCAL_TASKS) {
      const added = Array.from({ length: Math.max(0, k - members.filter((m) => m.host === h2).length) }, () => member(`c${next}`, 'client', next++, h2));
      members = [...members, ...added];
      await push(members);
      for (const m of added) ns.set(m.taskId, (await o2.attach(task(m))).netnsPath!);
      const locals = members.filter((m) => m.host === h2);
      const ms: number[] = [];
      const before = o2.programming().length;
      for (let i = 0; i < PUSHES; i++) {
        // Alternately: w2 not ready, then back with a fourth endpoint w4, then back to w1..w3.
        const step = i % 3;
        const web = endpoints.map((e) => (step === 0 && e.taskId === 'w2' ? { ...e, ready: false } : e));
        const set = [...web, ...(step === 1 ? [member('w4', 'web', 14, h1)] : []), ...members.filter((m) => m.service === 'client')];
        const t0 = performance.now();
        await o2.setState(withOne(stateOf(set)));
        ms.push(performance.now() - t0);
        const expect = step === 0 ? 2 : step === 1 ? 4 : 3;
        const probe = locals[i % locals.length];
        const got = await endpointsIn(ns.get(probe.taskId)!, VIP);
        if (got !== expect) throw new Error(`push ${i + 1}: ${probe.taskId}'s table has ${got} endpoints, not ${expect} (${JSON.stringify(o2.programming().at(-1))})`);
        await sleep(50);
      }
      const recorded = o2.programming().slice(before);
      if (recorded.some((p) => p.vipTables !== locals.length || p.failed)) throw new Error(`not every table reloaded once per set: ${JSON.stringify(recorded.slice(0, 3))}`);
      const line = `${locals.length} local tasks: set → rules in every table p50 ${median(ms).toFixed(0)} ms, p99 ${quantile(ms, 0.99).toFixed(0)} ms, max ${Math.max(...ms).toFixed(0)} ms (${PUSHES} sets; agent's own record p50 ${median(recorded.map((p) => p.ms)).toFixed(0)} ms)`;
      latency.push(line);
      console.log(line);
    }
    console.log('');
    console.log(`endpoint programming latency: ${latency.map((l) => l.replace(/ \(.*$/, '')).join('; ')}`);
    console.log(`vip/direct requests: ${median(ratio('vip')).toFixed(2)}`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(`bench:lb: ${describeError(err)}`);
  process.exit(1);
});
