/**
 * Waits until a service converges, printing a line whenever a task's state changes (`2/6:
 * running`), after Docker's progress display. Task events come from Control.Watch (tasks of the
 * service), on top of a ListTasks snapshot re-read every few seconds (nothing missed between the
 * two). Gives up after `timeoutMs`, saying why: pending tasks' scheduler reasons, rejected or
 * failed tasks' errors.
 */
import { type Service, type Task, TaskState, WatchEvent_Action } from '@swarmd/proto';
import type { ServiceControl } from './service-control.js';
import { taskStateText } from './service-format.js';

export interface ConvergeResult {
  converged: boolean;
  /** Why not (empty when converged). */
  reasons: string[];
}

const isProblem = (t: Task): boolean => {
  const s = t.status?.state ?? TaskState.TASK_STATE_NEW;
  return (s === TaskState.TASK_STATE_PENDING && !!t.status?.err) || s === TaskState.TASK_STATE_REJECTED || s === TaskState.TASK_STATE_FAILED;
};

/** Pure: does this set of tasks satisfy the service (as many running as it wants, no extra)? */
export function convergence(service: Service, tasks: readonly Task[]): { converged: boolean; desired: number; running: number; reasons: string[] } {
  const mine = tasks.filter((t) => t.serviceId === service.id);
  const live = mine.filter((t) => t.desiredState === TaskState.TASK_STATE_RUNNING);
  const m = service.spec?.mode;
  const desired = m?.$case === 'global' ? live.length : m?.$case === 'replicated' ? m.replicated.replicas : 1;
  // Not checked yet: the task's spec_version (there is no rolling updater that replaces tasks of an
  // older spec; a replicas change alone keeps the running tasks).
  const running = live.filter((t) => t.status?.state === TaskState.TASK_STATE_RUNNING).length;
  const reasons = [...new Set(mine.filter((t) => isProblem(t) && (t.desiredState === TaskState.TASK_STATE_RUNNING || t.status?.state !== TaskState.TASK_STATE_PENDING)).map((t) => `${taskStateText(t.status?.state)}: ${t.status?.err || t.status?.message}`))];
  const converged = running === desired && live.length === desired && (m?.$case !== 'global' || desired > 0);
  return { converged, desired, running, reasons };
}

export async function waitConverged(
  sc: ServiceControl,
  service: Service,
  o: { print(line: string): void; timeoutMs: number; refreshMs?: number },
): Promise<ConvergeResult> {
  const tasks = new Map<string, Task>();
  const shown = new Map<string, string>();
  let last: ReturnType<typeof convergence> | undefined;
  let finish: (r: ConvergeResult) => void = () => undefined;
  const done = new Promise<ConvergeResult>((resolve) => (finish = resolve));
  const label = (t: Task, desired: number) => (t.slot ? `${t.slot}/${desired}` : t.nodeId.slice(0, 12));

  const evaluate = () => {
    const all = [...tasks.values()];
    const c = convergence(service, all);
    last = c;
    for (const t of all.filter((x) => x.desiredState === TaskState.TASK_STATE_RUNNING).sort((a, b) => a.slot - b.slot || a.nodeId.localeCompare(b.nodeId))) {
      const text = `${taskStateText(t.status?.state)}${t.status?.err ? ` (${t.status.err})` : ''}`;
      const k = String(t.slot || t.nodeId);
      if (shown.get(k) !== text) {
        shown.set(k, text);
        o.print(`${label(t, c.desired)}: ${text}`);
      }
    }
    if (c.converged) finish({ converged: true, reasons: [] });
  };

  const refresh = async () => {
    for (const t of await sc.listTasks({ serviceIds: [service.id] })) {
      const cur = tasks.get(t.id);
      if (!cur || (cur.meta?.version ?? 0) <= (t.meta?.version ?? 0)) tasks.set(t.id, t);
    }
    evaluate();
  };

  const w = sc.watchTasks(
    service.id,
    (e) => {
      if (!e.task) return;
      if (e.action === WatchEvent_Action.REMOVE) tasks.delete(e.task.id);
      else tasks.set(e.task.id, e.task);
      evaluate();
    },
    () => undefined,
  );
  const timer = setTimeout(() => finish({ converged: false, reasons: last?.reasons.length ? last.reasons : [`${last?.running ?? 0} of ${last?.desired ?? '?'} tasks running`] }), o.timeoutMs);
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
