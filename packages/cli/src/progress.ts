/**
 * Waits until a service converges, printing a line whenever a slot's task changes state (`2/6:
 * running`), after Docker's progress display. Events come from Control.Watch (the service and its
 * tasks), on top of a ListTasks (and GetService) snapshot re-read every few seconds (nothing
 * missed between the two).
 *
 * A rolling update (update_status UPDATING) is waited for until it is COMPLETED: each slot shows
 * its newest task, `update: N of M tasks updated` counts the slots running the new spec, and a
 * `verify:` line says when the new tasks are being monitored. PAUSED ends the wait with the
 * updater's message. Gives up after `timeoutMs` (during an update: that long without progress),
 * saying why: pending tasks' scheduler reasons, rejected or failed tasks' errors.
 */
import { TaskState, UpdateStatus_State } from '@swarmd/proto/gen/swarm/types';
import { type Service, type Task } from '@swarmd/proto/gen/swarm/objects';
import { WatchEvent_Action } from '@swarmd/proto/gen/swarm/control';
import type { Control } from './client/control-client.js';
import { taskStateText } from './service-format.js';
import { durationText } from './format.js';

export interface ConvergeResult {
  converged: boolean;
  /** Why not (empty when converged). */
  reasons: string[];
  /** The rolling update paused: the updater's message. */
  paused?: string;
  /** It ended rolled back (the status message: why). */
  rolledBack?: string;
}

const isProblem = (t: Task): boolean => {
  const s = t.status?.state ?? TaskState.TASK_STATE_NEW;
  return (s === TaskState.TASK_STATE_PENDING && !!t.status?.err) || s === TaskState.TASK_STATE_REJECTED || s === TaskState.TASK_STATE_FAILED;
};

/** Pure: does this set of tasks satisfy the service (as many running as it wants, no extra)? */
export function convergence(service: Service, tasks: readonly Task[]): { converged: boolean; desired: number; running: number; reasons: string[] } {
  // Canary tasks (extra slots of a rollout) are the rollout's, not the service's replicas.
  const mine = tasks.filter((t) => t.serviceId === service.id && !t.canary);
  const live = mine.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING);
  const m = service.spec?.mode;
  const desired = m?.$case === 'global' ? live.length : m?.$case === 'replicated' ? m.replicated.replicas : 1;
  // Which tasks still run an older spec is the manager's to say (update_status), not counted here.
  const running = live.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).length;
  const reasons = [...new Set(mine.filter((t) => isProblem(t) && (t.desiredState === TaskState.TASK_STATE_RUNNING || t.status?.state !== TaskState.TASK_STATE_PENDING)).map((t) => `${taskStateText(t.status?.state)}: ${t.status?.err || t.status?.message}`))];
  const converged = running === desired && live.length === desired && (m?.$case !== 'global' || desired > 0);
  return { converged, desired, running, reasons };
}

/** Each slot's (or global node's) newest runnable task: a start-first slot has two. */
export function newestPerSlot(tasks: readonly Task[]): Task[] {
  const by = new Map<string, Task>();
  for (const t of tasks) {
    if (t.desiredState > TaskState.TASK_STATE_RUNNING || t.canary) continue;
    const k = t.slot ? String(t.slot) : t.nodeId;
    const cur = by.get(k);
    if (!cur || (t.meta?.createdAt ?? 0) > (cur.meta?.createdAt ?? 0) || ((t.meta?.createdAt ?? 0) === (cur.meta?.createdAt ?? 0) && t.specVersion > cur.specVersion)) by.set(k, t);
  }
  return [...by.values()].sort((a, b) => a.slot - b.slot || a.nodeId.localeCompare(b.nodeId));
}

export async function waitConverged(
  sc: Control,
  service: Service,
  o: { print(line: string, key?: string): void; timeoutMs: number; refreshMs?: number },
): Promise<ConvergeResult> {
  let svc = service;
  const updating = service.updateStatus?.state === UpdateStatus_State.UPDATING;
  const tasks = new Map<string, Task>();
  const shown = new Map<string, string>();
  let updatedShown = -1;
  let mostSlots = 0;
  let verifying = false;
  let last: ReturnType<typeof convergence> | undefined;
  let finish: (r: ConvergeResult) => void = () => undefined;
  const done = new Promise<ConvergeResult>((resolve) => (finish = resolve));
  const label = (t: Task, desired: number) => (t.slot ? `${t.slot}/${desired}` : t.nodeId.slice(0, 12));
  let timer: NodeJS.Timeout | undefined;
  /** (Re)starts the timeout: once for a plain wait, at every step of progress during an update. */
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => finish({ converged: false, reasons: last?.reasons.length ? last.reasons : [`${last?.running ?? 0} of ${last?.desired ?? '?'} tasks running`] }), o.timeoutMs);
  };

  const evaluate = () => {
    const all = [...tasks.values()];
    const c = convergence(svc, all);
    last = c;
    const slots = newestPerSlot(all);
    let moved = false;
    for (const t of slots) {
      const text = `${taskStateText(t.status?.state)}${t.status?.err ? ` (${t.status.err})` : ''}`;
      const k = String(t.slot || t.nodeId);
      if (shown.get(k) !== text) {
        shown.set(k, text);
        moved = true;
        o.print(`${label(t, c.desired)}: ${text}`, `slot ${k}`);
      }
    }
    const st = svc.updateStatus;
    if (st?.state === UpdateStatus_State.PAUSED || st?.state === UpdateStatus_State.ROLLBACK_PAUSED) return finish({ converged: false, reasons: [st.message], paused: st.message });
    const rollingBack = st?.state === UpdateStatus_State.ROLLBACK_STARTED;
    if (st?.state === UpdateStatus_State.UPDATING || rollingBack) {
      // A global service's slots are its nodes: one may be between its old and new task.
      mostSlots = Math.max(mostSlots, slots.length);
      const want = svc.spec?.mode?.$case === 'global' ? mostSlots : c.desired;
      const fresh = slots.filter((t) => t.specVersion === svc.specVersion && t.status?.state === TaskState.TASK_STATE_RUNNING).length;
      if (fresh !== updatedShown) {
        updatedShown = fresh;
        moved = true;
        o.print(rollingBack ? `rollback: ${fresh} of ${want} tasks rolled back` : `update: ${fresh} of ${want} tasks updated`, 'update');
      }
      const monitorMs = (rollingBack ? svc.spec?.rollback?.monitorMs : svc.spec?.update?.monitorMs) ?? 5_000;
      if (!verifying && c.converged && fresh === want && monitorMs > 0) {
        verifying = true;
        o.print(`verify: Waiting ${durationText(monitorMs)} to verify that tasks are stable...`, 'verify');
      }
      if (moved) arm();
      return;
    }
    if (moved && updating) arm();
    if (c.converged) finish({ converged: true, reasons: [], ...(st?.state === UpdateStatus_State.ROLLBACK_COMPLETED ? { rolledBack: st.message } : {}) });
  };

  const refresh = async () => {
    const [list, cur] = await Promise.all([sc.listTasks({ serviceIds: [service.id] }), sc.getService(service.id)]);
    if ((cur.meta?.version ?? 0) >= (svc.meta?.version ?? 0)) svc = cur;
    for (const t of list) {
      const known = tasks.get(t.id);
      if (!known || (known.meta?.version ?? 0) <= (t.meta?.version ?? 0)) tasks.set(t.id, t);
    }
    evaluate();
  };

  const w = sc.watchService(
    service.id,
    (e) => {
      if (e.service) {
        if (e.service.id === service.id && (e.service.meta?.version ?? 0) >= (svc.meta?.version ?? 0)) svc = e.service;
      } else if (e.task) {
        if (e.action === WatchEvent_Action.REMOVE) tasks.delete(e.task.id);
        else tasks.set(e.task.id, e.task);
      } else return;
      evaluate();
    },
    () => undefined,
  );
  arm();
  const poll = setInterval(() => void refresh().catch(() => undefined), o.refreshMs ?? 2000);
  try {
    await refresh();
    return await done;
  } finally {
    clearTimeout(timer);
    clearInterval(poll);
    w.close();
  }
}
