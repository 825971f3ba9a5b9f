import type { Node, Service, Task } from '@swarmd/proto';
import { tryParseConstraints, constraintsMatch, type Constraint } from '../../specs/constraint.js';
import { restartDecision } from '../restart/restart-policy.js';
import { byCreation, isDead, isNodeDown, isNodeActive, isNodeDrained, isNodeReady, isRunnable, isUnhealthy, observedState } from '../../controller-kit/task.js';
import { olderSpecBesideNew, type TaskChange } from '../replicated/reconcile.js';

export interface GlobalReconcileResult {
  /** Nodes that need a task. */
  create: string[];
  replace: TaskChange[];
  shutdown: TaskChange[];
  wakeAt?: number;
}

export const isGlobal = (s: Readonly<Service>): boolean => s.spec?.mode?.$case === 'global';

function constraintsOf(s: Readonly<Service>): Constraint[] | undefined {
  return tryParseConstraints(s.spec?.task?.placement?.constraints ?? []);
}

/**
 * The global orchestrator's decision for one service (pure): one task per eligible node.
 *  - A node is eligible for a new task when READY, ACTIVE and matching the constraints.
 *  - A task on a node that is gone, down, drained, or no longer matches the constraints (labels
 *    changed) is shut down (not moved: it belongs to its node). A paused node keeps its task.
 *  - A task that stopped or runs unhealthy is restarted on its node per the restart policy.
 *  - Extra runnable tasks on one node are shut down, the most advanced kept (older-spec tasks beside
 *    a task of the current spec are the rolling updater's: a start-first replacement).
 * Platform and resources are the scheduler's to check (the task waits PENDING with the reason).
 */
export function reconcileGlobalService(
  service: Readonly<Service>,
  tasks: readonly Readonly<Task>[],
  nodes: readonly Readonly<Node>[],
  now: number,
): GlobalReconcileResult {
  const out: GlobalReconcileResult = { create: [], replace: [], shutdown: [] };
  if (!isGlobal(service)) return out;
  const constraints = constraintsOf(service);
  const policy = service.spec?.task?.restart;
  const nodeById = new Map(nodes.map((n) => [n.id, n]));

  const byNode = new Map<string, Readonly<Task>[]>();
  for (const t of tasks) {
    let l = byNode.get(t.nodeId);
    if (!l) byNode.set(t.nodeId, (l = []));
    l.push(t);
  }

  const covered = new Set<string>();
  for (const [nodeId, history] of byNode) {
    // Start-first: the node's older-spec tasks beside a new one are the rolling updater's.
    const { older, kept } = olderSpecBesideNew(service, history, nodeById, out.shutdown);
    const runnable = history.filter((t) => isRunnable(t) && !older.includes(t)).sort((a, b) => {
      const sa = isDead(a) ? -1 : observedState(a);
      const sb = isDead(b) ? -1 : observedState(b);
      return sb - sa || byCreation(b, a);
    });
    if (runnable.length === 0) continue;
    const [keep, ...extra] = runnable as [Readonly<Task>, ...Readonly<Task>[]];
    for (const t of extra) out.shutdown.push({ task: t, reason: 'duplicate task on node' });
    const n = nodeById.get(nodeId);
    let why: string | undefined;
    if (!n) why = `node ${nodeId} was removed`;
    else if (isNodeDown(n)) why = `node ${nodeId} is down`;
    else if (isNodeDrained(n)) why = `node ${nodeId} is drained`;
    else if (!constraints || !constraintsMatch(constraints, n)) why = `node ${nodeId} no longer satisfies the constraints`;
    if (why) {
      for (const t of [keep, ...kept]) out.shutdown.push({ task: t, reason: why });
      continue;
    }
    covered.add(nodeId);
    if (isDead(keep) || isUnhealthy(keep)) {
      const d = restartDecision(keep, policy, history, now);
      if (d.restart) {
        if (d.at <= now) out.replace.push({ task: keep, reason: d.reason });
        else out.wakeAt = Math.min(out.wakeAt ?? Infinity, d.at);
      }
    }
  }

  if (constraints) {
    for (const n of nodes) {
      if (covered.has(n.id) || !isNodeReady(n) || !isNodeActive(n) || !constraintsMatch(constraints, n)) continue;
      out.create.push(n.id);
    }
  }
  out.create.sort();
  return out;
}
