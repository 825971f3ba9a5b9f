/**
 * Start-up cost where users feel it (issue 16): swarmctl's call time and an idle worker's memory.
 *
 * 1. `swarmctl service ls` against a 1+1 local cluster, BENCH_CALLS (20) times, each beside a bare
 *    `node -e 0` (the same Node, started the same way, alternating): p50 wall time of each and
 *    their ratio. Also `swarmctl --help` (no gRPC) and `swarmctl node ls`.
 * 2. The worker's swarmd: CPU (utime+stime from /proc/PID/stat) once `local up` saw it READY, and
 *    VmRSS (plus Private_Dirty from smaps_rollup: VmRSS counts Node's own text, ~45 MB shared with
 *    every node process) BENCH_SETTLE_MS (10 s) and BENCH_IDLE_MS (60 s) after; first as `local up`
 *    started it (`swarmd join`), then restarted (`local stop` + `local start`: `swarmd run`, the
 *    way a host restarts; its CPU read once it logged "swarmd running"). The manager's figures
 *    beside it.
 *
 *   npm run bench:start        (root; BENCH_WS=/path/to/another/checkout measures that build)
 *
 * Its own SWARMD_LOCAL_ROOT (a temp dir), context file and subnet (BENCH_SUBNET, 10.252.9.0/24);
 * `local down` at the end, on error and on SIGINT/SIGTERM.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster, now, p50, rssMiB, runBench, SWARMCTL, until, WS, type Host } from './lib/local-cluster.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 20);
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 10_000);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 60_000);
const SUBNET = process.env.BENCH_SUBNET ?? '10.252.9.0/24';
const NAME = process.env.BENCH_NAME ?? 'sbench';

let cluster: LocalCluster | undefined;

/** Wall time of one run of `argv` (ms); throws when it fails. */
function timed(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((res, rej) => {
    const t0 = now();
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', rej);
    child.once('close', (code) => (code === 0 ? res(now() - t0) : rej(new Error(`${argv.slice(1).join(' ')} exited ${code}: ${stderr}`))));
  });
}

/** utime+stime of a process, in seconds. */
async function cpuSeconds(pid: number | undefined): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // fields after the command (which may hold spaces): state is field 3, utime 14, stime 15
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function privateMiB(pid: number | undefined): Promise<number> {
  const s = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  return Number(/Private_Dirty:\s+(\d+)/.exec(s)?.[1] ?? NaN) / 1024;
}

const f1 = (x: number) => x.toFixed(1);
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function calls(c: LocalCluster): Promise<void> {
  const env = c.env;
  const node0: number[] = [];
  const ls: number[] = [];
  const help: number[] = [];
  const nodeLs: number[] = [];
  // one warm-up of each (page cache)
  await timed([process.execPath, '-e', '0'], env);
  await timed([process.execPath, SWARMCTL, 'service', 'ls'], env);
  for (let i = 0; i < CALLS; i++) {
    node0.push(await timed([process.execPath, '-e', '0'], env));
    ls.push(await timed([process.execPath, SWARMCTL, 'service', 'ls'], env));
    help.push(await timed([process.execPath, SWARMCTL, '--help'], env));
    nodeLs.push(await timed([process.execPath, SWARMCTL, 'node', 'ls'], env));
  }
  const r = p50(ls) / p50(node0);
  console.log(`node -e 0: p50 ${ms(p50(node0))}; swarmctl --help: p50 ${ms(p50(help))}; swarmctl node ls: p50 ${ms(p50(nodeLs))}  (${CALLS} each, alternating)`);
  console.log(`swarmctl service ls: p50 ${ms(p50(ls))}, max ${ms(Math.max(...ls))}; ratio to bare node p50 ${r.toFixed(2)}  (aim: under 150 ms)`);
}

async function idle(h: Host, m: Host, how: string): Promise<void> {
  const cpu = await cpuSeconds(h.pid);
  const mcpu = await cpuSeconds(m.pid);
  const t0 = Date.now();
  const at = async (ms: number) => {
    await sleep(Math.max(0, t0 + ms - Date.now()));
    return { rss: await rssMiB(h.pid), priv: await privateMiB(h.pid), mrss: await rssMiB(m.pid) };
  };
  const a = await at(SETTLE_MS);
  const b = await at(IDLE_MS);
  console.log(
    `worker (${how}): CPU at READY ${f1(cpu)} s; VmRSS ${f1(a.rss)} MiB ${SETTLE_MS / 1000} s after, ${f1(b.rss)} MiB ${IDLE_MS / 1000} s after ` +
      `(Private_Dirty ${f1(a.priv)} / ${f1(b.priv)} MiB); manager: CPU ${f1(mcpu)} s, VmRSS ${f1(a.mrss)} / ${f1(b.mrss)} MiB  (aim: worker ≤ 60 MB)`,
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the start bench makes network namespaces: run it as root');
  cluster = new LocalCluster(await mkdtemp(join(tmpdir(), 'swarm-start-bench-')), NAME, SUBNET);
  console.log(`start bench: ${NAME} on ${SUBNET}, build ${WS}, state under ${cluster.root}`);
  let st = await cluster.up(1, 1);
  const worker = () => st.hosts.find((h) => h.role === 'worker')!;
  const manager = () => st.hosts.find((h) => h.role === 'manager')!;
  await idle(worker(), manager(), 'swarmd join');
  await calls(cluster);
  const old = worker().pid;
  await cluster.must(['local', 'stop', '--name', NAME, worker().name]);
  await until(`the stopped swarmd (pid ${old}) to exit`, 30_000, async () => ((await readFile(`/proc/${old}/stat`).catch(() => undefined)) ? undefined : true));
  const logged = async () => (await readFile(worker().log, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes('"swarmd running"')).length;
  const before = await logged();
  await cluster.must(['local', 'start', '--name', NAME, worker().name]);
  st = await cluster.state();
  // `local start` may see the node READY before the new process is: the manager has not missed
  // a heartbeat yet. Its own "swarmd running" line says its start is done.
  await until('the restarted swarmd to log "swarmd running"', 60_000, async () => ((await logged()) > before ? true : undefined));
  await idle(worker(), manager(), 'restarted, swarmd run');
}

async function cleanup(): Promise<void> {
  if (!cluster) return;
  await cluster.down();
  await rm(cluster.root, { recursive: true, force: true });
}

await runBench('start bench', main, cleanup);
