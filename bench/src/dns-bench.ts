/**
 * DNS propagation after scaling, against Docker Swarm in the same run: the time from a scale
 * request's answer (`service scale web=N`; ours the Control API's UpdateService, Docker the Engine
 * API's service update: what `service scale --detach` sends) until every host's resolver answers
 * `tasks.web` with exactly the addresses of the service's running tasks.
 *
 * Ours: `local up --managers 1 --workers 2` (10.254.63.0/24), an overlay network (10.254.65.0/24),
 * `web` (BENCH_LOW replicas) and a global `probe` service on it. Docker: a one-node swarm of a
 * private dockerd (lib/docker-swarm.ts: no change to the host's firewall), an attachable overlay
 * network, `web` (--endpoint-mode dnsrr: no IPVS, which this kernel lacks; `tasks.web` is the same
 * in both modes) and a `probe` container on it. The same image on both (the cluster's demo image,
 * pulled by dockerd from the cluster's registry), --stop-grace-period 1s on both.
 *
 * Each probe is polled by one `nsenter -t PID -m -n -- sh -c 'while :; do nslookup -type=a
 * tasks.web; echo MARK; usleep BENCH_POLL_MS*1000; done'` (the image's busybox, the container's
 * resolv.conf: our gateway resolver, Docker's 127.0.0.11); an answer is timed when its MARK line
 * reaches the bench. A round's figure is the latest, over the probes, of the first answer of the
 * final unbroken run of answers equal to the running set (read from the API of each side) after
 * the scale request. BENCH_ROUNDS rounds of BENCH_LOW→BENCH_HIGH and back (10, 2→6), ours and
 * Docker's alternating (who goes first swaps each round), after one unmeasured warm-up each.
 *
 *   npm run bench:dns       (root; BENCH_ROUNDS=10 BENCH_LOW=2 BENCH_HIGH=6 BENCH_POLL_MS=20)
 *
 * Everything is removed at the end, on error and on SIGINT/SIGTERM. The last line is
 * `dns propagation ours/docker-swarm: R`: our p50 / Docker's p50 per direction, the larger of the
 * two (pooled, the p50 of 2N rounds falls between the directions' figures; printed too).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TaskState, type Task } from '@swarmd/proto';
import { mustFindDocker, type Dockerd } from '@swarmd/testkit/dockerd';
import { startDockerSwarm } from './lib/docker-swarm.js';
import { Cleanups, max, now, p50, runBench, until, upCluster, type Ctl, type LocalCluster } from './lib/local-cluster.js';

const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 10);
const LOW = Number(env.BENCH_LOW ?? 2);
const HIGH = Number(env.BENCH_HIGH ?? 6);
const POLL_MS = Number(env.BENCH_POLL_MS ?? 20);
const ROUND_TIMEOUT_MS = 90_000;
/** How long the answers must stay right before a round ends (the last ones are checked). */
const HOLD_MS = 300;

const CLUSTER = { name: 'dnsb', subnet: '10.254.63.0/24' };
const NET = { name: 'dnsbench', ours: '10.254.65.0/24', docker: '10.254.66.0/24' };
// prettier-ignore
const DOCKER = { gwBridge: 'dnsbgw0', gwSubnet: '10.254.67.0/24', pool: '10.254.64.0/24', listen: '127.0.0.1:23763', dataPathPort: '47963', cgroupParent: '/swarmd-bench-dns-docker' };
const STOP_GRACE = ['--stop-grace-period', env.BENCH_STOP_GRACE ?? '1s'];
const MARK = '@@dns-bench@@';

let root = '';
const cleanups = new Cleanups();
const f2 = (x: number) => x.toFixed(2);

// ---- probes ----------------------------------------------------------------------------------

interface Probe {
  label: string;
  pid: number;
}

interface Answer {
  /** When its MARK line arrived (ms, monotonic). */
  t: number;
  /** The A records, sorted, comma-separated ('' for none or an error). */
  addrs: string;
}

/** `tasks.web` asked every POLL_MS from inside one probe container, every answer kept with its time. */
class Poller {
  readonly answers: Answer[] = [];
  private readonly child: ChildProcess;
  private buf = '';
  private block: string[] = [];

  constructor(readonly probe: Probe) {
    const loop = `while :; do nslookup -type=a tasks.web 2>&1; echo ${MARK}; usleep ${POLL_MS * 1000}; done`;
    this.child = spawn('nsenter', ['-t', String(probe.pid), '-m', '-n', '--', 'sh', '-c', loop], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child.stdout!.on('data', (d: Buffer) => this.take(d.toString()));
    this.child.on('error', () => undefined);
  }

  private take(text: string): void {
    const t = now();
    const lines = (this.buf + text).split('\n');
    this.buf = lines.pop()!;
    for (const l of lines) {
      if (l !== MARK) {
        this.block.push(l);
        continue;
      }
      // "Address: 10.0.0.3" under a "Name:" line; the server's own line carries a port (ADDR:53).
      const addrs = this.block.map((x) => /^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$/.exec(x)?.[1]).filter((x): x is string => !!x);
      this.answers.push({ t, addrs: addrs.sort().join(',') });
      this.block = [];
    }
  }

  get last(): Answer | undefined {
    return this.answers.at(-1);
  }

  /** The first answer of the final unbroken run equal to `want` (undefined when the last is not). */
  settledAt(want: string): Answer | undefined {
    let i = this.answers.length;
    while (i > 0 && this.answers[i - 1].addrs === want) i--;
    return i < this.answers.length ? this.answers[i] : undefined;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

// ---- the two sides ---------------------------------------------------------------------------

interface Side {
  name: string;
  probes: Probe[];
  /** Asks for `replicas`; the time the request was answered. */
  scale(replicas: number): Promise<number>;
  /** The addresses of web's running tasks (desired running), sorted. */
  running(): Promise<string[]>;
  /** Resolves once exactly `replicas` containers of web are alive (none still stopping). */
  quiesce(replicas: number): Promise<void>;
}

const ip = (cidr: string) => cidr.split('/')[0];
const isRunning = (t: Task) => t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING;

async function ours(c: LocalCluster, ctl: Ctl, image: string): Promise<Side> {
  await c.must(['network', 'create', '--subnet', NET.ours, NET.name]);
  const netId = (JSON.parse(await c.must(['network', 'inspect', NET.name, '--format', 'json'])) as { id: string }[])[0].id;
  const created = async (args: string[]) => (await c.must(['service', 'create', '--network', NET.name, ...STOP_GRACE, '--timeout', '120s', ...args, image])).trim().split('\n').pop()!;
  const web = await created(['--name', 'web', '--replicas', String(LOW)]);
  const probe = await created(['--name', 'probe', '--mode', 'global']);
  const nodes = await ctl.listNodes();
  const probes = (await ctl.listTasks([probe])).filter(isRunning).map((t) => ({
    label: nodes.find((n) => n.id === t.nodeId)?.description?.hostname ?? t.nodeId,
    pid: t.status?.container?.pid ?? 0,
  }));
  if (probes.length !== nodes.length || probes.some((p) => !p.pid)) throw new Error(`expected a running probe with a pid on each of ${nodes.length} hosts: ${JSON.stringify(probes)}`);
  return {
    name: 'ours',
    probes,
    async scale(replicas) {
      const s = await ctl.getService(web);
      const spec = structuredClone(s.spec!);
      spec.mode = { $case: 'replicated', replicated: { replicas } };
      await ctl.updateService(web, s.meta?.version ?? 0, spec);
      return now();
    },
    async running() {
      const ts = (await ctl.listTasks([web], 2_000)).filter(isRunning);
      return ts.flatMap((t) => t.networks.filter((n) => n.networkId === netId).map((n) => ip(n.addresses[0]))).sort();
    },
    async quiesce(replicas) {
      await until(`${replicas} tasks of our web alive, none stopping`, 60_000, async () => {
        const alive = (await ctl.listTasks([web], 2_000)).filter((t) => (t.status?.state ?? 0) <= TaskState.TASK_STATE_RUNNING);
        return alive.length === replicas && alive.every(isRunning) ? true : undefined;
      });
    },
  };
}

interface DockerService {
  ID: string;
  Version: { Index: number };
  Spec: { Mode: { Replicated?: { Replicas: number } } };
}

interface DockerTask {
  Status?: { State?: string };
  NetworksAttachments?: { Network?: { Spec?: { Name?: string } }; Addresses?: string[] }[];
}

async function docker(d: Dockerd, image: string): Promise<Side> {
  await d.cli(['network', 'create', '--driver', 'overlay', '--attachable', '--subnet', NET.docker, NET.name]);
  await d.cli(['run', '-d', '--name', 'probe', '--network', NET.name, image]);
  await d.cli(['service', 'create', '--detach', '--quiet', '--name', 'web', '--replicas', String(LOW), '--network', NET.name, '--endpoint-mode', 'dnsrr', ...STOP_GRACE, image]);
  const pid = (await d.api<{ State: { Pid: number } }>('/containers/probe/json')).State.Pid;
  const webContainers = `/containers/json?filters=${encodeURIComponent(JSON.stringify({ label: ['com.docker.swarm.service.name=web'] }))}`;
  const tasks = `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: ['web'], 'desired-state': ['running'] }))}`;
  const side: Side = {
    name: 'docker swarm',
    probes: [{ label: 'dockerd (1 node)', pid }],
    async scale(replicas) {
      const s = await d.api<DockerService>('/services/web');
      s.Spec.Mode = { Replicated: { Replicas: replicas } };
      await d.api(`/services/${s.ID}/update?version=${s.Version.Index}`, 10_000, s.Spec);
      return now();
    },
    async running() {
      const ts = (await d.api<DockerTask[]>(tasks, 2_000)).filter((t) => t.Status?.State === 'running');
      return ts.flatMap((t) => (t.NetworksAttachments ?? []).filter((a) => a.Network?.Spec?.Name === NET.name).map((a) => ip(a.Addresses?.[0] ?? ''))).sort();
    },
    async quiesce(replicas) {
      await until(`${replicas} containers of docker's web running, none stopping`, 60_000, async () => {
        const [cs, running] = await Promise.all([d.api<unknown[]>(webContainers, 2_000), side.running()]);
        return cs.length === replicas && running.length === replicas ? true : undefined;
      });
    },
  };
  await side.quiesce(LOW);
  return side;
}

// ---- a round ---------------------------------------------------------------------------------

interface Measured {
  s: number;
  /** Per probe, seconds. */
  probes: number[];
  /** Milliseconds between a probe's answers (all of them, for the poll's resolution). */
  gaps: number[];
  /** Seconds until the API first listed the new running set (polled every 50 ms). */
  listedS: number;
}

/** Scales web to `replicas` and times until every probe's answers settle on the running set. */
async function measure(side: Side, replicas: number): Promise<Measured> {
  const pollers = side.probes.map((p) => new Poller(p));
  try {
    await until(`a first answer from every probe of ${side.name}`, 10_000, async () => (pollers.every((p) => p.last) ? true : undefined), 10);
    const t0 = await side.scale(replicas);
    let want = '';
    let seen = '';
    let listedAt: number | undefined;
    const settled = await until(
      () => `${side.name}: tasks.web = the ${replicas} running tasks on every probe (last seen: ${seen})`,
      ROUND_TIMEOUT_MS,
      async () => {
        const run = await side.running();
        if (run.length === replicas && run.join(',') !== want) listedAt = now();
        want = run.join(',');
        seen = `running ${want || 'none'}; answers ${pollers.map((p) => `${p.probe.label}: ${p.last?.addrs || 'none'}`).join('; ')}`;
        if (run.length !== replicas || !pollers.every((p) => p.last && p.last.t > t0 && p.last.addrs === want)) return undefined;
        await sleep(HOLD_MS);
        const at = pollers.map((p) => p.settledAt(want));
        return at.every((a) => a && a.t > t0) ? at.map((a) => (a!.t - t0) / 1000) : undefined;
      },
      50,
    );
    const gaps = pollers.flatMap((p) => p.answers.slice(1).map((a, i) => a.t - p.answers[i].t));
    return { s: max(settled), probes: settled, gaps, listedS: ((listedAt ?? now()) - t0) / 1000 };
  } finally {
    for (const p of pollers) p.stop();
  }
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:dns makes network namespaces and runs dockerd: run it as root');
  const bin = mustFindDocker();
  root = await mkdtemp(join(tmpdir(), 'swarm-dns-bench-'));
  cleanups.add('root', () => rm(root, { recursive: true, force: true }));
  console.log(`dns bench: ${ROUNDS} rounds of web ${LOW}→${HIGH}→${LOW}, probes polled every ${POLL_MS} ms, state under ${root}`);

  const c = await upCluster(cleanups, root, CLUSTER.name, CLUSTER.subnet, 1, 2);
  const st = await c.state();
  const image = `${st.gateway}:5000/demo/web:latest`;
  // prettier-ignore
  const d = await startDockerSwarm(bin, { dir: join(root, 'docker'), cgroupParent: DOCKER.cgroupParent, gwBridge: DOCKER.gwBridge, gwSubnet: DOCKER.gwSubnet,
    listen: DOCKER.listen, dataPathPort: DOCKER.dataPathPort, registry: `${st.gateway}:5000`,
    initArgs: ['--default-addr-pool', DOCKER.pool, '--default-addr-pool-mask-length', '24'] }, cleanups);
  const ctl = await c.control();
  cleanups.add('control client', async () => ctl.close());

  const sides = [await ours(c, ctl, image), await docker(d, image)];
  const version = (await d.cli(['version', '--format', '{{.Server.Version}}'])).stdout.trim();
  console.log(`ours: local cluster ${c.name} (1 manager + 2 workers), probes on ${sides[0].probes.map((p) => p.label).join(', ')}; docker: dockerd ${version}, one node`);

  const results = new Map(sides.map((s) => [s.name, { up: [] as Measured[], down: [] as Measured[] }]));
  const step = async (side: Side, replicas: number, record: boolean): Promise<string> => {
    const m = await measure(side, replicas);
    if (record) results.get(side.name)![replicas === HIGH ? 'up' : 'down'].push(m);
    await side.quiesce(replicas);
    await sleep(500);
    const per = m.probes.length > 1 ? `probes ${m.probes.map(f2).join(' / ')}; ` : '';
    return `${side.name} ${f2(m.s)} s (${per}listed running ${f2(m.listedS)} s)`;
  };
  const warm: string[] = [];
  for (const s of sides) warm.push(`${await step(s, HIGH, false)}, ${await step(s, LOW, false)}`);
  console.log(`  warm-up (not counted): ${warm.join('; ')}`);
  for (let i = 1; i <= ROUNDS; i++) {
    const order = i % 2 ? sides : [...sides].reverse();
    for (const replicas of [HIGH, LOW]) {
      const line: string[] = [];
      for (const s of order) line.push(await step(s, replicas, true));
      console.log(`  round ${i} ${replicas === HIGH ? `up ${LOW}→${HIGH}` : `down ${HIGH}→${LOW}`}: ${line.join(', ')}`);
    }
  }

  console.log('\nsummary (seconds from the scale answer to every probe answering the running set; "listed": the API lists that set running):');
  const secs = (ms: Measured[]) => ms.map((m) => m.s);
  const fig = (ms: Measured[]) => `p50 ${f2(p50(secs(ms)))} s, max ${f2(max(secs(ms)))} s (listed p50 ${f2(p50(ms.map((m) => m.listedS)))} s)`;
  for (const s of sides) {
    const r = results.get(s.name)!;
    const gaps = [...r.up, ...r.down].flatMap((m) => m.gaps);
    console.log(`${s.name.padEnd(13)} up ${LOW}→${HIGH}: ${fig(r.up)};  down ${HIGH}→${LOW}: ${fig(r.down)};  a probe answers every ${p50(gaps).toFixed(0)} ms (p50)`);
  }
  const [o, k] = sides.map((s) => results.get(s.name)!);
  const ratio = (a: Measured[], b: Measured[]) => p50(secs(a)) / p50(secs(b));
  const up = ratio(o.up, k.up);
  const down = ratio(o.down, k.down);
  const pooled = ratio([...o.up, ...o.down], [...k.up, ...k.down]);
  // The pooled p50 falls between the two directions' figures: R is the worse direction's ratio.
  const rr = Math.max(up, down);
  console.log(`R (p50 ours / p50 docker): up ${f2(up)}, down ${f2(down)} (all rounds pooled: ${f2(pooled)}); R = the larger; aim R ≤ 0.25: ${rr <= 0.25 ? 'met' : 'not met'}`);
  console.log(`  docker is one node (no gossip between hosts), ours 1 manager + 2 workers`);
  console.log(`dns propagation ours/docker-swarm: ${f2(rr)}`);
}

await runBench('dns bench', main, () => cleanups.all());
