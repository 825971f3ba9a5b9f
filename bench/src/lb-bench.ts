/**
 * VIP load balancing: HTTP requests per second through a service's VIP against requests straight
 * to one task's address, from the same client in the same run; and how long a pushed set takes to
 * reach the kernel (every local task's VIP table).
 *
 * Two netns hosts (and a third, the mesh's client) on an underlay bridge, the overlay programmed by the agent's OverlayNetworking
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
 * The routing mesh, in the same rounds: both hosts are on an ingress network (each with its node
 * address, the other's as a peer without task), host 1 runs task m1 of service `pub` (httpd :80,
 * published in ingress mode as PUBLISHED). A client on a third underlay netns (no agent) runs
 * `ab` against `mesh` (host 2's underlay address:PUBLISHED: host 2 has no task of pub, so its
 * mesh table DNATs to m1 over VXLAN and SNATs to host 2's node address) and `m1` (m1's address,
 * :80, routed by host 1: the bench adds that route on the client and, as the overlay's isolation
 * refuses new connections into an overlay bridge from elsewhere, one accept rule for exactly that
 * client → m1:80 at the top of host 1's overlay forward chain). Ends with `mesh/direct requests:`
 * the median of the per-round mesh/m1 ratios.
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
import { EndpointSpec_ResolutionMode, PortConfig_Protocol, PortConfig_PublishMode, type NetworkPeer, type NetworkState, type NetworkStateSet, type Task } from '@swarmd/proto';
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
/** The ingress network (the routing mesh) and the port `pub` publishes on it (m1's httpd :80). */
const INGRESS = '10.90.0';
const PUBLISHED = 8080;

interface Member {
  taskId: string;
  service: string;
  ip: string;
  host: TestHost;
  nodeId: string;
  ready?: boolean;
}

const peer = (m: Member): NetworkPeer => ({
  taskId: m.taskId,
  taskName: m.taskId ? `${m.service}.1.${m.taskId}` : '',
  hostname: '',
  serviceId: m.service ? `svc-${m.service}` : '',
  serviceName: m.service,
  address: `${m.ip}/24`,
  nodeId: m.nodeId,
  nodeAddr: m.host.addr,
  ready: m.ready ?? true,
  aliases: [],
  canary: false,
});

function stateOf(members: Member[]): NetworkStateSet {
  const svc = (name: string, vip: string) => ({ serviceId: `svc-${name}`, name, mode: EndpointSpec_ResolutionMode.VIP, vip: `${vip}/24`, ports: [], aliases: [], canaryWeight: 0 });
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
        services: [...n.services, { serviceId: 'svc-one', name: 'one', mode: EndpointSpec_ResolutionMode.VIP, vip: `${VIP1}/24`, ports: [], aliases: [], canaryWeight: 0 }],
      },
    ],
  };
};

/**
 * The ingress network as one host gets it: its own node address; peers: task m1 and both nodes'
 * addresses (empty taskId: FDB/neighbour entries, no endpoint); service pub publishes :80 as PUBLISHED.
 */
function ingressState(nodes: Member[], m1: Member, self: string): NetworkState {
  const net = benchNetwork('ingress', 4344, INGRESS);
  return {
    network: { ...net, spec: { ...net.spec!, ingress: true } },
    peers: [m1, ...nodes].map(peer),
    services: [
      {
        serviceId: 'svc-pub',
        name: 'pub',
        mode: EndpointSpec_ResolutionMode.VIP,
        vip: `${INGRESS}.4/24`,
        ports: [{ name: '', protocol: PortConfig_Protocol.TCP, targetPort: 80, publishedPort: PUBLISHED, publishMode: PortConfig_PublishMode.INGRESS }],
        aliases: [],
        canaryWeight: 0,
      },
    ],
    nodeAddress: `${nodes.find((n) => n.nodeId === self)!.ip}/24`,
  };
}

const task = (m: Member, networkId = 'lb'): Task => ({ id: m.taskId, serviceId: `svc-${m.service}`, networks: [{ networkId, addresses: [`${m.ip}/24`], aliases: [] }] }) as unknown as Task;
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
    hosts = await createHosts(3);
    const [h1, h2, h3] = hosts.hosts;
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
    // The routing mesh: both hosts' node addresses on the ingress network, m1 on host 1.
    const nodes = [h1, h2].map((h, i): Member => ({ taskId: '', service: '', ip: `${INGRESS}.${i + 2}`, host: h, nodeId: nodeOf.get(h)! }));
    const m1: Member = { taskId: 'm1', service: 'pub', ip: `${INGRESS}.21`, host: h1, nodeId: nodeOf.get(h1)! };
    /** Pushes a set (with the ingress network as that host gets it) to one host. */
    const setFor = (h: TestHost, s: NetworkStateSet) => overlay.get(h)!.setState({ networks: [...s.networks, ingressState(nodes, m1, nodeOf.get(h)!)] });
    const push = (ms: Member[]) => Promise.all([h1, h2].map((h) => setFor(h, withOne(stateOf(ms)))));
    await push(members);
    const ns = new Map<string, string>();
    for (const m of members) ns.set(m.taskId, (await overlay.get(m.host)!.attach(task(m))).netnsPath!);
    ns.set(m1.taskId, (await overlay.get(h1)!.attach(task(m1, 'ingress'))).netnsPath!);
    for (const e of endpoints) {
      const dir = join(www, e.taskId);
      await mkdir(dir);
      await writeFile(join(dir, 'index.html'), `hello from ${e.taskId}\n`);
      for (const port of PORTS) children.push(spawn('nsenter', [`--net=${ns.get(e.taskId)}`, 'busybox', 'httpd', '-f', '-p', String(port), '-h', dir], { stdio: 'ignore' }));
    }
    for (const e of endpoints) for (const port of PORTS) await waitListening(ns.get(e.taskId)!, port);
    {
      const dir = join(www, m1.taskId);
      await mkdir(dir);
      await writeFile(join(dir, 'index.html'), `hello from ${m1.taskId}\n`);
      children.push(spawn('nsenter', [`--net=${ns.get(m1.taskId)}`, 'busybox', 'httpd', '-f', '-p', '80', '-h', dir], { stdio: 'ignore' }));
      await waitListening(ns.get(m1.taskId)!, 80);
    }
    // The underlay client (host 3, no agent): m1's subnet via host 1, and host 1 lets exactly that
    // client reach m1:80 (the overlay admits only replies and DNATed connections into its bridges).
    await h3.exec('ip', ['route', 'add', `${INGRESS}.0/24`, 'via', h1.addr]);
    await h1.exec(NFT, ['insert', 'rule', 'ip', 'swarmd_overlay', 'forward', 'ip', 'saddr', h3.addr, 'ip', 'daddr', m1.ip, 'tcp', 'dport', '80', 'accept']);
    const meshTable = (await h2.exec(NFT, ['list', 'table', 'ip', 'swarmd_ingress'])).stdout;
    if (!meshTable.includes(`dnat to ${m1.ip}:80`)) throw new Error(`host 2's mesh table does not forward :${PUBLISHED} to m1:\n${meshTable}`);
    for (const [name, target] of [
      ['m1', `${m1.ip}:80`],
      ['mesh', `${h2.addr}:${PUBLISHED}`],
    ]) {
      const got = await h3.exec('curl', ['-sS', '--max-time', '3', `http://${target}/`], { okCodes: [0, 7, 28, 52, 56] });
      if (!got.stdout.includes('hello from m1')) throw new Error(`${name}: no answer from m1 through ${target} (${got.stderr.trim() || `exit ${got.code}`})`);
    }
    const clientNs = ns.get('c0')!;
    if ((await endpointsIn(clientNs, VIP)) !== 3 || (await endpointsIn(clientNs, VIP1)) !== 1) throw new Error("the client's VIP table is not as pushed");

    console.log(`client ${client.ip} on host 2 → endpoints w1..w3 (${endpoints.map((e) => e.ip).join(', ')}) on host 1 over VXLAN; busybox httpd`);
    console.log(`${ROUNDS} rounds, ab -c ${CONCURRENCY} for ${SECONDS} s per path (HTTP/1.0, a connection per request): direct = w1's address, vip1 = ${VIP1} (w1 only), vip = ${VIP} (w1..w3), ports ${PORTS.join('/')}`);
    // A port per path: a DNATed connection's reply tuple (w1:port → client:sport) must not clash
    // with a direct one's in the client's conntrack table (TIME_WAIT entries live 120 s), or the
    // clashing SYN is dropped and retried a second later.
    // m1 and mesh: from the underlay client on host 3.
    const paths = {
      direct: [clientNs, `${endpoints[0].ip}:${PORTS[0]}`],
      vip1: [clientNs, `${VIP1}:${PORTS[1]}`],
      vip: [clientNs, `${VIP}:${PORTS[2]}`],
      m1: [h3.nsPath, `${m1.ip}:80`],
      mesh: [h3.nsPath, `${h2.addr}:${PUBLISHED}`],
    } as const;
    type Path = keyof typeof paths;
    const names = Object.keys(paths) as Path[];
    const rps: Record<Path, number[]> = { direct: [], vip1: [], vip: [], m1: [], mesh: [] };
    console.log(`mesh: underlay client ${h3.addr} (host 3) → host 2 ${h2.addr}:${PUBLISHED} (no task of pub) → m1 ${m1.ip}:80 on host 1; m1 = the same client straight to m1:80, routed by host 1`);
    await ab(...paths.vip); // warm-up
    await ab(...paths.mesh);
    for (let r = 0; r < ROUNDS; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]);
      for (const p of order) rps[p].push(await ab(paths[p][0], paths[p][1]));
      console.log(`round ${r + 1}  ${names.map((p) => `${p} ${rps[p][r].toFixed(0)}/s`).join('   ')}`);
    }
    const ratio = (p: Path, base: Path = 'direct') => rps[p].map((x, i) => x / rps[base][i]);
    console.log('');
    console.log('| path | requests/s median (rounds) | per-round ratio to direct |');
    console.log('|---|---|---|');
    for (const p of names) {
      const base = p === 'mesh' || p === 'm1' ? 'm1' : 'direct';
      console.log(`| ${p} | ${median(rps[p]).toFixed(0)} (${rps[p].map((x) => x.toFixed(0)).join(', ')}) | ${ratio(p, base).map((x) => x.toFixed(2)).join(', ')}${base === 'm1' ? ' (to m1)' : ''} |`);
    }
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
        await setFor(h2, withOne(stateOf(set)));
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
    console.log(`mesh/direct requests: ${median(ratio('mesh', 'm1')).toFixed(2)}`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(`bench:lb: ${describeError(err)}`);
  process.exit(1);
});
