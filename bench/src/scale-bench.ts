/**
 * Scale by simulation: 3 real managers (swarmd processes on netns hosts, real Raft, real mTLS:
 * `swarmctl local up --managers 3 --workers 0`) and N simulated nodes in a few child processes
 * (lib/sim-nodes.ts: the real join and the real node agent, a fake executor that reports each
 * task RUNNING after BENCH_RUN_DELAY_MS without starting anything).
 *
 * 1. Join: every simulated node gets its certificate with the worker token (not timed as "ready").
 * 2. Nodes ready: every agent starts at once; time until the leader lists N workers READY.
 * 3. Heartbeats: the leader's swarmd_dispatcher_heartbeats_total over BENCH_IDLE_MS (10 s) with
 *    every node connected, and the leader's CPU over that window.
 * 4. Tasks: `service create --replicas N×tasks-per-node --constraint node.role==worker`; time
 *    until the leader's store has every task RUNNING; the leader's CPU (cores, averaged over that
 *    time) and RSS (max of 500 ms samples).
 * 5. Failover: kill -9 the leader's swarmd; time until every simulated node has a session again
 *    (necessarily with the new leader: followers only redirect).
 *
 *   npm run bench:scale -- --nodes 1000 --tasks-per-node 20      (root)
 *
 * BENCH_SWARMD (the main.js of another swarmd build) runs the managers from that build: a
 * baseline beside this one. BENCH_KEEP_LOGS=DIR keeps the managers' and simulators' logs.
 *
 * Ends with `scale: N nodes, T tasks running in S s, leader C cores, M MiB, failover F s`.
 * Everything runs under its own SWARMD_LOCAL_ROOT (a temp dir) and subnet (BENCH_SUBNET,
 * 10.254.65.0/24); `local down` runs at the end, on error and on SIGINT/SIGTERM.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeRole, NodeState, TaskState } from '@swarmd/proto';
import { controlSock, Ctl, LocalCluster, now, rssMiB, runBench, until, type Host, type State } from './lib/local-cluster.js';
import type { SimStart, SimStats } from './lib/sim-nodes.js';

const { values: flags } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    'tasks-per-node': { type: 'string', default: '20' },
    'sim-procs': { type: 'string' },
  },
});
const positive = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} ${v}: a whole number, 1 or more`);
  return n;
};
const NODES = positive('nodes', flags.nodes);
const PER_NODE = positive('tasks-per-node', flags['tasks-per-node']);
const TASKS = NODES * PER_NODE;
/** One simulator process per 250 nodes (each a single event loop). */
const PROCS = positive('sim-procs', flags['sim-procs'] ?? String(Math.ceil(NODES / 250)));
const SUBNET = process.env.BENCH_SUBNET ?? '10.254.65.0/24';
const NAME = process.env.BENCH_NAME ?? 'scale';
const RUN_DELAY_MS = Number(process.env.BENCH_RUN_DELAY_MS ?? 200);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 10_000);
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_S ?? 600) * 1000;
const here = dirname(fileURLToPath(import.meta.url));

interface Mgr extends Host {
  addr: string;
  listenAddr: string;
}

let cluster: LocalCluster | undefined;
const sims: { child: ChildProcess; stats: SimStats | undefined }[] = [];
let simRoot: string | undefined;

// ---- figures of a process ------------------------------------------------------------------

const CLK_TCK = 100;
/** utime + stime of a process, in seconds of CPU. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of proc(5)
}

/** CPU (cores, averaged) and RSS (MiB, max of samples every 500 ms) of `pid` while `fn` runs. */
async function measured<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; cores: number; rssMax: number; seconds: number }> {
  const c0 = await cpuSeconds(pid);
  const t0 = now();
  let rssMax = await rssMiB(pid);
  let done = false;
  const sampler = (async () => {
    while (!done) {
      await sleep(500);
      rssMax = Math.max(rssMax, await rssMiB(pid));
    }
  })();
  try {
    const value = await fn();
    const seconds = (now() - t0) / 1000;
    const cores = ((await cpuSeconds(pid)) - c0) / seconds;
    return { value, cores, rssMax, seconds };
  } finally {
    done = true;
    await sampler;
  }
}

async function metric(m: Mgr, name: string): Promise<number> {
  const res = await fetch(`http://${m.addr}:9323/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (!line) throw new Error(`${name} not in the metrics of ${m.name}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

// ---- the simulated fleet ---------------------------------------------------------------------

const fleet = () => {
  const s = sims.map((x) => x.stats);
  const sum = (k: keyof Omit<SimStats, 'type'>) => s.reduce((a, x) => a + (x?.[k] ?? 0), 0);
  return { joined: sum('joined'), connected: sum('connected'), sinceMark: sum('sinceMark'), running: sum('running') };
};

function startSims(managers: string[], token: string, logDir: string): void {
  const per = Math.ceil(NODES / PROCS);
  for (let p = 0; p < PROCS; p++) {
    const first = p * per;
    const count = Math.min(per, NODES - first);
    if (count <= 0) break;
    // BENCH_SIM_PROF=DIR: a V8 CPU profile of each simulator (written when it exits)
    const execArgv = process.env.BENCH_SIM_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_SIM_PROF}`] : [];
    const child = fork(join(here, 'lib', 'sim-nodes.js'), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv });
    child.stderr!.pipe(createWriteStream(join(logDir, `sim-${p}.log`)));
    const entry: (typeof sims)[number] = { child, stats: undefined };
    child.on('message', (m: SimStats | { type: 'error'; message: string }) => {
      if (m.type === 'stats') entry.stats = m;
      else {
        console.error(`simulator ${p} failed: ${m.message}`);
        process.kill(process.pid, 'SIGTERM'); // clean up and stop (runBench)
      }
    });
    sims.push(entry);
    const start: SimStart = { type: 'start', first, count, managers, token, stateRoot: join(simRoot!, `p${p}`), joinConcurrency: 8, runDelayMs: RUN_DELAY_MS };
    child.send(start);
  }
}

const tell = (type: 'connect' | 'mark' | 'stop') => sims.forEach((s) => s.child.connected && s.child.send({ type }));

// ---- the managers -----------------------------------------------------------------------------

async function leaderOf(st: State, except?: Mgr): Promise<{ leader: Mgr; ctl: Ctl }> {
  const managers = st.hosts.filter((h) => h.role === 'manager' && h !== except) as Mgr[];
  return until('a leader', 60_000, async () => {
    for (const m of managers) {
      const c = new Ctl(controlSock(m));
      try {
        const nodes = await c.listNodes(10_000);
        const l = nodes.find((n) => n.managerStatus?.leader);
        const h = managers.find((x) => x.hostname === l?.description?.hostname);
        if (h) {
          c.close();
          return { leader: h, ctl: new Ctl(controlSock(h)) };
        }
      } catch {
        /* the next */
      }
      c.close();
    }
    return undefined;
  }, 250);
}

async function readyWorkers(ctl: Ctl): Promise<number> {
  const nodes = await ctl.listNodes(30_000);
  return nodes.filter((n) => n.role === NodeRole.NODE_ROLE_WORKER && n.status?.state === NodeState.NODE_STATE_READY).length;
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the scale bench makes network namespaces: run it as root');
  const root = await mkdtemp(join(tmpdir(), 'swarm-scale-bench-'));
  simRoot = await mkdtemp('/dev/shm/swarm-scale-sim-');
  cluster = new LocalCluster(root, NAME, SUBNET);
  // Another build's managers (a baseline run side by side): BENCH_SWARMD=/path/to/swarmd/dist/src/main.js
  if (process.env.BENCH_SWARMD) cluster.env.SWARMD_BIN = process.env.BENCH_SWARMD;
  console.log(`scale bench: ${NODES} simulated nodes × ${TASKS / NODES} tasks, ${PROCS} simulator process(es), 3 managers on ${SUBNET}; state under ${root}`);
  await cluster.up(3, 0, 180);
  const st = await cluster.state();
  const managers = st.hosts.filter((h) => h.role === 'manager') as Mgr[];
  const token = (await cluster.must(['cluster', 'join-token', 'worker', '-q'])).trim();

  // 1. join
  const tJoin = now();
  startSims(
    managers.map((m) => m.listenAddr),
    token,
    cluster.dir,
  );
  await until(() => `${NODES} joins (${fleet().joined} so far)`, TIMEOUT_MS, async () => (fleet().joined === NODES ? true : undefined), 250);
  console.log(`  joined (certificates issued): ${NODES} nodes in ${((now() - tJoin) / 1000).toFixed(1)} s`);

  // 2. nodes ready
  let { leader, ctl } = await leaderOf(st);
  const ready = await measured(leader.pid!, async () => {
    tell('connect');
    return until(() => `${NODES} nodes READY (${fleet().connected} sessions)`, TIMEOUT_MS, async () => (fleet().connected === NODES && (await readyWorkers(ctl)) === NODES ? true : undefined), 500);
  });
  console.log(`nodes ready: ${NODES} in ${ready.seconds.toFixed(1)} s (leader ${leader.name}: ${ready.cores.toFixed(2)} cores, max ${ready.rssMax.toFixed(0)} MiB)`);

  // 3. heartbeats, idle
  const hb0 = await metric(leader, 'swarmd_dispatcher_heartbeats_total');
  const idle = await measured(leader.pid!, () => sleep(IDLE_MS));
  const hb1 = await metric(leader, 'swarmd_dispatcher_heartbeats_total');
  const hbRate = (hb1 - hb0) / idle.seconds;
  const sessions = await metric(leader, 'swarmd_dispatcher_sessions');
  console.log(`heartbeats: ${hbRate.toFixed(0)}/s sustained with ${sessions} sessions (leader idle ${idle.cores.toFixed(2)} cores, ${(await rssMiB(leader.pid)).toFixed(0)} MiB)`);

  // 4. tasks
  const image = `${st.gateway}:5000/simulated:latest`;
  const tasks = await measured(leader.pid!, async () => {
    await cluster!.must(['service', 'create', '--detach', '--no-resolve-image', '--name', 'scale', '--replicas', String(TASKS), '--constraint', 'node.role==worker', image]);
    await until(() => `${TASKS} tasks reported RUNNING by the simulated nodes (${fleet().running} so far)`, TIMEOUT_MS, async () => (fleet().running >= TASKS ? true : undefined), 250);
    // ...and committed: the leader's store has them all RUNNING
    return until('every task RUNNING in the store', TIMEOUT_MS, async () => {
      const ts = await ctl.listTasks([], 60_000);
      const running = ts.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING).length;
      return running >= TASKS ? running : undefined;
    }, 1_000);
  });
  const rssAfter = await rssMiB(leader.pid);
  console.log(`tasks: ${tasks.value} running in ${tasks.seconds.toFixed(1)} s after service create (leader ${tasks.cores.toFixed(2)} cores on average, RSS max ${tasks.rssMax.toFixed(0)} MiB, ${rssAfter.toFixed(0)} MiB after)`);

  // 5. failover
  ctl.close();
  tell('mark');
  await sleep(600); // the mark reaches every simulator before the kill
  const killed = leader;
  const tKill = now();
  process.kill(killed.pid!, 'SIGKILL');
  await until(() => `every node's session back (${fleet().sinceMark}/${NODES})`, TIMEOUT_MS, async () => (fleet().sinceMark === NODES ? true : undefined), 100);
  const failover = (now() - tKill) / 1000;
  ({ leader, ctl } = await leaderOf(st, killed));
  console.log(`failover: kill -9 of ${killed.name} → all ${NODES} sessions with the new leader ${leader.name} in ${failover.toFixed(1)} s`);
  ctl.close();

  console.log(`scale: ${NODES} nodes, ${tasks.value} tasks running in ${tasks.seconds.toFixed(1)} s, leader ${tasks.cores.toFixed(2)} cores, ${tasks.rssMax.toFixed(0)} MiB, failover ${failover.toFixed(1)} s`);
}

async function cleanup(): Promise<void> {
  tell('stop');
  await Promise.all(sims.map((s) => new Promise((r) => (s.child.exitCode !== null ? r(undefined) : s.child.once('exit', r)))).map((p) => Promise.race([p, sleep(10_000)])));
  for (const s of sims) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  if (!cluster) return;
  const keep = process.env.BENCH_KEEP_LOGS;
  if (keep) await import('@swarmd/common').then(({ run }) => run('sh', ['-c', `mkdir -p '${keep}' && cp '${cluster!.dir}'/*.log '${keep}'/`])).catch(() => undefined);
  await cluster.down();
  await rm(cluster.root, { recursive: true, force: true });
  if (simRoot) await rm(simRoot, { recursive: true, force: true });
}

await runBench('scale bench', main, cleanup);
