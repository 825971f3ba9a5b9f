/**
 * Services on a local cluster (`swarmctl local up`), against Docker Swarm mode in the same run:
 *
 * 1. Convergence: `service create --replicas 50 IMAGE` until all 50 tasks RUNNING, on a one-host
 *    cluster (`local up --managers 1 --workers 0`), beside a one-node Docker swarm on a private
 *    dockerd (own data/exec root, socket, pidfile, cgroup parent; `swarm init` on 127.0.0.1).
 *    BENCH_ROUNDS rounds (5), alternating which side goes first, after one unmeasured 1-replica
 *    warm-up each; the service is removed between rounds. Ours: the CLI's own wait (it returns on
 *    convergence, from a task watch), then `service ps --format json` must show 50 RUNNING.
 *    Docker: `docker service create --detach`, then the Engine API's task list polled every 50 ms
 *    until 50 running (`--detach=false` would add its 5 s "verify" monitor). The same image on
 *    both: the cluster's demo image (busybox httpd) in its registry, which dockerd pulls from as
 *    an insecure registry (no outside network). Both give each task a bridge and an address:
 *    ours its per-host bridge, Docker a bridge this bench makes (dockerd --bridge) with
 *    --iptables=false, so dockerd changes nothing in the host's firewall (checked before and
 *    after) and our cluster keeps working beside it. BENCH_NETWORK=none: no network on either.
 * 2. Replacing a dead worker's tasks: `local up --managers 1 --workers 2` with the cluster's default
 *    heartbeat period (BENCH_HEARTBEAT=1s: `cluster update --heartbeat-period 1s` first), a
 *    service of 6 replicas, kill -9 one worker's swarmd (pid from cluster.json), time until 6
 *    tasks RUNNING again, none on the dead node; split at the first poll that sees the node DOWN.
 *    BENCH_KILL_ROUNDS rounds (5), then BENCH_CUT_ROUNDS (2) where the worker's underlay veth is
 *    set down instead (a silent death: no FIN reaches the manager). The host comes back (`local
 *    stop --kill`, `local start`) between rounds.
 * 3. Manager memory: a one-host cluster, idle VmRSS of its swarmd, then 10 services × 1,000
 *    replicas (--detach) with a constraint no node satisfies, so all 10,000 tasks stay pending in
 *    the store; VmRSS 10 s after they are all there, and at rest (BENCH_REST_S, 120 s, later).
 *
 *   npm run bench:converge       (root; BENCH_PARTS=1,2,3 picks parts)
 *
 * Clusters live under a temp SWARMD_LOCAL_ROOT with their own names and subnets (10.254.60-62.0/24;
 * Docker's bridges 10.254.68-69.0/24). Everything is removed at the end, on error and on
 * SIGINT/SIGTERM: `local down`, `docker swarm leave --force`, dockerd stopped, its dirs and links.
 * The last line is `converge ours/docker-swarm: R` (our p50 / Docker's p50).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { NodeState, TaskState, type Task } from '@swarmd/proto';
import { mustFindDocker, type DockerBinaries, type Dockerd } from '@swarmd/testkit/dockerd';
import { startDockerSwarm } from './lib/docker-swarm.js';
import { Cleanups, max, now, p50, rssMiB, runBench, until, upCluster, type Ctl, type LocalCluster } from './lib/local-cluster.js';

const env = process.env;
const PARTS = new Set((env.BENCH_PARTS ?? '1,2,3').split(',').map(Number));
const ROUNDS = Number(env.BENCH_ROUNDS ?? 5);
const REPLICAS = Number(env.BENCH_REPLICAS ?? 50);
const NETWORK = env.BENCH_NETWORK === 'none' ? 'none' : 'bridge';
const KILL_ROUNDS = Number(env.BENCH_KILL_ROUNDS ?? 5);
const KILL_REPLICAS = Number(env.BENCH_KILL_REPLICAS ?? 6);
/** `cluster update --heartbeat-period` before part 2; empty (the default): the cluster's own. */
const HEARTBEAT = env.BENCH_HEARTBEAT ?? '';
const CUT_ROUNDS = Number(env.BENCH_CUT_ROUNDS ?? 2);
const RSS_SERVICES = Number(env.BENCH_RSS_SERVICES ?? 10);
const RSS_REPLICAS = Number(env.BENCH_RSS_REPLICAS ?? 1000);
const SETTLE_MS = Number(env.BENCH_SETTLE_MS ?? 10_000);
const REST_S = Number(env.BENCH_REST_S ?? 120);

const SUBNETS = { converge: '10.254.60.0/24', kill: '10.254.61.0/24', rss: '10.254.62.0/24' };
const DOCKER = {
  bridge: 'cvbdk0',
  bridgeCidr: '10.254.69.1/24',
  gwBridge: 'cvbdkgw0',
  gwSubnet: '10.254.68.0/24',
  listen: '127.0.0.1:23760',
  dataPathPort: '47960',
  cgroupParent: '/swarmd-bench-converge-docker',
};
const RUNNING = 'TASK_STATE_RUNNING';
/** Only stops go faster with it (removal between rounds); on both sides. */
const STOP_GRACE = ['--stop-grace-period', '1s'];

let root = '';
const cleanups = new Cleanups();

const cluster = (name: string, subnet: string, managers: number, workers: number) => upCluster(cleanups, root, name, subnet, managers, workers);

const f2 = (x: number) => x.toFixed(2);
const runs = (xs: number[]) => xs.map(f2).join(', ');
const isRunning = (t: Task) => t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING;

/** iproute2 in the root namespace (a test host's underlay veth). */
async function ip(args: string[]): Promise<void> {
  await promisify(execFile)('ip', args).catch((err: unknown) => {
    throw new Error(`ip ${args.join(' ')} failed`, { cause: err });
  });
}

async function tasksGone(ctl: Ctl, what: string): Promise<void> {
  await until(`${what}: every task gone from the store after service rm`, 120_000, async () => ((await ctl.listTasks()).length === 0 ? true : undefined), 250);
}

// ---- 1. convergence against Docker Swarm -----------------------------------------------------

/** Our side of a round: seconds from `service create` to its return (converged), checked with service ps. */
async function oursConverge(c: LocalCluster, ctl: Ctl, image: string, name: string, replicas: number): Promise<number> {
  const net = NETWORK === 'none' ? ['--network', 'none'] : [];
  const t0 = now();
  await c.must(['service', 'create', '--name', name, '--replicas', String(replicas), ...STOP_GRACE, ...net, '--timeout', '180s', image]);
  const t = (now() - t0) / 1000;
  const ps = JSON.parse(await c.must(['service', 'ps', name, '--format', 'json'])) as { desiredState?: string; status?: { state?: string } }[];
  const ok = ps.filter((x) => x.desiredState === RUNNING && x.status?.state === RUNNING).length;
  if (ok !== replicas) throw new Error(`service create ${name} returned, but service ps shows ${ok}/${replicas} tasks RUNNING`);
  await c.must(['service', 'rm', name]);
  await tasksGone(ctl, `ours ${name}`);
  return t;
}

interface DockerTask {
  DesiredState?: string;
  Status?: { State?: string; Err?: string };
}

/** Docker's side: seconds from `docker service create --detach` until the API lists every task running. */
async function dockerConverge(d: Dockerd, image: string, name: string, replicas: number): Promise<number> {
  const path = `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [name] }))}`;
  let seen = '';
  const t0 = now();
  await d.cli(['service', 'create', '--detach', '--quiet', '--name', name, '--replicas', String(replicas), ...STOP_GRACE, image]);
  await until(
    () => `${replicas} tasks of docker service ${name} running (last seen: ${seen})`,
    180_000,
    async () => {
      const tasks = await d.api<DockerTask[]>(path);
      const ok = tasks.filter((t) => t.DesiredState === 'running' && t.Status?.State === 'running').length;
      const errs = [...new Set(tasks.map((t) => t.Status?.Err).filter(Boolean))];
      seen = `${ok} running of ${tasks.length}${errs.length ? `; errors: ${errs.join('; ')}` : ''}`;
      return ok >= replicas ? true : undefined;
    },
    50,
  );
  const t = (now() - t0) / 1000;
  await d.cli(['service', 'rm', name]);
  await until(`docker ${name}: every container gone after service rm`, 120_000, async () => ((await d.api<unknown[]>('/containers/json?all=1')).length === 0 ? true : undefined), 250);
  return t;
}

/** A private dockerd in swarm mode (one node, on 127.0.0.1) that can pull from our registry. */
function dockerSwarm(bin: DockerBinaries, registry: string): Promise<Dockerd> {
  const bridge = NETWORK === 'bridge' ? { name: DOCKER.bridge, cidr: DOCKER.bridgeCidr } : undefined;
  // prettier-ignore
  return startDockerSwarm(bin, { dir: join(root, 'docker'), cgroupParent: DOCKER.cgroupParent, bridge, gwBridge: DOCKER.gwBridge, gwSubnet: DOCKER.gwSubnet,
    listen: DOCKER.listen, dataPathPort: DOCKER.dataPathPort, registry }, cleanups);
}

async function converge(bin: DockerBinaries): Promise<{ ours: number[]; docker: number[] }> {
  const c = await cluster('cvb-conv', SUBNETS.converge, 1, 0);
  const st = await c.state();
  const image = `${st.gateway}:5000/demo/web:latest`;
  const d = await dockerSwarm(bin, `${st.gateway}:5000`);
  const ctl = await c.control();
  try {
    console.log(`1. ${REPLICAS} replicas of ${image} (network: ${NETWORK}); ours: local cluster ${c.name} (1 host), docker: dockerd ${(await d.cli(['version', '--format', '{{.Server.Version}}'])).stdout.trim()} pid ${d.pid}`);
    const wo = await oursConverge(c, ctl, image, 'warm', 1);
    const wd = await dockerConverge(d, image, 'warm', 1);
    console.log(`  warm-up (1 replica, pulls the image): ours ${f2(wo)} s, docker ${f2(wd)} s`);
    // What the CLI alone costs (process start to answer), best of 3: part of each side's figure.
    const best = async (fn: () => Promise<unknown>) => {
      const ts: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = now();
        await fn();
        ts.push((now() - t0) / 1000);
      }
      return Math.min(...ts);
    };
    const [lo, ld] = [await best(() => c.must(['service', 'ls'])), await best(() => d.cli(['service', 'ls']))];
    console.log(`  one CLI call (service ls, best of 3): swarmctl ${f2(lo)} s, docker ${f2(ld)} s`);
    const ours: number[] = [];
    const docker: number[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
      const name = `web${i}`;
      const o = async () => ours.push(await oursConverge(c, ctl, image, name, REPLICAS));
      const k = async () => docker.push(await dockerConverge(d, image, name, REPLICAS));
      if (i % 2) {
        await o();
        await k();
      } else {
        await k();
        await o();
      }
      console.log(`  round ${i}: ours ${f2(ours[i - 1])} s, docker swarm ${f2(docker[i - 1])} s`);
    }
    return { ours, docker };
  } finally {
    ctl.close();
    await cleanups.release('docker');
    await cleanups.release(`cluster ${c.name}`);
  }
}

// ---- 2. a killed worker ----------------------------------------------------------------------

interface Replaced {
  s: number;
  /** kill → the first poll that sees the node DOWN. */
  downS?: number;
}

/** How a worker dies in a round: its swarmd killed (the kernel closes its connections), or its link cut (silence). */
type Death = 'kill' | 'cut';

async function killedWorker(): Promise<{ runs: Replaced[]; cuts: Replaced[]; heartbeat: string }> {
  const c = await cluster('cvb-kill', SUBNETS.kill, 1, 2);
  const ctl = await c.control();
  try {
    if (HEARTBEAT) {
      await c.must(['cluster', 'update', '--heartbeat-period', HEARTBEAT]);
      // The agents take the new period from their next heartbeat answer (up to the old 5 s away).
      await sleep(6_000);
    }
    const heartbeat = HEARTBEAT || 'the default';
    const image = `${(await c.state()).gateway}:5000/demo/web:latest`;
    console.log(`2. a worker dies under ${KILL_REPLICAS} replicas; local cluster ${c.name} (1 manager + 2 workers), heartbeat period ${heartbeat}`);
    const round = async (i: number, death: Death): Promise<Replaced> => {
      const name = `${death}${i}`;
      await c.must(['service', 'create', '--name', name, '--replicas', String(KILL_REPLICAS), ...STOP_GRACE, '--timeout', '120s', image]);
      const st = await c.state();
      const nodes = await ctl.listNodes();
      const tasks = await ctl.listTasks();
      const serviceId = tasks[0]?.serviceId;
      // the worker of this round (w1, w2, w1...), or the other when the scheduler left it empty
      const workers = st.hosts.filter((h) => h.role === 'worker');
      const nodeOf = (hostname: string) => nodes.find((n) => n.description?.hostname === hostname)!;
      let victim = workers[(i - 1) % workers.length];
      if (!tasks.some((t) => isRunning(t) && t.nodeId === nodeOf(victim.hostname).id)) victim = workers.find((w) => tasks.some((t) => isRunning(t) && t.nodeId === nodeOf(w.hostname).id)) ?? victim;
      const dead = nodeOf(victim.hostname).id;
      const had = tasks.filter((t) => isRunning(t) && t.nodeId === dead).length;
      if (!victim.pid) throw new Error(`no pid for ${victim.name} in ${c.dir}/cluster.json`);

      let downAt: number | undefined;
      let seen = '';
      const t0 = now();
      // kill: the kernel closes swarmd's connections (RST/FIN); cut: the host's underlay link goes
      // down, so the manager hears nothing more (a power loss or a partition looks the same).
      if (death === 'kill') process.kill(victim.pid, 'SIGKILL');
      else await ip(['link', 'set', victim.veth, 'down']);
      const doneAt = await until(
        () => `${KILL_REPLICAS} tasks of ${name} RUNNING again, none on the ${death === 'kill' ? 'killed' : 'cut-off'} ${victim.name} (last seen: ${seen})`,
        90_000,
        async () => {
          const [ns, ts] = await Promise.all([ctl.listNodes(2_000), ctl.listTasks([serviceId], 2_000)]);
          if (downAt === undefined && ns.find((n) => n.id === dead)?.status?.state === NodeState.NODE_STATE_DOWN) downAt = now();
          const ok = ts.filter((t) => isRunning(t) && t.nodeId !== dead).length;
          const onDead = ts.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING && t.nodeId === dead).length;
          seen = `${ok} running elsewhere, ${onDead} still wanted on ${victim.name}, node ${downAt === undefined ? 'not yet DOWN' : 'DOWN'}`;
          return ok >= KILL_REPLICAS && onDead === 0 ? now() : undefined;
        },
        50,
      );
      const r: Replaced = { s: (doneAt - t0) / 1000, ...(downAt !== undefined ? { downS: (downAt - t0) / 1000 } : {}) };
      console.log(`  ${death} round ${i}: ${death === 'kill' ? 'killed' : 'cut off'} ${victim.name} (${had} of the tasks): node DOWN after ${r.downS !== undefined ? f2(r.downS) : '?'} s, ${KILL_REPLICAS} running again after ${f2(r.s)} s`);
      if (death === 'cut') await ip(['link', 'set', victim.veth, 'up']);
      // the host comes back: its containers go with it (as on a reboot), then swarmd again
      await c.must(['local', 'stop', victim.name, '--kill', '--name', c.name]);
      await c.must(['local', 'start', victim.name, '--name', c.name]);
      await c.must(['service', 'rm', name]);
      await tasksGone(ctl, name);
      return r;
    };
    const kills: Replaced[] = [];
    for (let i = 1; i <= KILL_ROUNDS; i++) kills.push(await round(i, 'kill'));
    const cuts: Replaced[] = [];
    for (let i = 1; i <= CUT_ROUNDS; i++) cuts.push(await round(i, 'cut'));
    return { runs: kills, cuts, heartbeat };
  } finally {
    ctl.close();
    await cleanups.release(`cluster ${c.name}`);
  }
}

// ---- 3. manager memory with 10,000 tasks -----------------------------------------------------

interface Memory {
  idle: number;
  /** 10 s after the last task is in the store. */
  full: number;
  /** REST_S later (V8 gives back what the burst of creation left). */
  rest: number;
  restAfterS: number;
  /** VmHWM at the end: the whole part, the bench's own list of every task included. */
  peak: number;
  /** Max of VmRSS sampled every 100 ms from the first create until every task is in the store. */
  creationPeak: number;
  tasks: number;
  fillS: number;
}

async function managerMemory(): Promise<Memory> {
  const c = await cluster('cvb-rss', SUBNETS.rss, 1, 0);
  const ctl = await c.control();
  const total = RSS_SERVICES * RSS_REPLICAS;
  let sampling = false;
  try {
    const st = await c.state();
    const pid = st.hosts[0].pid;
    const image = `${st.gateway}:5000/demo/web:latest`;
    console.log(`3. manager memory: ${RSS_SERVICES} services × ${RSS_REPLICAS} replicas, constraint node.labels.none==x (all pending); local cluster ${c.name} (1 host), swarmd pid ${pid}`);
    await sleep(SETTLE_MS);
    const idle = await rssMiB(pid);
    const t0 = now();
    // VmRSS every 100 ms while the tasks are created (VmHWM alone would also count the list of
    // every task this part reads afterwards: a single answer of 10,000 tasks).
    let creationPeak = 0;
    sampling = true;
    const sampler = (async () => {
      while (sampling) {
        creationPeak = Math.max(creationPeak, await rssMiB(pid));
        await sleep(100);
      }
    })();
    const ids: string[] = [];
    for (let i = 1; i <= RSS_SERVICES; i++) {
      const out = await c.must(['service', 'create', '--detach', '--quiet', '--name', `mem${i}`, '--replicas', String(RSS_REPLICAS), '--constraint', 'node.labels.none==x', image]);
      ids.push(out.trim().split('\n').pop()!);
    }
    // One service at a time (a list of every task each poll would itself fill the heap).
    for (const id of ids) {
      let seen = 0;
      await until(
        () => `the ${RSS_REPLICAS} tasks of service ${id} in the store (last seen: ${seen})`,
        300_000,
        async () => {
          seen = (await ctl.listTasks([id], 30_000)).length;
          return seen >= RSS_REPLICAS ? true : undefined;
        },
        1_000,
      );
    }
    const fillS = (now() - t0) / 1000;
    sampling = false;
    await sampler;
    const tasks = await ctl.listTasks([], 60_000);
    const pending = tasks.filter((t) => t.status?.state === TaskState.TASK_STATE_PENDING).length;
    if (tasks.length !== total) throw new Error(`${tasks.length} tasks in the store, expected ${total}`);
    console.log(`  ${tasks.length} tasks in the store after ${f2(fillS)} s (${pending} PENDING)`);
    await sleep(SETTLE_MS);
    const full = await rssMiB(pid);
    // At rest: V8 gives back the heap the burst grew only when its memory reducer runs, which can
    // take a minute or more of quiet; sampled every 5 s for REST_S, the last sample counts.
    const samples: string[] = [];
    let rest = full;
    for (let s = 5; s <= REST_S; s += 5) {
      await sleep(5_000);
      rest = await rssMiB(pid);
      samples.push(rest.toFixed(0));
    }
    const restAfterS = SETTLE_MS / 1000 + REST_S;
    console.log(`  RSS ${full.toFixed(0)} MiB ${SETTLE_MS / 1000} s after, then every 5 s: ${samples.join(' ')} MiB`);
    return { idle, full, rest, restAfterS, peak: await rssMiB(pid, 'VmHWM'), creationPeak, tasks: tasks.length, fillS };
  } finally {
    sampling = false;
    ctl.close();
    await cleanups.release(`cluster ${c.name}`);
  }
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:converge makes network namespaces and runs dockerd: run it as root');
  const bin = PARTS.has(1) ? mustFindDocker() : undefined;
  root = await mkdtemp(join(tmpdir(), 'swarm-converge-bench-'));
  cleanups.add('root', () => rm(root, { recursive: true, force: true }));
  console.log(`converge bench: parts ${[...PARTS].join(',')}, state under ${root}`);
  const summary: string[] = [];
  let ratio: string | undefined;

  if (PARTS.has(1)) {
    const r = await converge(bin!);
    summary.push(`ours (swarmctl service create):        p50 ${f2(p50(r.ours))} s, max ${f2(max(r.ours))} s  (runs: ${runs(r.ours)})`);
    summary.push(`docker swarm (docker service create):  p50 ${f2(p50(r.docker))} s, max ${f2(max(r.docker))} s  (runs: ${runs(r.docker)})`);
    const rr = p50(r.ours) / p50(r.docker);
    summary.push(`  aim R ≤ 0.25: ${rr <= 0.25 ? 'met' : 'not met'}`);
    ratio = `converge ours/docker-swarm: ${f2(rr)}`;
  }
  if (PARTS.has(2)) {
    const k = await killedWorker();
    const s = k.runs.map((r) => r.s);
    const down = k.runs.filter((r) => r.downS !== undefined).map((r) => r.downS!);
    const rest = k.runs.filter((r) => r.downS !== undefined).map((r) => r.s - r.downS!);
    summary.push(`replace killed worker: p50 ${f2(p50(s))} s, max ${f2(max(s))} s  (heartbeat ${k.heartbeat}; runs: ${runs(s)}; aim ≤ 5 s: ${max(s) <= 5 ? 'met' : p50(s) <= 5 ? 'met at p50' : 'not met'})`);
    if (down.length) summary.push(`  of which detection (kill → node DOWN) p50 ${f2(p50(down))} s, max ${f2(max(down))} s; rescheduling + start p50 ${f2(p50(rest))} s, max ${f2(max(rest))} s`);
    if (k.cuts.length) {
      const c = k.cuts.map((r) => r.s);
      const cd = k.cuts.filter((r) => r.downS !== undefined).map((r) => r.downS!);
      summary.push(`replace cut-off worker (link down, no FIN): p50 ${f2(p50(c))} s, max ${f2(max(c))} s  (runs: ${runs(c)}; detection p50 ${cd.length ? f2(p50(cd)) : '?'} s)`);
    }
  }
  if (PARTS.has(3)) {
    const m = await managerMemory();
    const aim = (mib: number) => (mib * 1.048576 <= 200 ? 'met' : 'not met');
    summary.push(`manager RSS with ${m.tasks} tasks: ${m.rest.toFixed(0)} MiB at rest (${m.restAfterS.toFixed(0)} s after the last task; aim ≤ 200 MB: ${aim(m.rest)})`);
    summary.push(`  ${m.full.toFixed(0)} MiB ${SETTLE_MS / 1000} s after the last task (${aim(m.full)}); idle before: ${m.idle.toFixed(0)} MiB; filled in ${f2(m.fillS)} s`);
    summary.push(`  while the tasks were created: peak ${m.creationPeak.toFixed(0)} MiB (VmRSS every 100 ms; aim ≤ 200 MB at every sample: ${aim(m.creationPeak)}); VmHWM at the end, the bench's list of every task included: ${m.peak.toFixed(0)} MiB`);
  }
  console.log('\nsummary:');
  for (const l of summary) console.log(l);
  if (ratio) console.log(ratio);
}

await runBench('converge bench', main, () => cleanups.all());
