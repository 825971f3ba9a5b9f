import { type Node, type Service, type Task, TaskState } from '@swarmd/proto';
import { restartDecision } from '../restart/restart-policy.js';
import { byCreation, createdAt, isDead, isRunnable, isUnhealthy, nodeProblem, observedState } from '../task.js';

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
 *  - that shares its slot with another runnable task is shut down, the best one kept.
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
  for (const slot of [...bySlot.keys()].sort((a, b) => a - b)) {
    const history = bySlot.get(slot)!;
    let keep: Readonly<Task> | undefined;
    for (const t of history) {
      if (!isRunnable(t)) continue;
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
    const replaced = new Set(out.replace.map((c) => c.task.id));
    const perNode = new Map<string, number>();
    for (const t of live.values()) if (t.nodeId && !isDead(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 0) + 1);
    const candidates = [...live.values()];
    const rank = (t: Readonly<Task>): number[] => [
      isDead(t) && !replaced.has(t.id) ? 0 : 1,
      t.nodeId ? 1 : 0,
      observedState(t) >= TaskState.TASK_STATE_RUNNING ? 1 : 0,
      -(perNode.get(t.nodeId) ?? 0),
      -createdAt(t),
      -t.slot,
    ];
    const less = (a: number[], b: number[]): boolean => {
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i];
      return false;
    };
    for (let k = live.size - replicas; k > 0; k--) {
      let bi = 0;
      let br = rank(candidates[0]);
      for (let i = 1; i < candidates.length; i++) {
        const r = rank(candidates[i]);
        if (less(r, br)) {
          bi = i;
          br = r;
        }
      }
      const t = candidates.splice(bi, 1)[0];
      if (t.nodeId && !isDead(t)) perNode.set(t.nodeId, (perNode.get(t.nodeId) ?? 1) - 1);
      // A slot going away is not replaced: drop any replacement planned for it.
      const ri = out.replace.findIndex((c) => c.task.id === t.id);
      if (ri >= 0) out.replace.splice(ri, 1);
      out.shutdown.push({ task: t, reason: 'service scaled down' });
    }
  }
  return out;
}
