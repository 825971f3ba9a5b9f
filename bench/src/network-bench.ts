/**
 * Overlay network throughput and TCP connect latency: two netns hosts on an underlay bridge, the
 * overlay programmed by the agent's OverlayNetworking (bridge + vxlan per host, static peers from
 * a NetworkStateSet), a task netns per host attached by it; Debian's iperf3 between the two task
 * netns (over VXLAN) beside iperf3 between the two hosts themselves (the underlay), in the same
 * run, rounds alternating which goes first; TCP connects timed the same way on both paths. The
 * machine is shared and its load drifts within seconds, so R is the median of the per-round
 * ratios (each round's two figures were taken back to back); the ratio of the medians is printed
 * too. Ends with `overlay/underlay throughput: R`.
 *
 *   npm run bench:network        (root; BENCH_ROUNDS=6 BENCH_SECONDS=4 BENCH_CONNECTS=300)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { run, describeError } from '@swarmd/common';
import { EndpointSpec_ResolutionMode, type NetworkStateSet, type Task } from '@swarmd/proto';
import { createHosts, type TestHosts } from '@swarmd/testkit/hosts';
import { OverlayNetworking } from '@swarmd/node-agent';
import { benchNetwork, median, preflight, quantile, waitListening } from './lib/overlay.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 300);
const IPERF_PORT = 5201;
const ACCEPT_PORT = 7001;
const SUBNET = '10.88.0';

function stateOf(nodes: { nodeId: string; addr: string; taskId: string; ip: string }[]): NetworkStateSet {
  return {
    networks: [
      {
        network: benchNetwork('bench', 4242, SUBNET),
        peers: nodes.map((n) => ({ taskId: n.taskId, taskName: `bench.1.${n.taskId}`, hostname: '', serviceId: 'svc', serviceName: 'bench', address: `${n.ip}/24`, nodeId: n.nodeId, nodeAddr: n.addr, ready: true, aliases: [], canary: false })),
        services: [{ serviceId: 'svc', name: 'bench', mode: EndpointSpec_ResolutionMode.DNSRR, vip: '', ports: [], aliases: [], canaryWeight: 0 }],
        nodeAddress: '',
      },
    ],
  };
}

const task = (id: string, ip: string): Task =>
  ({ id, serviceId: 'svc', networks: [{ networkId: 'bench', addresses: [`${ip}/24`], aliases: [] }] }) as unknown as Task;

const inNs = (ns: string, cmd: string, args: string[]) => run('nsenter', [`--net=${ns}`, cmd, ...args], { timeoutMs: (SECONDS + 30) * 1000 });

/** A background server in a netns, stopped at the end. */
function serve(ns: string, cmd: string, args: string[], children: ChildProcess[]): void {
  const c = spawn('nsenter', [`--net=${ns}`, cmd, ...args], { stdio: 'ignore' });
  children.push(c);
}

async function iperf(clientNs: string, server: string): Promise<number> {
  const r = await inNs(clientNs, 'iperf3', ['-c', server, '-p', String(IPERF_PORT), '-t', String(SECONDS), '-J']);
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

/** TCP connect times (ms) from a node process in the client netns: warm-up, then CONNECTS in a row. */
async function connects(clientNs: string, server: string): Promise<number[]> {
  const script = `
    const net = require('net');
    const one = () => new Promise((res, rej) => { const t0 = process.hrtime.bigint(); const c = net.connect(${ACCEPT_PORT}, '${server}');
      c.on('connect', () => { const ms = Number(process.hrtime.bigint() - t0) / 1e6; c.destroy(); res(ms); }); c.on('error', rej); });
    (async () => { for (let i = 0; i < 20; i++) await one(); const out = []; for (let i = 0; i < ${CONNECTS}; i++) out.push(await one()); console.log(JSON.stringify(out)); })()
      .catch((e) => { console.error(e.message); process.exit(1); });`;
  const r = await inNs(clientNs, process.execPath, ['-e', script]);
  return JSON.parse(r.stdout) as number[];
}

async function main(): Promise<void> {
  await preflight('bench:network', 'iperf3', ['--version'], 'iperf3');
  const children: ChildProcess[] = [];
  let hosts: TestHosts | undefined;
  const overlays: OverlayNetworking[] = [];
  const cleanup = async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const o of overlays) await o.destroy().catch(() => undefined);
    await hosts?.destroy();
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    hosts = await createHosts(2);
    const [h1, h2] = hosts.hosts;
    const nodes = [
      { nodeId: 'bench-n1', addr: h1.addr, taskId: 't1', ip: `${SUBNET}.2`, host: h1 },
      { nodeId: 'bench-n2', addr: h2.addr, taskId: 't2', ip: `${SUBNET}.3`, host: h2 },
    ];
    const set = stateOf(nodes);
    const tns: string[] = [];
    for (const n of nodes) {
      const o = new OverlayNetworking({ nodeId: n.nodeId, stateDir: n.host.stateDir, hostNetns: n.host.nsPath, underlayAddr: n.addr, dns: { upstreams: [] } });
      overlays.push(o);
      await o.setState(set);
      tns.push((await o.attach(task(n.taskId, n.ip))).netnsPath!);
    }
    // Not /sys/class/net: nsenter --net keeps the root namespace's sysfs.
    const mtu = (ns: string, dev: string) => inNs(ns, 'ip', ['-o', 'link', 'show', 'dev', dev]).then((r) => /mtu (\d+)/.exec(r.stdout)?.[1] ?? '?');
    console.log(`underlay ${h1.addr} → ${h2.addr} (veth mtu ${await mtu(h1.nsPath, 'eth0')}); overlay ${nodes[0].ip} → ${nodes[1].ip} (vxlan 4242, mtu ${await mtu(tns[0], 'eth0')})`);
    console.log(`${ROUNDS} rounds, iperf3 ${SECONDS} s each way, ${CONNECTS} TCP connects per path and round`);

    // Servers on host 1 (underlay) and in task 1's netns (overlay); clients on host 2 / in task 2.
    for (const ns of [h1.nsPath, tns[0]]) {
      serve(ns, 'iperf3', ['-s', '-p', String(IPERF_PORT)], children);
      serve(ns, process.execPath, ['-e', `require('net').createServer((s) => s.destroy()).listen(${ACCEPT_PORT})`], children);
    }
    for (const ns of [h1.nsPath, tns[0]]) for (const p of [IPERF_PORT, ACCEPT_PORT]) await waitListening(ns, p);

    const paths = { underlay: { client: h2.nsPath, server: h1.addr }, overlay: { client: tns[1], server: nodes[0].ip } };
    const gbps: Record<'underlay' | 'overlay', number[]> = { underlay: [], overlay: [] };
    const conn: Record<'underlay' | 'overlay', number[]> = { underlay: [], overlay: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const order: ('underlay' | 'overlay')[] = r % 2 ? ['overlay', 'underlay'] : ['underlay', 'overlay'];
      for (const p of order) {
        const g = await iperf(paths[p].client, paths[p].server);
        gbps[p].push(g);
        const c = await connects(paths[p].client, paths[p].server);
        conn[p].push(...c);
        console.log(`round ${r + 1} ${p.padEnd(8)} ${g.toFixed(2)} Gbit/s   connect p50 ${median(c).toFixed(3)} ms`);
      }
    }
    console.log('');
    console.log('| path | throughput median (rounds) | TCP connect p50 / p99 |');
    console.log('|---|---|---|');
    for (const p of ['underlay', 'overlay'] as const) {
      console.log(`| ${p} | ${median(gbps[p]).toFixed(2)} Gbit/s (${gbps[p].map((g) => g.toFixed(2)).join(', ')}) | ${median(conn[p]).toFixed(3)} / ${quantile(conn[p], 0.99).toFixed(3)} ms |`);
    }
    const perRound = gbps.overlay.map((g, i) => g / gbps.underlay[i]);
    console.log(`per-round throughput ratios: ${perRound.map((r) => r.toFixed(2)).join(', ')}; ratio of the medians ${(median(gbps.overlay) / median(gbps.underlay)).toFixed(2)}`);
    console.log(`overlay/underlay connect latency (p50): ${(median(conn.overlay) / median(conn.underlay)).toFixed(2)}`);
    console.log(`overlay/underlay throughput: ${median(perRound).toFixed(2)}`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(`bench:network: ${describeError(err)}`);
  process.exit(1);
});
