import { type Cluster, type Node, type Service, type Task, TaskState, NodeState } from '@swarmd/proto';
import type { MemoryStore, ReadTx, Tx } from '../../store/memory-store.js';
import { cloneObject } from '../../store/kinds.js';
import { onKind, type ObjectEvent } from '../../store/events.js';
import { type Controller, watchLoopController } from '../../controller-kit/index.js';
import { byCreation, isRunnable, mayBeRunningOnNode, observedState } from '../../controller-kit/task.js';
import { shutdownTask } from '../../controller-kit/task-writes.js';

/** SwarmKit's default: tasks kept per slot (replicated) or per node (global), the current one included. */
export const DEFAULT_TASK_HISTORY = 5;
/** How long tasks on a down node stay as they are before they are marked ORPHANED (SwarmKit: 24 h). */
export const DEFAULT_ORPHAN_GRACE_MS = 24 * 60 * 60 * 1000;

export interface TaskReaperOptions {
  orphanGraceMs?: number;
}

/** The cluster's task_history_retention_limit: 5 when unset; negative keeps everything. */
export function taskHistoryLimit(cluster: Readonly<Cluster> | undefined): number {
  const o = cluster?.spec?.orchestration;
  return o ? o.taskHistoryRetentionLimit : DEFAULT_TASK_HISTORY;
}

/** A task that can go: it never reached a node, or it stopped. */
export const isReapable = (t: Readonly<Task>): boolean => observedState(t) < TaskState.TASK_STATE_ASSIGNED || observedState(t) > TaskState.TASK_STATE_RUNNING;

/** The history key of a task: its slot, or its node for global tasks (slot 0). */
export const historyKey = (t: Readonly<Task>): string => (t.slot > 0 ? `${t.serviceId}/${t.slot}` : `${t.serviceId}/node/${t.nodeId}`);

/**
 * Which tasks of one slot (or one global node) to delete (pure): the slot keeps at most `limit`
 * tasks (the live one included), oldest stopped ones go first, and a task still running or
 * desired running is never deleted. With a restart policy's max_attempts, the slot keeps at least
 * max_attempts + 1 tasks, since the restart supervisor counts attempts from this history.
 */
export function tasksToReap(slotTasks: readonly Readonly<Task>[], limit: number, maxAttempts = 0): Readonly<Task>[] {
  if (limit < 0) return [];
  const keep = Math.max(limit, maxAttempts > 0 ? maxAttempts + 1 : 0);
  if (slotTasks.length <= keep) return [];
  const out: Readonly<Task>[] = [];
  let remaining = slotTasks.length;
  for (const t of [...slotTasks].sort(byCreation)) {
    if (remaining <= keep) break;
    if (isRunnable(t) || !isReapable(t)) continue;
    out.push(t);
    remaining--;
  }
  return out;
}

/**
 * The task reaper (SwarmKit's orchestrator/taskreaper), plus node-down orphaning:
 *  - keeps each slot's history to the cluster's task_history_retention_limit;
 *  - tasks of a deleted service get desired SHUTDOWN, and are deleted once stopped (or never
 *    handed to a node);
 *  - tasks on a node that has been DOWN for `orphanGraceMs` (measured from the node's last
 *    update) and still not stopped are marked ORPHANED: they will never report again.
 */
export class TaskReaper {
  private readonly dirtyKeys = new Set<string>();
  private readonly dirtyServices = new Set<string>();
  private readonly dirtyNodes = new Set<string>();
  private readonly downNodes = new Map<string, number>();
  private all = true;
  private readonly grace: number;

  constructor(
    private readonly store: MemoryStore,
    private readonly now: () => number,
    opts: TaskReaperOptions = {},
  ) {
    this.grace = opts.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS;
  }

  init(_tx: ReadTx): void {
    this.all = true;
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'task':
        if (e.type === 'delete') return;
        this.dirtyKeys.add(historyKey(e.object));
        this.dirtyServices.add(e.object.serviceId);
        break;
      case 'service':
        this.dirtyServices.add(e.object.id);
        break;
      case 'cluster':
        this.all = true;
        break;
      case 'node':
        this.dirtyNodes.add(e.object.id);
        break;
    }
  }

  nextWake(): number | undefined {
    let min: number | undefined;
    for (const at of this.downNodes.values()) if (min === undefined || at < min) min = at;
    return min;
  }

  async tick(): Promise<void> {
    const now = this.now();
    for (const [id, at] of this.downNodes) if (at <= now) this.dirtyNodes.add(id);
    type Write = (tx: Tx) => void;
    const writes: Write[] = this.store.view((tx) => {
      const w: Write[] = [];
      const cluster = tx.find('cluster')[0];
      const limit = taskHistoryLimit(cluster);
      if (this.all) {
        for (const t of tx.find('task')) {
          this.dirtyKeys.add(historyKey(t));
          this.dirtyServices.add(t.serviceId);
        }
        for (const n of tx.find('node')) this.dirtyNodes.add(n.id);
        this.all = false;
      }
      // Deleted services: stop their tasks, delete the stopped ones.
      for (const sid of this.dirtyServices) {
        if (!sid || tx.get('service', sid)) continue;
        for (const t of tx.find('task', { serviceId: sid })) {
          if (isRunnable(t)) w.push((x) => shutdownTask(x, t, 'service removed', now));
          else if (isReapable(t)) w.push((x) => {
            if (x.get('task', t.id)) x.delete('task', t.id);
          });
        }
      }
      this.dirtyServices.clear();
      // History per slot.
      const services = new Map<string, Readonly<Service> | undefined>();
      for (const key of this.dirtyKeys) {
        const [sid, rest, nodeId] = key.split('/') as [string, string, string | undefined];
        if (!services.has(sid)) services.set(sid, tx.get('service', sid));
        const service = services.get(sid);
        if (!service) continue;
        const slotTasks = rest === 'node' ? tx.find('task', { serviceId: sid }).filter((t) => t.slot === 0 && t.nodeId === nodeId) : tx.find('task', { serviceId: sid, slot: Number(rest) });
        for (const t of tasksToReap(slotTasks, limit, service.spec?.task?.restart?.maxAttempts ?? 0)) w.push((x) => {
            if (x.get('task', t.id)) x.delete('task', t.id);
          });
      }
      this.dirtyKeys.clear();
      // Down nodes: orphan what they will never report on.
      for (const nid of this.dirtyNodes) {
        const n = tx.get('node', nid);
        if (!n || !isDown(n)) {
          this.downNodes.delete(nid);
          continue;
        }
        const at = (n.meta?.updatedAt ?? 0) + this.grace;
        if (at > now) {
          this.downNodes.set(nid, at);
          continue;
        }
        this.downNodes.delete(nid);
        for (const t of tx.find('task', { nodeId: nid })) {
          if (!mayBeRunningOnNode(t)) continue;
          w.push((x) => {
            const c = cloneObject('task', t);
            c.status = { ...c.status!, state: TaskState.TASK_STATE_ORPHANED, timestamp: now, message: `node ${nid} down since ${new Date(n.meta?.updatedAt ?? 0).toISOString()}`, err: '' };
            x.update('task', c);
          });
        }
      }
      this.dirtyNodes.clear();
      return w;
    });
    if (writes.length === 0) return;
    let failed = false;
    try {
      await this.store.batch(async (b) => {
        for (const fn of writes) {
          try {
            await b.update(fn);
          } catch {
            failed = true;
          }
        }
      });
    } catch {
      failed = true;
    }
    if (failed) this.all = true;
  }
}

function isDown(n: Readonly<Node>): boolean {
  return n.status?.state === NodeState.NODE_STATE_DOWN;
}

/** The task reaper as a leader-only controller (name "orchestrator/task-reaper"). */
export function taskReaperController(opts: TaskReaperOptions = {}): Controller {
  return watchLoopController({
    name: 'orchestrator/task-reaper',
    component: 'manager/orchestrator/task-reaper',
    matchers: [onKind('task'), onKind('service', 'delete'), onKind('cluster'), onKind('node')],
    create: (deps) => new TaskReaper(deps.store, () => deps.clock.now(), opts),
  });
}
