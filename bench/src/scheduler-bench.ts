/**
 * bench:scheduler — placing 100,000 tasks on 1,000 simulated nodes, in-process, with constraints,
 * spread and placement preferences:
 *
 *   1. the placement core (NodeSet + placeTaskGroup: filter once per service, a heap per
 *      preference leaf) against a naive baseline in the same run (per task, run every filter on
 *      every node and take the best: what a scheduler without ordered structures does);
 *   2. through the store: tasks PENDING in a real MemoryStore (LocalLog, no Raft), the scheduler
 *      controller watching it, until every task is ASSIGNED (one store transaction per batch of
 *      200 placements).
 *
 *   npm run bench:scheduler   (BENCH_TASKS=100000 BENCH_NODES=1000 BENCH_STORE_TASKS=100000)
 *
 * The last line is `scheduler: N tasks/s` (the placement core).
 */
import { performance } from 'node:perf_hooks';
import { ContainerSpec, NodeRole, NodeState, NodeAvailability, TaskState, type Node, type Service, type Task } from '@swarmd/proto';
import { createStore, makeObject, NodeSet, Pipeline, placeTaskGroup, newTask, schedulerController } from '@swarmd/manager';
import { FakeClock } from '@swarmd/common';

const TASKS = Number(process.env.BENCH_TASKS ?? 100_000);
const NODES = Number(process.env.BENCH_NODES ?? 1_000);
const STORE_TASKS = Number(process.env.BENCH_STORE_TASKS ?? TASKS);
const PER_SERVICE = 100;
const ZONES = ['a', 'b', 'c', 'd', 'e'];

function nodes(): Node[] {
  return Array.from({ length: NODES }, (_, i) =>
    makeObject('node', {
      id: `node${String(i).padStart(5, '0')}`,
      role: NodeRole.NODE_ROLE_WORKER,
      spec: { annotations: { name: '', labels: { zone: ZONES[i % ZONES.length], disk: i % 4 === 0 ? 'hdd' : 'ssd' } }, desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
      description: { hostname: `h${i}`, platform: { os: 'linux', architecture: 'amd64' }, resources: { nanoCpus: 64e9, memoryBytes: 256 * 2 ** 30 }, engineVersion: '', volumes: [], engineLabels: {} },
      status: { state: NodeState.NODE_STATE_READY, message: '', addr: '' },
    }),
  );
}

/** Services of 100 tasks: a third plain spread, a third constrained to ssd nodes, a third spread by zone. */
function services(total: number): { service: Service; tasks: Task[] }[] {
  const out: { service: Service; tasks: Task[] }[] = [];
  for (let s = 0; s * PER_SERVICE < total; s++) {
    const kind = s % 3;
    const service = makeObject('service', {
      id: `svc${String(s).padStart(5, '0')}`,
      specVersion: 1,
      spec: {
        annotations: { name: `svc${s}`, labels: {} },
        task: {
          container: ContainerSpec.fromPartial({ image: 'nginx:1' }),
          resources: { limits: undefined, reservations: { nanoCpus: 1e7, memoryBytes: 2 ** 20 }, pidsLimit: 0 },
          restart: undefined,
          placement: { constraints: kind === 1 ? ['node.labels.disk==ssd'] : [], preferences: kind === 2 ? [{ spreadDescriptor: 'node.labels.zone' }] : [], platforms: [], maxReplicas: 0 },
          networks: [],
          forceUpdate: 0,
        },
        mode: { $case: 'replicated', replicated: { replicas: PER_SERVICE } },
        update: undefined,
        rollback: undefined,
        endpoint: undefined,
      },
    });
    const n = Math.min(PER_SERVICE, total - s * PER_SERVICE);
    const tasks = Array.from({ length: n }, (_, i) => {
      const t = newTask(service, { id: `${service.id}-${String(i).padStart(3, '0')}`, slot: i + 1, now: 0 });
      t.status = { ...t.status!, state: TaskState.TASK_STATE_PENDING };
      return t;
    });
    out.push({ service, tasks });
  }
  return out;
}

function core(groups: { tasks: Task[] }[]): { rate: number; spreadOk: boolean } {
  const set = new NodeSet();
  for (const n of nodes()) set.upsertNode(n);
  const pipeline = new Pipeline();
  let placed = 0;
  const t0 = performance.now();
  for (const g of groups) placed += placeTaskGroup(g.tasks, set, pipeline).placed.length;
  const ms = performance.now() - t0;
  if (placed !== groups.reduce((s, g) => s + g.tasks.length, 0)) throw new Error(`placed only ${placed}`);
  // Spread check: no node holds more than ceil(100 / feasible nodes) + 1 tasks of one service.
  const max = Math.max(...set.all().map((n) => Math.max(0, ...n.byService.values())));
  return { rate: placed / (ms / 1000), spreadOk: max <= 1 };
}

/** The baseline: for every task, every filter on every node, then the best by (service count, total). */
function naive(groups: { tasks: Task[] }[]): number {
  const set = new NodeSet();
  for (const n of nodes()) set.upsertNode(n);
  const pipeline = new Pipeline();
  let placed = 0;
  const t0 = performance.now();
  for (const g of groups) {
    for (const t of g.tasks) {
      pipeline.setTask(t);
      let best: ReturnType<NodeSet['all']>[number] | undefined;
      for (const n of set.all()) {
        if (!pipeline.process(n)) continue;
        if (!best) best = n;
        else {
          const a = n.byService.get(t.serviceId) ?? 0;
          const b = best.byService.get(t.serviceId) ?? 0;
          if (a < b || (a === b && n.activeTasks < best.activeTasks)) best = n;
        }
      }
      if (best) {
        set.assignTask(t, best.id);
        placed++;
      }
    }
  }
  return placed / ((performance.now() - t0) / 1000);
}

async function throughStore(groups: { service: Service; tasks: Task[] }[]): Promise<number> {
  const clock = new FakeClock();
  const store = createStore({ clock });
  await store.batch(async (b) => {
    for (const n of nodes()) await b.update((tx) => tx.create('node', n));
    for (const g of groups) await b.update((tx) => tx.create('service', g.service));
    for (const g of groups) for (const t of g.tasks) await b.update((tx) => tx.create('task', t));
  });
  const total = groups.reduce((s, g) => s + g.tasks.length, 0);
  const ac = new AbortController();
  let assigned = 0;
  const done = new Promise<void>((resolve) => {
    void (async () => {
      for await (const e of store.watch()) {
        if (e.type === 'update' && e.kind === 'task' && e.object.status?.state === TaskState.TASK_STATE_ASSIGNED && e.old?.status?.state !== TaskState.TASK_STATE_ASSIGNED) {
          if (++assigned === total) break;
        }
      }
      resolve();
    })();
  });
  const t0 = performance.now();
  const run = schedulerController().run({ store, clock }, ac.signal);
  await done;
  const ms = performance.now() - t0;
  ac.abort();
  await run;
  return total / (ms / 1000);
}

async function main(): Promise<void> {
  const groups = services(TASKS);
  console.log(`bench:scheduler: ${TASKS} tasks (${groups.length} services of ${PER_SERVICE}: spread, constraint node.labels.disk==ssd, spread=node.labels.zone) on ${NODES} nodes`);
  core(services(Math.min(TASKS, 10_000))); // warm-up
  const c = core(groups);
  console.log(`  placement core:        ${Math.round(c.rate)} tasks/s (spread even: ${c.spreadOk})`);
  const naiveTasks = Math.min(TASKS, 10_000);
  const n = naive(services(naiveTasks));
  console.log(`  naive full scan:       ${Math.round(n)} tasks/s (${naiveTasks} tasks)  → core is ${(c.rate / n).toFixed(1)}× faster`);
  if (STORE_TASKS > 0) {
    const s = await throughStore(services(STORE_TASKS));
    console.log(`  through the store:     ${Math.round(s)} tasks/s (${STORE_TASKS} tasks: watch → place → batched transactions → ASSIGNED events)`);
  }
  console.log(`scheduler: ${Math.round(c.rate)} tasks/s`);
}

await main();
