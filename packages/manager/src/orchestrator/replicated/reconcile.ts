import { type Node, type Service, type Task, TaskState } from '@swarmd/proto';
import { Heap } from '../../controller-kit/heap.js';
import { restartDecision } from '../restart/restart-policy.js';
import { byCreation, createdAt, isDead, isRunnable, isUnhealthy, nodeProblem, observedState } from '../../controller-kit/task.js';
import { isTaskDirty } from '../../controller-kit/dirty.js';

export interface TaskChange {
  task: Readonly<Task>;
  reason: string;
}

export interface ReconcileResult {
  /** Slots that need a new task (scale up, or a slot with no runnable task). */
  create: number[];
  /** Tasks to stop (desired SHUTDOWN) and replace by a new task in the same slot. */
  replace: TaskChange[];
  /** Tasks to stop (desired SHUTDOWN) with no replacement (scale down, duplicates). */
  shutdown: TaskChange[];
  /** When a restart delay ends: reconcile again then. */
  wakeAt?: number;
}

export const emptyResult = (): ReconcileResult => ({ create: [], replace: [], shutdown: [] });

/** The replicas a service wants; undefined for a global service. */
export function replicasOf(s: Readonly<Service>): number | undefined {
  const m = s.spec?.mode;
  if (m?.$case === 'global') return undefined;
  return m?.$case === 'replicated' ? m.replicated.replicas : 1;
}

/** Best task to keep in a slot: the most advanced observed state (≤ RUNNING), then the newest. */
function better(a: Readonly<Task>, b: Readonly<Task>): boolean {
  const sa = isDead(a) ? -1 : observedState(a);
  const sb = isDead(b) ? -1 : observedState(b);
  if (sa !== sb) return sa > sb;
  return byCreation(a, b) > 0;
}

/**
 * The replicated orchestrator's decision for one service (pure; `now` and the nodes are inputs,
 * as Nomad's reconciler). A slot is "live" while it has a task desired ≤ RUNNING; such a task:
 *  - on a node that is gone, down or drained is replaced at once (not a failure: no restart
 *    policy, no attempt counted);
 *  - that stopped, or runs unhealthy, is restarted per the restart policy (restart/): replaced
 *    once its delay has passed, or left as it is (the slot stays, dead) when the policy says no;
 *  - that shares its slot with another runnable task is shut down, the best one kept; except
 *    that older-spec tasks beside a task of the current spec (a start-first replacement) are the
 *    rolling updater's (see olderSpecBesideNew).
 * Running tasks of an older spec are left as they are: replacing them is the rolling updater's
 * job (../../update), and every task created here has the current spec.
 * Then live slots are brought to `replicas`: new slots take the lowest free numbers; extra slots
 * go in order: dead first, then not yet on a node, not yet running, on the node with the most
 * tasks of the service (spread stays even), newest, highest slot.
 */
export function reconcileService(service: Readonly<Service>, tasks: readonly Readonly<Task>[], nodes: ReadonlyMap<string, Readonly<Node>>, now: number): ReconcileResult {
  const out = emptyResult();
  const replicas = replicasOf(service);
  if (replicas === undefined) return out;
  const policy = service.spec?.task?.restart;

  const bySlot = new Map<number, Readonly<Task>[]>();
  for (const t of tasks) {
    let l = bySlot.get(t.slot);
    if (!l) bySlot.set(t.slot, (l = []));
    l.push(t);
  }

  /** The runnable task of each live slot (after fixing duplicates); dead ones are kept as the slot's task. */
  const live = new Map<number, Readonly<Task>>();
  /** Older-spec tasks left beside a slot's new task: the rolling updater's (start-first). */
  const handedOver = new Map<number, Readonly<Task>[]>();
  for (const slot of [...bySlot.keys()].sort((a, b) => a - b)) {
    const history = bySlot.get(slot)!;
    const { older, kept } = olderSpecBesideNew(service, history, nodes, out.shutdown);
    if (kept.length) handedOver.set(slot, kept);
    let keep: Readonly<Task> | undefined;
    for (const t of history) {
      if (!isRunnable(t) || older.includes(t)) continue;
      if (!keep) keep = t;
      else if (better(t, keep)) {
        out.shutdown.push({ task: keep, reason: 'duplicate task in slot' });
        keep = t;
      } else out.shutdown.push({ task: t, reason: 'duplicate task in slot' });
    }
    if (!keep) continue;
    const moved = nodeProblem(keep, nodes);
    if (moved && !isDead(keep)) {
      out.replace.push({ task: keep, reason: moved });
      live.set(slot, keep);
      continue;
    }
    if (isDead(keep) || isUnhealthy(keep)) {
      const d = restartDecision(keep, policy, history, now);
      if (d.restart) {
        if (d.at <= now) out.replace.push({ task: keep, reason: d.reason });
        else out.wakeAt = Math.min(out.wakeAt ?? Infinity, d.at);
      }
    }
    live.set(slot, keep);
  }

  if (live.size < replicas) {
    let next = 1;
    for (let need = replicas - live.size; need > 0; next++) {
      if (live.has(next)) continue;
      out.create.push(next);
      need--;
    }
  } else if (live.size > replicas) {
    const gone = pickScaleDown([...live.values()], live.size - replicas, new Set(out.replace.map((c) => c.task.id)));
    // A slot going away is not replaced, and goes with the older tasks it still has.
    const goneIds = new Set(gone.map((t) => t.id));
    out.replace = out.replace.filter((c) => !goneIds.has(c.task.id));
    for (const t of gone) for (const x of [t, ...(handedOver.get(t.slot) ?? [])]) out.shutdown.push({ task: x, reason: 'service scaled down' });
  }
  return out;
}

/**
 * A slot (or a global node) with runnable tasks of the current spec and of an older one is being
 * replaced start-first by the rolling updater, which shuts the older ones down once the new one
 * runs. `older`: those older runnable tasks, which the orchestrator's own rules leave alone;
 * `kept`: the ones still worth keeping beside the new one. Those that stopped, run unhealthy or
 * lost their node are not: they are shut down here (into `shutdown`), with no replacement.
 */
export function olderSpecBesideNew(
  service: Readonly<Service>,
  tasks: readonly Readonly<Task>[],
  nodes: ReadonlyMap<string, Readonly<Node>>,
  shutdown: TaskChange[],
): { older: Readonly<Task>[]; kept: Readonly<Task>[] } {
  const none = { older: [], kept: [] };
  const runnable = tasks.filter(isRunnable);
  if (runnable.length < 2) return none;
  const older = runnable.filter((t) => isTaskDirty(service, t, nodes.get(t.nodeId)));
  if (older.length === 0 || older.length === runnable.length) return none;
  const kept: Readonly<Task>[] = [];
  for (const t of older) {
    const why = isDead(t) ? 'task stopped' : isUnhealthy(t) ? 'task unhealthy' : nodeProblem(t, nodes);
    if (why) shutdown.push({ task: t, reason: `${why}; its slot has a task of the new spec` });
    else kept.push(t);
  }
  return { older, kept };
}

/**
 * The `k` tasks a scale-down removes, in order: dead (and not being replaced) first, then not on a
 * node yet, then not running yet; within each of those tiers, the task on the node with the most
 * live tasks of the service (recounted after each pick), then the newest, then the highest slot.
 * O(n log n): a heap of nodes per tier.
 */
export function pickScaleDown(candidates: readonly Readonly<Task>[], k: number, replacing: ReadonlySet<string>): Readonly<Task>[] {
  const perNode = new Map<string, number>();
  for (const t of candidates) if (t.nodeId && !isDead(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 0) + 1);
  const tier = (t: Readonly<Task>): number =>
    (isDead(t) && !replacing.has(t.id) ? 0 : 4) + (t.nodeId ? 2 : 0) + (observedState(t) >= TaskState.TASK_STATE_RUNNING ? 1 : 0);
  const tiers = new Map<number, Readonly<Task>[]>();
  for (const t of candidates) {
    const k2 = tier(t);
    let l = tiers.get(k2);
    if (!l) tiers.set(k2, (l = []));
    l.push(t);
  }
  // Newest first, then the highest slot: the order tasks leave one node in.
  const newestFirst = (a: Readonly<Task>, b: Readonly<Task>): number => createdAt(b) - createdAt(a) || b.slot - a.slot || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  const out: Readonly<Task>[] = [];
  for (const key of [...tiers.keys()].sort((a, b) => a - b)) {
    if (out.length >= k) break;
    const byNode = new Map<string, Readonly<Task>[]>();
    for (const t of tiers.get(key)!) {
      let l = byNode.get(t.nodeId);
      if (!l) byNode.set(t.nodeId, (l = []));
      l.push(t);
    }
    interface Entry {
      nodeId: string;
      count: number;
      tasks: Readonly<Task>[];
      i: number;
    }
    const heap = new Heap<Entry>((a, b) => {
      if (a.count !== b.count) return a.count > b.count;
      return newestFirst(a.tasks[a.i], b.tasks[b.i]) < 0;
    });
    for (const [nodeId, tasks] of byNode) heap.push({ nodeId, count: perNode.get(nodeId) ?? 0, tasks: tasks.sort(newestFirst), i: 0 });
    while (out.length < k) {
      const e = heap.pop();
      if (!e) break;
      const t = e.tasks[e.i++];
      out.push(t);
      if (t.nodeId && !isDead(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 1) - 1);
      e.count = perNode.get(e.nodeId) ?? 0;
      if (e.i < e.tasks.length) heap.push(e);
    }
  }
  return out;
}
