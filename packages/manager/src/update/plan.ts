/**
 * The rolling updater's decision for one service (SwarmKit's orchestrator/update, as a pure
 * function after Nomad's reconciler: `now` and what the controller saw of each task are inputs).
 * *pure*: no I/O, no timers, no clock.
 *
 * A slot is a replica number (replicated) or a node (global). The plan only ever touches slots
 * whose runnable tasks are alive: a task that stopped, runs unhealthy or lost its node is the
 * orchestrator's (restart policy, node replacement), and the orchestrator always replaces with
 * the current spec. Per slot, from the runnable tasks (desired ≤ RUNNING):
 *  - only older-spec ("dirty", see dirty.ts) tasks, one, alive: a candidate. Up to `parallelism`
 *    slots are in flight at once (0 = all). stop-first: the old task is shut down and the new one
 *    created desired READY in the same transaction (RUNNING at once when the old one never reached
 *    a node); start-first: the new one is created desired RUNNING beside the old one.
 *  - a new task desired READY (stop-first): started (desired RUNNING) once the slot's old tasks
 *    have stopped, or after OLD_TASK_TIMEOUT_MS (a node that never reports). An agent reports a
 *    task stopped only once it has freed the task's host-mode ports, so a replacement that
 *    publishes the same ports can start at once.
 *  - a new task and old ones (start-first): the old ones are shut down once the new one RUNS.
 *  - in flight until the new task runs; then, with `delay_ms`, busy until it has run that long.
 * While the update is PAUSED only what is in flight is finished; no new slot is started.
 *
 * Failures: a task of the current spec_version that ends on its own (COMPLETE, FAILED,
 * REJECTED) before it ran, or within `monitor_ms` of starting to run, counts once (its id is
 * kept in update_status.failed_task_ids). When failures / live slots > max_failure_ratio,
 * failure_action pause pauses the update naming the task; continue carries on; rollback asks
 * the controller to put the previous spec back (ROLLBACK_STARTED), which is then rolled out with
 * the rollback config (a failure there pauses it: ROLLBACK_PAUSED) until ROLLBACK_COMPLETED. The update is COMPLETED when no slot is dirty or in flight and every new
 * task has run for `monitor_ms`.
 */
import {
  type Node,
  type Service,
  type Task,
  type UpdateConfig,
  type UpdateStatus,
  TaskState,
  UpdateConfig_FailureAction,
  UpdateConfig_Order,
  UpdateStatus_State,
} from '@swarmd/proto';
import { SERVICE_DEFAULTS } from '../specs/defaults.js';
import { constraintsMatch, tryParseConstraints } from '../specs/constraint.js';
import { createdAt, isDead, isNodeActive, isNodeDown, isNodeReady, isRunnable, isUnhealthy, mayBeRunningOnNode, nodeProblem, observedState } from '../controller-kit/task.js';
import { isTaskDirty } from '../controller-kit/dirty.js';

/** How long a stop-first replacement waits for the old task to report stopped before it starts anyway. */
export const OLD_TASK_TIMEOUT_MS = 60_000;

/** What the controller saw of a task (on its own clock): when it first saw it RUNNING, and stopped. */
export interface TaskSeen {
  runningAt?: number;
  endedAt?: number;
}

export interface UpdateInput {
  service: Readonly<Service>;
  /** Every task of the service. */
  tasks: readonly Readonly<Task>[];
  nodes: ReadonlyMap<string, Readonly<Node>>;
  now: number;
  /** Defaults to nothing seen: a RUNNING task's status timestamp stands for when it started. */
  seen?: (taskId: string) => TaskSeen | undefined;
}

export interface SlotReplacement {
  /** The replica number; 0 for a global service. */
  slot: number;
  /** The node of a global service's slot; '' for a replicated one. */
  nodeId: string;
  /** The slot's older-spec task(s): must be unchanged when written; shut down now unless start-first. */
  old: Readonly<Task>[];
  startFirst: boolean;
  /** Whether the new task is created desired RUNNING (else READY, started once the old ones stopped). */
  startNow: boolean;
}

export interface TaskAction {
  task: Readonly<Task>;
  reason: string;
}

export interface UpdatePlan {
  replace: SlotReplacement[];
  /** Old tasks of start-first slots whose new task runs. */
  shutdown: TaskAction[];
  /** New tasks desired READY whose slot's old tasks have stopped: desired RUNNING. */
  start: TaskAction[];
  /** The service's update status, when it changes. */
  status?: UpdateStatus;
  /** Plan again then (delay or monitor ends, stop-first timeout). */
  wakeAt?: number;
  /** failure_action rollback tripped: put the previous spec back (the rollback config goes on from there). */
  rollback?: { message: string };
}

/** The service's update config, Docker's defaults when it has none. */
export function updateConfigOf(s: Readonly<Service>): Readonly<UpdateConfig> {
  return s.spec?.update ?? SERVICE_DEFAULTS.update;
}

/** The config a rollback runs with (Docker's `--rollback-*`; its defaults when not given). */
export function rollbackConfigOf(s: Readonly<Service>): Readonly<UpdateConfig> {
  return s.spec?.rollback ?? SERVICE_DEFAULTS.rollback;
}

/** Whether the service is being rolled back (or its rollback is paused). */
export function isRollingBack(s: Readonly<Service>): boolean {
  const st = s.updateStatus?.state;
  return st === UpdateStatus_State.ROLLBACK_STARTED || st === UpdateStatus_State.ROLLBACK_PAUSED;
}

/** Ended on its own, not told to stop: a failure (or an early end) of a new task. */
const endedOnItsOwn = (t: Readonly<Task>): boolean => {
  const s = observedState(t);
  return s === TaskState.TASK_STATE_COMPLETE || s === TaskState.TASK_STATE_FAILED || s === TaskState.TASK_STATE_REJECTED;
};

/** Most advanced observed state first (a stopped task last), then the newest. */
function bestFirst(a: Readonly<Task>, b: Readonly<Task>): number {
  const sa = isDead(a) ? -1 : observedState(a);
  const sb = isDead(b) ? -1 : observedState(b);
  return sb - sa || createdAt(b) - createdAt(a) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
}

const stateName = (s: TaskState): string => ((TaskState[s] as string | undefined) ?? String(s)).replace(/^TASK_STATE_/, '').toLowerCase();

function failureText(t: Readonly<Task>): string {
  const why = t.status?.err || t.status?.message || stateName(observedState(t));
  return `failure or early termination of task ${t.id} (${t.annotations?.name || 'slot ' + t.slot}: ${stateName(observedState(t))}, ${why})`;
}

interface Slot {
  slot: number;
  nodeId: string;
  tasks: Readonly<Task>[];
}

function slotsOf(tasks: readonly Readonly<Task>[], global: boolean): Slot[] {
  const by = new Map<string, Slot>();
  for (const t of tasks) {
    const key = global ? t.nodeId : String(t.slot);
    let s = by.get(key);
    if (!s) by.set(key, (s = { slot: global ? 0 : t.slot, nodeId: global ? t.nodeId : '', tasks: [] }));
    s.tasks.push(t);
  }
  return [...by.values()].sort((a, b) => a.slot - b.slot || (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
}

export function planUpdate(inp: UpdateInput): UpdatePlan {
  const { service, nodes, now } = inp;
  const seen = inp.seen ?? (() => undefined);
  const out: UpdatePlan = { replace: [], shutdown: [], start: [] };
  const rollingBack = isRollingBack(service);
  const cfg = rollingBack ? rollbackConfigOf(service) : updateConfigOf(service);
  const monitor = Math.max(0, cfg.monitorMs);
  const delay = Math.max(0, cfg.delayMs);
  const version = service.specVersion;
  const state = service.updateStatus?.state ?? UpdateStatus_State.UNKNOWN;
  /** In progress (an update or a rollback) and not paused. */
  const active = state === UpdateStatus_State.UPDATING || state === UpdateStatus_State.ROLLBACK_STARTED;
  const global = service.spec?.mode?.$case === 'global';
  const constraints = tryParseConstraints(service.spec?.task?.placement?.constraints ?? []);
  const wake = (at: number): void => {
    if (at > now) out.wakeAt = Math.min(out.wakeAt ?? Infinity, at);
  };
  const dirtyMemo = new Map<string, boolean>();
  const dirty = (t: Readonly<Task>): boolean => {
    let d = dirtyMemo.get(t.id);
    if (d === undefined) dirtyMemo.set(t.id, (d = isTaskDirty(service, t, nodes.get(t.nodeId))));
    return d;
  };
  /** A task the orchestrator handles: stopped, unhealthy, or its node is a problem. */
  const orchestrators = (t: Readonly<Task>): boolean => {
    if (isDead(t) || isUnhealthy(t)) return true;
    if (!global) return nodeProblem(t, nodes) !== undefined;
    const n = nodes.get(t.nodeId);
    return !n || !isNodeReady(n) || !isNodeActive(n) || !constraints || !constraintsMatch(constraints, n);
  };
  const runningSince = (t: Readonly<Task>): number => seen(t.id)?.runningAt ?? t.status?.timestamp ?? now;

  let live = 0;
  let busy = 0;
  let monitorUntil = 0;
  const candidates: { slot: Slot; old: Readonly<Task> }[] = [];
  for (const slot of slotsOf(inp.tasks, global)) {
    const runnable = slot.tasks.filter(isRunnable);
    if (runnable.length === 0) continue;
    live++;
    const old = runnable.filter(dirty);
    const fresh = runnable.filter((t) => !dirty(t)).sort(bestFirst);
    if (fresh.length === 0) {
      if (old.length === 1 && !orchestrators(old[0])) candidates.push({ slot, old: old[0] });
      continue;
    }
    // Stop-first: a new task waits READY until the slot's old tasks have stopped.
    for (const t of fresh) {
      if (t.desiredState >= TaskState.TASK_STATE_RUNNING || isDead(t)) continue;
      // A node that is down or gone will not report its task stopped: that task is not waited for.
      const stopping = slot.tasks.some((o) => o.id !== t.id && !isRunnable(o) && mayBeRunningOnNode(o) && !isNodeDown(nodes.get(o.nodeId)));
      const deadline = createdAt(t) + OLD_TASK_TIMEOUT_MS;
      if (!stopping) out.start.push({ task: t, reason: 'the old task stopped' });
      else if (now >= deadline) out.start.push({ task: t, reason: `the old task did not report stopping within ${OLD_TASK_TIMEOUT_MS / 1000} s` });
      else wake(deadline);
    }
    const best = fresh[0];
    if (isDead(best)) continue;
    const runs = observedState(best) === TaskState.TASK_STATE_RUNNING;
    // Start-first: the old tasks go once the new one runs.
    if (old.length > 0 && runs) for (const o of old) out.shutdown.push({ task: o, reason: `replaced by task ${best.id} (start-first)` });
    if (best.specVersion !== version) continue;
    if (!runs) {
      busy++;
      continue;
    }
    const since = runningSince(best);
    monitorUntil = Math.max(monitorUntil, since + monitor);
    if (since + delay > now) {
      busy++;
      wake(since + delay);
    }
  }

  const base: UpdateStatus = service.updateStatus
    ? { ...service.updateStatus, failedTaskIds: [...service.updateStatus.failedTaskIds] }
    : { state: UpdateStatus_State.UNKNOWN, startedAt: now, completedAt: 0, message: '', failedTaskIds: [] };

  if (active && cfg.failureAction !== UpdateConfig_FailureAction.CONTINUE) {
    const counted = new Set(base.failedTaskIds);
    const failures = inp.tasks
      .filter((t) => {
        if (t.specVersion !== version || counted.has(t.id) || !endedOnItsOwn(t) || dirty(t)) return false;
        const s = seen(t.id);
        return s?.runningAt === undefined || (s.endedAt ?? now) - s.runningAt <= monitor;
      })
      .sort((a, b) => (a.id < b.id ? -1 : 1));
    if (failures.length > 0) {
      const failedTaskIds = [...base.failedTaskIds, ...failures.map((t) => t.id)];
      if (failedTaskIds.length / Math.max(1, live) > cfg.maxFailureRatio) {
        const why = failureText(failures[failures.length - 1]);
        if (!rollingBack && cfg.failureAction === UpdateConfig_FailureAction.ROLLBACK && service.previousSpec) {
          // The controller puts the previous spec back; the rollback config takes it from there.
          out.rollback = { message: `update rolled back due to ${why}` };
          return out;
        }
        out.status = {
          ...base,
          state: rollingBack ? UpdateStatus_State.ROLLBACK_PAUSED : UpdateStatus_State.PAUSED,
          message: `${rollingBack ? 'rollback' : 'update'} paused due to ${why}`,
          failedTaskIds,
        };
        return out;
      }
      out.status = { ...base, failedTaskIds };
    }
  }
  if (state === UpdateStatus_State.PAUSED || state === UpdateStatus_State.ROLLBACK_PAUSED) return out;

  if (candidates.length > 0) {
    if (!active) out.status = { state: UpdateStatus_State.UPDATING, startedAt: now, completedAt: 0, message: 'update in progress', failedTaskIds: [] };
    const room = cfg.parallelism === 0 ? candidates.length : Math.max(0, cfg.parallelism - busy);
    const startFirst = cfg.order === UpdateConfig_Order.START_FIRST;
    for (const c of candidates.slice(0, room))
      out.replace.push({ slot: c.slot.slot, nodeId: c.slot.nodeId, old: [c.old], startFirst, startNow: startFirst || !mayBeRunningOnNode(c.old) });
    return out;
  }
  if (active && busy === 0) {
    if (now >= monitorUntil) {
      out.status = rollingBack
        ? { ...(out.status ?? base), state: UpdateStatus_State.ROLLBACK_COMPLETED, completedAt: now, message: `rollback completed (${base.message || 'manually requested rollback'})` }
        : { ...(out.status ?? base), state: UpdateStatus_State.COMPLETED, completedAt: now, message: 'update completed' };
    } else wake(monitorUntil);
  }
  return out;
}
