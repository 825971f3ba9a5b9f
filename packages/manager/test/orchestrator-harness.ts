// Shared helpers of the orchestrator and scheduler tests: objects, controllers on a real store
// with a fake clock, a fake agent, and a way to wait until the controllers are quiet.
import {
  type Node,
  type Service,
  ServiceSpec,
  type Task,
  type RestartPolicy,
  NodeRole,
  NodeState,
  NodeAvailability,
  TaskState,
} from '@swarmd/proto';
import { createStore, makeObject, cloneObject, type MemoryStore } from '../src/store/index.js';
import { FakeClock } from '@swarmd/common';
import type { Controller as StoreController } from '../src/controller-kit/index.js';
import { replicatedOrchestratorController } from '../src/orchestrator/replicated/replicated.js';
import { globalOrchestratorController } from '../src/orchestrator/global/global.js';
import { taskReaperController } from '../src/orchestrator/task-reaper/task-reaper.js';
import { schedulerController } from '../src/scheduler/scheduler.js';
import { updaterController } from '../src/update/updater.js';
import { allocatorController } from '../src/allocator/allocator.js';

export interface NodeOpts {
  labels?: Record<string, string>;
  state?: NodeState;
  availability?: NodeAvailability;
  cpus?: number;
  memory?: number;
  role?: NodeRole;
  os?: string;
  arch?: string;
  hostname?: string;
}

export function mkNode(id: string, o: NodeOpts = {}): Node {
  return makeObject('node', {
    id,
    role: o.role ?? NodeRole.NODE_ROLE_WORKER,
    spec: { annotations: { name: '', labels: o.labels ?? {} }, desiredRole: o.role ?? NodeRole.NODE_ROLE_WORKER, availability: o.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE },
    description: {
      hostname: o.hostname ?? `host-${id}`,
      platform: { os: o.os ?? 'linux', architecture: o.arch ?? 'x86_64' },
      resources: { nanoCpus: (o.cpus ?? 4) * 1e9, memoryBytes: o.memory ?? 8 * 2 ** 30 },
      engineVersion: '',
      volumes: [], engineLabels: {},
    },
    status: { state: o.state ?? NodeState.NODE_STATE_READY, message: '', addr: '' },
  });
}

export interface ServiceOpts {
  replicas?: number;
  global?: boolean;
  constraints?: string[];
  prefs?: string[];
  cpus?: number;
  memory?: number;
  restart?: Partial<RestartPolicy>;
  maxReplicas?: number;
}

export function mkSpec(name: string, o: ServiceOpts = {}): ServiceSpec {
  return ServiceSpec.fromPartial({
    annotations: { name },
    task: {
      container: { image: 'nginx:1' },
      resources: o.cpus || o.memory ? { reservations: { nanoCpus: (o.cpus ?? 0) * 1e9, memoryBytes: o.memory ?? 0 } } : undefined,
      restart: o.restart,
      placement:
        o.constraints || o.prefs || o.maxReplicas
          ? { constraints: o.constraints ?? [], preferences: (o.prefs ?? []).map((d) => ({ spreadDescriptor: d })), maxReplicas: o.maxReplicas ?? 0 }
          : undefined,
    },
    mode: o.global ? { $case: 'global', global: {} } : { $case: 'replicated', replicated: { replicas: o.replicas ?? 1 } },
  });
}

export function mkService(id: string, name: string, o: ServiceOpts = {}): Service {
  return makeObject('service', { id, spec: mkSpec(name, o), specVersion: 1 });
}

export type Which = 'replicated' | 'global' | 'reaper' | 'scheduler' | 'updater' | 'allocator';

export interface Harness {
  store: MemoryStore;
  clock: FakeClock;
  stop(): Promise<void>;
  /** Waits until no controller writes any more (the store version stops moving). */
  settle(): Promise<void>;
  tasks(serviceId?: string): Readonly<Task>[];
  /** Runnable tasks (desired ≤ RUNNING) of a service. */
  live(serviceId: string): Readonly<Task>[];
  /** Live tasks per node id. */
  perNode(serviceId: string): Map<string, number>;
  /** The fake agents: ASSIGNED → RUNNING, desired SHUTDOWN → SHUTDOWN, except on `down` nodes. */
  agents(opts?: { skip?: string[] }): Promise<void>;
  setTaskState(id: string, state: TaskState, extra?: { exitCode?: number }): Promise<void>;
  updateNode(id: string, fn: (n: Node) => void): Promise<void>;
  updateService(id: string, fn: (s: Service) => void): Promise<void>;
}

let ids = 0;
export function harness(which: Which[] = ['replicated', 'global', 'updater', 'reaper', 'scheduler'], opts: { orphanGraceMs?: number } = {}): Harness {
  const clock = new FakeClock();
  const store = createStore({ clock });
  const ac = new AbortController();
  const newId = () => `t${String(++ids).padStart(6, '0')}`;
  const make: Record<Which, () => StoreController> = {
    replicated: () => replicatedOrchestratorController({ newId }),
    global: () => globalOrchestratorController({ newId }),
    reaper: () => taskReaperController(opts),
    scheduler: () => schedulerController(),
    updater: () => updaterController({ newId }),
    allocator: () => allocatorController(),
  };
  const runs = which.map((w) => make[w]().run({ store, clock }, ac.signal));
  const h: Harness = {
    store,
    clock,
    async stop() {
      ac.abort();
      await Promise.allSettled(runs);
    },
    async settle() {
      let quiet = 0;
      let v = store.version();
      while (quiet < 5) {
        await new Promise((r) => setImmediate(r));
        if (store.version() === v) quiet++;
        else {
          quiet = 0;
          v = store.version();
        }
      }
    },
    tasks: (serviceId) => store.view((tx) => (serviceId ? tx.find('task', { serviceId }) : tx.find('task'))),
    live: (serviceId) => h.tasks(serviceId).filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING),
    perNode(serviceId) {
      const m = new Map<string, number>();
      for (const t of h.live(serviceId)) if (t.nodeId) m.set(t.nodeId, (m.get(t.nodeId) ?? 0) + 1);
      return m;
    },
    async agents(o = {}) {
      const skip = new Set(o.skip ?? []);
      await store.update((tx) => {
        for (const t of tx.find('task')) {
          if (!t.nodeId || skip.has(t.nodeId)) continue;
          const s = t.status?.state ?? 0;
          let next: TaskState | undefined;
          if (t.desiredState > TaskState.TASK_STATE_RUNNING && s >= TaskState.TASK_STATE_ASSIGNED && s <= TaskState.TASK_STATE_RUNNING) next = TaskState.TASK_STATE_SHUTDOWN;
          else if (t.desiredState === TaskState.TASK_STATE_RUNNING && s >= TaskState.TASK_STATE_ASSIGNED && s < TaskState.TASK_STATE_RUNNING) next = TaskState.TASK_STATE_RUNNING;
          if (next === undefined) continue;
          const c = cloneObject('task', t);
          c.status = { ...c.status!, state: next, message: next === TaskState.TASK_STATE_RUNNING ? 'started' : 'shutdown' };
          tx.update('task', c);
        }
      });
    },
    async setTaskState(id, state, extra = {}) {
      await store.update((tx) => {
        const c = cloneObject('task', tx.get('task', id)!);
        c.status = { ...c.status!, state, container: { containerId: '', pid: 0, exitCode: extra.exitCode ?? 0, oomKilled: false, health: 0, healthOutput: '' } };
        tx.update('task', c);
      });
    },
    async updateNode(id, fn) {
      await store.update((tx) => {
        const c = cloneObject('node', tx.get('node', id)!);
        fn(c);
        tx.update('node', c);
      });
    },
    async updateService(id, fn) {
      await store.update((tx) => {
        const c = cloneObject('service', tx.get('service', id)!);
        fn(c);
        c.specVersion++;
        tx.update('service', c);
      });
    },
  };
  return h;
}
