/**
 * A rolling update of 30 replicas on 3 hosts, against Docker Swarm with the same policy in the
 * same run: the time from sending the update request to every new task running, and to the
 * update completed (update status COMPLETED; Docker's "completed").
 *
 * Ours: `local up --managers 1 --workers 2` (10.254.70.0/24), `web` (BENCH_REPLICAS, 30) created
 * with the policy below. Docker: 3 private dockerds (lib/docker-swarm.ts, startDockerSwarmHosts),
 * each in a netns of its own on an underlay bridge (10.254.71.0/24), one `swarm init`, two
 * `swarm join`; `web` created with the same flags. The same image on both (the cluster's demo
 * image, busybox httpd, pulled by the dockerds from the cluster's registry as an insecure
 * registry), no network flag on either (each task on its host's bridge), no published ports
 * (Docker's VIP and routing mesh do not work on this machine's kernel).
 *
 * The policy, on both: --update-parallelism BENCH_PARALLELISM (5) --update-delay 0s
 * --update-monitor BENCH_MONITOR (5s, Docker's default, set explicitly on both) --update-order
 * stop-first --update-failure-action pause --stop-grace-period 1s. An update changes one
 * environment variable (BENCH_ROUND=N), which replaces every task. It is sent through each side's
 * API as `service update --detach` sends it (ours the Control API's UpdateService, Docker the
 * Engine API's service update), so neither CLI's start-up is in the figures. Both sides are then
 * polled every 50 ms (the task list and the service) until all new tasks run and the update
 * status is COMPLETED.
 *
 * BENCH_ROUNDS rounds (3), ours and Docker's one after the other (who goes first swaps each
 * round), after one unmeasured warm-up update each.
 *
 *   npm run bench:update       (root; BENCH_ROUNDS=3 BENCH_REPLICAS=30 BENCH_PARALLELISM=5 BENCH_MONITOR=5s;
 *                               BENCH_KEEP_LOGS=DIR copies every swarmd's and dockerd's log there)
 *
 * Everything is removed at the end, on error and on SIGINT/SIGTERM. The last line is
 * `update ours/docker-swarm: R`, our p50 time to completed / Docker's.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TaskState, UpdateStatus_State, type Task } from '@swarmd/proto';
import { mustFindDocker, type Dockerd } from '@swarmd/testkit/dockerd';
import { startDockerSwarmHosts } from './lib/docker-swarm.js';
import { Cleanups, max, now, p50, runBench, until, upCluster, type Ctl, type LocalCluster } from './lib/local-cluster.js';

const env = process.env;
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3);
const REPLICAS = Number(env.BENCH_REPLICAS ?? 30);
const PARALLELISM = Number(env.BENCH_PARALLELISM ?? 5);
const MONITOR = env.BENCH_MONITOR ?? '5s';
const ROUND_TIMEOUT_MS = 180_000;
const POLL_MS = 50;

const CLUSTER = { name: 'benchupd', subnet: '10.254.70.0/24' };
// prettier-ignore
const DOCKER = { prefix: 'benchupd-dk', underlay: { bridge: 'benchupd-dk0', subnet: '10.254.71.0/24' }, bridge: { name: 'benchupd-br0', cidr: '10.254.72.1/24' },
  gwBridge: 'benchupd-gw0', gwSubnet: '10.254.73.0/24', dataPathPort: '47971' };
// prettier-ignore
const POLICY = ['--update-parallelism', String(PARALLELISM), '--update-delay', '0s', '--update-monitor', MONITOR, '--update-order', 'stop-first',
  '--update-failure-action', 'pause', '--stop-grace-period', '1s'];

/** A directory to copy every swarmd's and dockerd's log to before they are removed (to see where the time went). */
const KEEP_LOGS = env.BENCH_KEEP_LOGS;

let root = '';
const cleanups = new Cleanups();
const f2 = (x: number) => x.toFixed(2);
const runs = (xs: number[]) => xs.map(f2).join(', ');

// ---- the two sides ---------------------------------------------------------------------------

/** What a poll saw: how many tasks of the round's spec run (desired running), and whether the update completed. */
interface Seen {
  running: number;
  completed: boolean;
  /** For a timeout's message. */
  text: string;
  /** Every task of web (old ones too), for the breakdown. */
  tasks: SlotTask[];
}

/** A task as both sides list it; times in unix ms (the leader's for `createdAt`, the agent's for `stateAt`). */
interface SlotTask {
  id: string;
  slot: number;
  /** Of the round's spec. */
  fresh: boolean;
  createdAt: number;
  desiredRunning: boolean;
  state: 'running' | 'stopped' | 'other';
  /** When the task reached `state` (its status timestamp). */
  stateAt: number;
}

interface Side {
  name: string;
  /** Sends the update (web's env gets BENCH_ROUND=`round`); resolves when the request was answered. */
  update(round: number): Promise<void>;
  poll(round: number): Promise<Seen>;
}

const mark = (round: number) => `BENCH_ROUND=${round}`;

async function ours(c: LocalCluster, ctl: Ctl, image: string): Promise<Side> {
  const id = (await c.must(['service', 'create', '--name', 'web', '--replicas', String(REPLICAS), ...POLICY, '--timeout', '180s', image])).trim().split('\n').pop()!;
  const isNew = (t: Task, round: number) => t.desiredState === TaskState.TASK_STATE_RUNNING && (t.spec?.container?.env ?? []).includes(mark(round));
  return {
    name: 'ours',
    async update(round) {
      const s = await ctl.getService(id);
      const spec = structuredClone(s.spec!);
      const ctr = spec.task!.container!;
      ctr.env = [...ctr.env.filter((e) => !e.startsWith('BENCH_ROUND=')), mark(round)];
      await ctl.updateService(id, s.meta?.version ?? 0, spec);
    },
    async poll(round) {
      const [tasks, s] = await Promise.all([ctl.listTasks([id], 2_000), ctl.getService(id, 2_000)]);
      const fresh = tasks.filter((t) => isNew(t, round));
      const running = fresh.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).length;
      const state = s.updateStatus?.state ?? UpdateStatus_State.UNKNOWN;
      const st = (t: Task) => t.status?.state ?? TaskState.TASK_STATE_NEW;
      const all = tasks.map((t): SlotTask => ({
        id: t.id,
        slot: t.slot,
        fresh: (t.spec?.container?.env ?? []).includes(mark(round)),
        createdAt: t.meta?.createdAt ?? 0,
        desiredRunning: t.desiredState === TaskState.TASK_STATE_RUNNING,
        state: st(t) === TaskState.TASK_STATE_RUNNING ? 'running' : st(t) > TaskState.TASK_STATE_RUNNING ? 'stopped' : 'other',
        stateAt: t.status?.timestamp ?? 0,
      }));
      return { running, completed: state === UpdateStatus_State.COMPLETED, text: `${running}/${fresh.length} new running, update ${UpdateStatus_State[state]}`, tasks: all };
    },
  };
}

interface DockerService {
  ID: string;
  Version: { Index: number };
  Spec: { TaskTemplate: { ContainerSpec: { Env?: string[] } } };
  UpdateStatus?: { State?: string };
}

interface DockerTask {
  ID: string;
  Slot?: number;
  CreatedAt?: string;
  DesiredState?: string;
  Status?: { State?: string; Err?: string; Timestamp?: string };
  Spec?: { ContainerSpec?: { Env?: string[] } };
}

const DOCKER_STOPPED = new Set(['complete', 'shutdown', 'failed', 'rejected', 'orphaned', 'remove']);

async function docker(d: Dockerd, image: string): Promise<Side> {
  await d.cli(['service', 'create', '--detach', '--quiet', '--name', 'web', '--replicas', String(REPLICAS), ...POLICY, image]);
  const tasks = `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: ['web'], 'desired-state': ['running'] }))}`;
  const allTasks = `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: ['web'] }))}`;
  let seen = '';
  await until(
    () => `${REPLICAS} tasks of docker's web running (last seen: ${seen})`,
    180_000,
    async () => {
      const ts = await d.api<DockerTask[]>(tasks, 2_000);
      const errs = [...new Set(ts.map((t) => t.Status?.Err).filter(Boolean))];
      const ok = ts.filter((t) => t.Status?.State === 'running').length;
      seen = `${ok} running of ${ts.length}${errs.length ? `; errors: ${errs.join('; ')}` : ''}`;
      return ok === REPLICAS ? true : undefined;
    },
    250,
  );
  return {
    name: 'docker swarm',
    async update(round) {
      const s = await d.api<DockerService>('/services/web');
      const ctr = s.Spec.TaskTemplate.ContainerSpec;
      ctr.Env = [...(ctr.Env ?? []).filter((e) => !e.startsWith('BENCH_ROUND=')), mark(round)];
      await d.api(`/services/${s.ID}/update?version=${s.Version.Index}`, 10_000, s.Spec);
    },
    async poll(round) {
      const [ts, s] = await Promise.all([d.api<DockerTask[]>(allTasks, 2_000), d.api<DockerService>('/services/web', 2_000)]);
      const isFresh = (t: DockerTask) => (t.Spec?.ContainerSpec?.Env ?? []).includes(mark(round));
      const fresh = ts.filter((t) => isFresh(t) && t.DesiredState === 'running');
      const running = fresh.filter((t) => t.Status?.State === 'running').length;
      const state = s.UpdateStatus?.State ?? 'none';
      const all = ts.map((t): SlotTask => ({
        id: t.ID,
        slot: t.Slot ?? 0,
        fresh: isFresh(t),
        createdAt: Date.parse(t.CreatedAt ?? '') || 0,
        desiredRunning: t.DesiredState === 'running',
        state: t.Status?.State === 'running' ? 'running' : DOCKER_STOPPED.has(t.Status?.State ?? '') ? 'stopped' : 'other',
        stateAt: Date.parse(t.Status?.Timestamp ?? '') || 0,
      }));
      return { running, completed: state === 'completed', text: `${running}/${fresh.length} new running, update ${state}`, tasks: all };
    },
  };
}

// ---- a round ---------------------------------------------------------------------------------

interface Measured {
  /** Seconds from sending the update until every new task runs. */
  runningS: number;
  /** ... until the update status is completed. */
  completedS: number;
  /** Seconds until the first 1, then each multiple of the parallelism, new tasks ran. */
  steps: number[];
  stages: Stages;
}

/** Where a slot's time goes, per slot, in seconds (see breakdown). */
interface Stages {
  stop: number[];
  release: number[];
  start: number[];
  next: number[];
}

const STAGES = {
  stop: 'new task created → old task stopped',
  release: 'old stopped → new task desired running',
  start: 'desired running → new task running',
  next: 'a slot running → the next slot created',
} as const;

/**
 * Per slot: the new task's creation (the leader's clock) to its old task's stop (the agent's
 * status timestamp), then to the first poll that saw the new task desired running (the bench's
 * clock: up to a poll late), then to its status RUNNING (the agent's); and, with `parallelism`
 * slots in flight, how long after the k-th new task ran the (k + parallelism)-th was created (the
 * status's way to the leader and the updater's reaction). One machine, one clock.
 */
function breakdown(tasks: SlotTask[], desiredAt: ReadonlyMap<string, number>): Stages {
  const out: Stages = { stop: [], release: [], start: [], next: [] };
  const fresh = tasks.filter((t) => t.fresh && t.desiredRunning);
  const s = (ms: number) => ms / 1000;
  for (const n of fresh) {
    const old = tasks.filter((t) => !t.fresh && t.slot === n.slot && t.createdAt < n.createdAt).sort((a, b) => b.createdAt - a.createdAt)[0];
    const at = desiredAt.get(n.id);
    const stopped = old?.state === 'stopped' ? old.stateAt : undefined;
    if (stopped) out.stop.push(s(stopped - n.createdAt));
    if (stopped && at) out.release.push(s(at - stopped));
    if (at && n.state === 'running') out.start.push(s(n.stateAt - at));
  }
  const created = fresh.map((t) => t.createdAt).sort((a, b) => a - b);
  const ran = fresh.filter((t) => t.state === 'running').map((t) => t.stateAt).sort((a, b) => a - b);
  for (let j = PARALLELISM; j < created.length && j - PARALLELISM < ran.length; j++) out.next.push(s(created[j] - ran[j - PARALLELISM]));
  return out;
}

const stagesLine = (st: Stages) => (Object.keys(STAGES) as (keyof Stages)[]).map((k) => `${k} ${st[k].length ? f2(p50(st[k])) : '-'}`).join(', ');

async function measure(side: Side, round: number): Promise<Measured> {
  const t0 = now();
  await side.update(round);
  const steps: number[] = [];
  const desiredAt = new Map<string, number>();
  let tasks: SlotTask[] = [];
  let runningAt: number | undefined;
  let last = '';
  const completedAt = await until(
    () => `${side.name}: ${REPLICAS} new tasks running and the update completed (last seen: ${last})`,
    ROUND_TIMEOUT_MS,
    async () => {
      const s = await side.poll(round);
      const t = now();
      const wall = Date.now();
      for (const x of s.tasks) if (x.fresh && x.desiredRunning && !desiredAt.has(x.id)) desiredAt.set(x.id, wall);
      tasks = s.tasks;
      last = s.text;
      while (steps.length < Math.ceil(REPLICAS / PARALLELISM) + 1 && s.running >= Math.max(1, steps.length * PARALLELISM)) steps.push((t - t0) / 1000);
      if (s.running === REPLICAS) runningAt ??= t;
      return runningAt !== undefined && s.completed ? t : undefined;
    },
    POLL_MS,
  );
  return { runningS: (runningAt! - t0) / 1000, completedS: (completedAt - t0) / 1000, steps, stages: breakdown(tasks, desiredAt) };
}

async function keepLogs(c: LocalCluster, daemons: Dockerd[]): Promise<void> {
  await mkdir(KEEP_LOGS!, { recursive: true });
  for (const h of (await c.state()).hosts) await copyFile(h.log, join(KEEP_LOGS!, `${h.name}.log`));
  for (const [i, d] of daemons.entries()) await copyFile(d.log, join(KEEP_LOGS!, `dockerd${i + 1}.log`));
  console.log(`logs kept in ${KEEP_LOGS}`);
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:update makes network namespaces and runs dockerd: run it as root');
  const bin = mustFindDocker();
  root = await mkdtemp(join(tmpdir(), 'swarm-update-bench-'));
  cleanups.add('root', () => rm(root, { recursive: true, force: true }));
  console.log(`update bench: ${REPLICAS} replicas on 3 hosts, ${ROUNDS} rounds; policy on both: ${POLICY.join(' ')}; load average ${loadavg().map(f2).join(' ')}; state under ${root}`);

  const c = await upCluster(cleanups, root, CLUSTER.name, CLUSTER.subnet, 1, 2);
  const st = await c.state();
  const registry = `${st.gateway}:5000`;
  const image = `${registry}/demo/web:latest`;
  const daemons = await startDockerSwarmHosts(bin, { dir: join(root, 'docker'), hosts: 3, registry, ...DOCKER }, cleanups);
  const ctl = await c.control();
  cleanups.add('control client', async () => ctl.close());
  if (KEEP_LOGS) cleanups.add('logs', () => keepLogs(c, daemons));

  const sides = [await ours(c, ctl, image), await docker(daemons[0], image)];
  const version = (await daemons[0].cli(['version', '--format', '{{.Server.Version}}'])).stdout.trim();
  console.log(`ours: local cluster ${c.name} (1 manager + 2 workers); docker: ${daemons.length} dockerd ${version} (1 manager + 2 workers), each in its netns`);

  const results = new Map(sides.map((s) => [s.name, [] as Measured[]]));
  const step = async (side: Side, round: number): Promise<Measured> => {
    const m = await measure(side, round);
    await sleep(1_000);
    return m;
  };
  const line = (s: Side, m: Measured) =>
    `${s.name} running ${f2(m.runningS)} s, completed ${f2(m.completedS)} s (new running 1/${PARALLELISM}/${2 * PARALLELISM}/... at ${runs(m.steps)} s; per slot p50: ${stagesLine(m.stages)} s)`;
  const warm: string[] = [];
  for (const s of sides) warm.push(line(s, await step(s, 0)));
  console.log(`  warm-up (not counted): ${warm.join('; ')}`);
  for (let i = 1; i <= ROUNDS; i++) {
    const order = i % 2 ? sides : [...sides].reverse();
    const out: string[] = [];
    for (const s of order) {
      const m = await step(s, i);
      results.get(s.name)!.push(m);
      out.push(line(s, m));
    }
    console.log(`  round ${i}: ${out.join('; ')}`);
  }

  console.log(`\nsummary (seconds from sending the update; parallelism ${PARALLELISM}, delay 0s, monitor ${MONITOR} on both; load average now ${loadavg().map(f2).join(' ')}):`);
  for (const s of sides) {
    const r = results.get(s.name)!;
    const run = r.map((m) => m.runningS);
    const done = r.map((m) => m.completedS);
    console.log(`${s.name.padEnd(13)} all new running: p50 ${f2(p50(run))} s, max ${f2(max(run))} s (runs: ${runs(run)});  completed: p50 ${f2(p50(done))} s, max ${f2(max(done))} s (runs: ${runs(done)})`);
  }
  console.log('where a slot\'s time goes (p50 over every slot of every round, seconds):');
  for (const [k, what] of Object.entries(STAGES)) {
    const per = sides.map((s) => {
      const xs = results.get(s.name)!.flatMap((m) => m.stages[k as keyof Stages]);
      return `${s.name} ${xs.length ? f2(p50(xs)) : '-'}`;
    });
    console.log(`  ${k.padEnd(8)} (${what}): ${per.join(', ')}`);
  }
  const [o, k] = sides.map((s) => results.get(s.name)!);
  const ratio = (f: (m: Measured) => number) => p50(o.map(f)) / p50(k.map(f));
  const rr = ratio((m) => m.completedS);
  console.log(`R (p50 ours / p50 docker): completed ${f2(rr)}, all running ${f2(ratio((m) => m.runningS))}; aim R ≤ 0.5: ${rr <= 0.5 ? 'met' : 'not met'}`);
  console.log(`update ours/docker-swarm: ${f2(rr)}`);
}

await runBench('update bench', main, () => cleanups.all());
