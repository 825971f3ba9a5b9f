import { type Task, TaskState } from '@swarmd/proto';
import { metrics } from '@swarmd/common/metrics';
import type { MemoryStore, ReadTx } from '../store/memory-store.js';
import { onKind, type ObjectEvent } from '../store/events.js';
import { type Controller, watchLoopController } from '../controller-kit/index.js';
import { networksAllocated } from '../specs/networks.js';
import { NodeSet, hostPortsOf, isNodeSchedulable } from './node-info.js';
import { Pipeline } from './pipeline.js';
import { placeTaskGroup, checkPreassigned, type Placement } from './placement.js';

export interface SchedulerOptions {
  /**
   * Also take tasks in state NEW (default true). There is no allocator yet (SwarmKit's allocator
   * moves NEW → PENDING once networks and ports are allocated); until there is one, the scheduler
   * treats a NEW task as PENDING itself. Set false once an allocator runs.
   */
  takeNewTasks?: boolean;
  /**
   * Tasks placed per tick at most (default 2,000). The rest wait for the next tick, after the
   * loop has let every watcher drain the events of this one: one huge tick would write more
   * events than a watcher may buffer (the store drops a watcher 10,000 events behind).
   */
  maxPerTick?: number;
}

/** The message of a task waiting for a node (SwarmKit's wording). */
export const PENDING_MESSAGE = 'pending task scheduling';
export const ASSIGNED_MESSAGE = 'scheduler assigned task to node';

/**
 * Whether the scheduler should place this task now. A task desired READY (a rolling update's
 * stop-first replacement, waiting for the old task to stop) is placed early so its node can pull
 * the image, unless it publishes host-mode ports: an agent claims those when it prepares a task,
 * and the old task may still hold them on that very node. It is placed once wanted RUNNING.
 * A task on overlay networks waits for the allocator to give it its addresses.
 */
export function isSchedulable(t: Readonly<Task>, takeNew: boolean): boolean {
  const s = t.status?.state ?? TaskState.TASK_STATE_NEW;
  if (t.desiredState < TaskState.TASK_STATE_RUNNING && hostPortsOf(t).length > 0) return false;
  // As SwarmKit: the allocator first (an address on each overlay network), then placement.
  if (!networksAllocated(t)) return false;
  return t.desiredState <= TaskState.TASK_STATE_RUNNING && (s === TaskState.TASK_STATE_PENDING || (takeNew && s === TaskState.TASK_STATE_NEW));
}

/** Placements written per store callback. */
const WRITE_CHUNK = 100;

const groupKey = (t: Readonly<Task>): string => `${t.serviceId}\u0000${t.specVersion}`;
const byId = (a: { id: string }, b: { id: string }): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** Whole services together (by service, then spec version), each in slot order, then by id. */
const taskOrder = (a: Readonly<Task>, b: Readonly<Task>): number => cmp(a.serviceId, b.serviceId) || a.specVersion - b.specVersion || a.slot - b.slot || byId(a, b);

/**
 * The scheduler (SwarmKit's manager/scheduler): PENDING (and, with no allocator, NEW) tasks with
 * desired state ≤ RUNNING get a node: `node_id` + state ASSIGNED, written in batches. A task that
 * fits nowhere stays PENDING with `status.err` = the pipeline's explanation (`service ps` shows
 * it) and is tried again when nodes change or a task frees resources. Tasks that come with a
 * node (global services) are checked against that node only.
 */
export class Scheduler {
  private readonly nodeSet = new NodeSet();
  /** Tasks waiting for placement, by id. */
  private readonly pending = new Map<string, Readonly<Task>>();
  /** Pending tasks not tried since they arrived or changed. */
  private readonly fresh = new Set<string>();
  /** Something changed that may let old pending tasks fit (a node, freed resources). */
  private retryAll = true;
  private readonly pipeline = new Pipeline();
  private readonly takeNew: boolean;
  private readonly maxPerTick: number;
  /** Tasks left over by a capped tick, to place first next time (from `backlogHead` on). */
  private backlog: string[] = [];
  private backlogHead = 0;
  /** The ids in backlog[backlogHead..]: a tick adds fresh tasks to it without scanning it. */
  private readonly inBacklog = new Set<string>();

  constructor(
    private readonly store: MemoryStore,
    private readonly now: () => number,
    opts: SchedulerOptions = {},
  ) {
    this.takeNew = opts.takeNewTasks ?? true;
    this.maxPerTick = Math.max(1, opts.maxPerTick ?? 2_000);
  }

  /** Whether a capped tick left tasks for the next one. */
  more(): boolean {
    return this.inBacklog.size > 0;
  }

  /** Replaces the backlog. */
  private setBacklog(ids: string[]): void {
    this.backlog = ids;
    this.backlogHead = 0;
    this.inBacklog.clear();
    for (const id of ids) this.inBacklog.add(id);
  }

  /** Takes up to `n` ids off the front of the backlog (each tick's cost is its own share, not the backlog's length). */
  private takeBacklog(n: number): string[] {
    const take = this.backlog.slice(this.backlogHead, this.backlogHead + n);
    this.backlogHead += take.length;
    for (const id of take) this.inBacklog.delete(id);
    if (this.backlogHead >= this.backlog.length) this.setBacklog([]);
    else if (this.backlogHead > 4096 && this.backlogHead * 2 > this.backlog.length) {
      this.backlog = this.backlog.slice(this.backlogHead);
      this.backlogHead = 0;
    }
    return take;
  }

  /** Loads nodes and tasks (the initial read). */
  init(tx: ReadTx): void {
    for (const n of tx.find('node')) this.nodeSet.upsertNode(n);
    for (const t of tx.find('task')) this.observeTask(t);
    this.retryAll = true;
  }

  onEvent(e: ObjectEvent): void {
    if (e.kind === 'node') {
      if (e.type === 'delete') this.nodeSet.removeNode(e.object.id);
      else this.nodeSet.upsertNode(e.object);
      this.retryAll = true;
    } else if (e.kind === 'task') {
      if (e.type === 'delete') {
        this.nodeSet.removeTask(e.object.id);
        this.pending.delete(e.object.id);
        this.fresh.delete(e.object.id);
        if (e.object.nodeId) this.retryAll = true;
      } else {
        const hadNode = e.old?.nodeId && (e.old.status?.state ?? 0) <= TaskState.TASK_STATE_RUNNING;
        this.observeTask(e.object);
        // A task that stopped or moved frees what it held.
        if (hadNode && (e.object.status?.state ?? 0) > TaskState.TASK_STATE_RUNNING) this.retryAll = true;
        if (hadNode && e.old!.desiredState <= TaskState.TASK_STATE_RUNNING && e.object.desiredState > TaskState.TASK_STATE_RUNNING) this.retryAll = true;
      }
    }
  }

  private observeTask(t: Readonly<Task>): void {
    this.nodeSet.applyTask(t);
    if (isSchedulable(t, this.takeNew)) {
      const prev = this.pending.get(t.id);
      this.pending.set(t.id, t);
      // Our own "still pending, here is why" write comes back: no need to try it again.
      if (!prev || prev.specVersion !== t.specVersion || prev.nodeId !== t.nodeId || (prev.status?.state ?? 0) !== (t.status?.state ?? 0) || t.status?.err === '') this.fresh.add(t.id);
    } else {
      this.pending.delete(t.id);
      this.fresh.delete(t.id);
    }
  }

  /** Tasks waiting for a node now (for tests and metrics). */
  pendingCount(): number {
    return this.pending.size;
  }

  /** Places what is waiting and writes the outcome. */
  async tick(): Promise<void> {
    let tasks: Readonly<Task>[];
    if (!this.retryAll && this.inBacklog.size > 0) {
      // Go on with the ordered backlog; tasks that arrived since queue behind it.
      for (const id of this.fresh) {
        if (this.inBacklog.has(id)) continue;
        this.backlog.push(id);
        this.inBacklog.add(id);
      }
      tasks = this.takeBacklog(this.maxPerTick)
        .map((id) => this.pending.get(id))
        .filter((t): t is Readonly<Task> => t !== undefined);
    } else {
      const ids = this.retryAll ? [...this.pending.keys()] : [...this.fresh];
      this.setBacklog([]);
      tasks = ids.map((id) => this.pending.get(id)).filter((t): t is Readonly<Task> => t !== undefined);
      if (tasks.length > this.maxPerTick) {
        // Whole services first, in a stable order; the rest in the next ticks.
        tasks.sort(taskOrder);
        this.setBacklog(tasks.slice(this.maxPerTick).map((t) => t.id));
        tasks = tasks.slice(0, this.maxPerTick);
      }
    }
    this.retryAll = false;
    this.fresh.clear();
    if (tasks.length === 0) return;
    const placements: Placement[] = [];
    const unplaced: { task: Readonly<Task>; why: string }[] = [];
    // Preassigned first: they have nowhere else to go.
    const groups = new Map<string, Readonly<Task>[]>();
    for (const t of tasks) {
      if (t.nodeId) {
        const why = checkPreassigned(t, this.nodeSet, this.pipeline);
        if (why === undefined) {
          this.nodeSet.assignTask(t, t.nodeId);
          placements.push({ taskId: t.id, nodeId: t.nodeId });
        } else unplaced.push({ task: t, why });
        continue;
      }
      const k = groupKey(t);
      let g = groups.get(k);
      if (!g) groups.set(k, (g = []));
      g.push(t);
    }
    for (const k of [...groups.keys()].sort()) {
      const g = groups.get(k)!.sort((a, b) => a.slot - b.slot || byId(a, b));
      const r = placeTaskGroup(g, this.nodeSet, this.pipeline);
      placements.push(...r.placed);
      if (r.unplaced.length > 0) for (const id of r.unplaced) unplaced.push({ task: this.pending.get(id)!, why: r.explanation ?? 'no suitable node' });
    }
    await this.write(placements, unplaced);
  }

  private async write(placements: Placement[], unplaced: { task: Readonly<Task>; why: string }[]): Promise<void> {
    const now = this.now();
    const failed: string[] = [];
    try {
      await this.store.batch(async (b) => {
        // Many placements per callback (the store stages each callback separately, which has a
        // cost per callback); a task that changed since it was read is skipped and re-read.
        for (let i = 0; i < placements.length; i += WRITE_CHUNK) {
          const chunk = placements.slice(i, i + WRITE_CHUNK);
          const skipped: string[] = [];
          /** When each placed task was created (for the scheduling delay metric). */
          const createdAt: number[] = [];
          try {
            await b.update((tx) => {
              for (const p of chunk) {
                const cur = tx.get('task', p.taskId);
                const node = tx.get('node', p.nodeId);
                // The decision is dropped when the task or the node changed meanwhile (e.g. drained).
                if (!cur || !isSchedulable(cur, this.takeNew) || (cur.nodeId && cur.nodeId !== p.nodeId) || !node || !isNodeSchedulable(node)) {
                  skipped.push(p.taskId);
                  continue;
                }
                createdAt.push(Number(cur.meta?.createdAt ?? 0));
                // A shallow copy is enough: the store copies what it is given.
                tx.update('task', {
                  ...cur,
                  nodeId: p.nodeId,
                  status: { ...(cur.status ?? emptyStatus()), state: TaskState.TASK_STATE_ASSIGNED, timestamp: now, message: ASSIGNED_MESSAGE, err: '' },
                });
              }
            });
            for (const p of chunk) this.pending.delete(p.taskId);
            failed.push(...skipped);
            countAssigned(createdAt, now);
          } catch {
            failed.push(...chunk.map((p) => p.taskId));
          }
        }
        for (const u of unplaced) {
          const s = u.task.status;
          if (s?.state === TaskState.TASK_STATE_PENDING && s.err === u.why) continue;
          try {
            await b.update((tx) => {
              const cur = tx.get('task', u.task.id);
              if (!cur || !isSchedulable(cur, this.takeNew)) return;
              if (cur.status?.state === TaskState.TASK_STATE_PENDING && cur.status.err === u.why) return;
              tx.update('task', { ...cur, status: { ...(cur.status ?? emptyStatus()), state: TaskState.TASK_STATE_PENDING, timestamp: now, message: PENDING_MESSAGE, err: u.why } });
            });
            metrics.schedulerDecisions.inc({ result: 'unschedulable' });
          } catch {
            failed.push(u.task.id);
          }
        }
      });
    } catch {
      // A chunk refused at apply: re-read everything we touched.
      for (const p of placements) failed.push(p.taskId);
    }
    if (failed.length > 0) this.resync(failed);
  }

  /** After a refused write: take these tasks as the store has them now. */
  private resync(ids: string[]): void {
    this.store.view((tx) => {
      for (const id of ids) {
        const t = tx.get('task', id);
        if (t) this.observeTask(t);
        else {
          this.nodeSet.removeTask(id);
          this.pending.delete(id);
        }
      }
    });
    for (const id of ids) if (this.pending.has(id)) this.fresh.add(id);
  }
}

/** Metrics of the placements written: decisions, and the delay from each task's creation. */
function countAssigned(createdAt: readonly number[], now: number): void {
  if (createdAt.length > 0) metrics.schedulerDecisions.inc({ result: 'assigned' }, createdAt.length);
  for (const created of createdAt) if (created > 0 && now >= created) metrics.schedulerDelaySeconds.observe((now - created) / 1000);
}

function emptyStatus(): NonNullable<Task['status']> {
  return { timestamp: 0, state: TaskState.TASK_STATE_NEW, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined };
}

/** The scheduler as a leader-only controller (name "scheduler"). */
export function schedulerController(opts: SchedulerOptions = {}): Controller {
  return watchLoopController({
    name: 'scheduler',
    component: 'manager/scheduler',
    matchers: [onKind('node'), onKind('task')],
    create: (deps) => new Scheduler(deps.store, () => deps.clock.now(), opts),
  });
}
