import { type RestartPolicy, type Task, RestartPolicy_Condition, TaskState } from '@swarmd/proto';
import { observedState, isUnhealthy, updatedAt } from '../../controller-kit/task.js';

export type RestartDecision =
  | { restart: true; /** Not before this time (the failure's time + the policy's delay). */ at: number; reason: string }
  | { restart: false; reason: string };

/** Docker's default when a service has no restart policy: any, 5 s, unlimited. */
export const DEFAULT_RESTART_POLICY: RestartPolicy = { condition: RestartPolicy_Condition.ANY, delayMs: 5_000, maxAttempts: 0, windowMs: 0 };

/** Whether a dead (or unhealthy) task ended in a failure rather than a clean exit. */
export function endedInFailure(t: Readonly<Task>): boolean {
  if (isUnhealthy(t)) return true;
  const s = observedState(t);
  return s === TaskState.TASK_STATE_FAILED || s === TaskState.TASK_STATE_REJECTED || s === TaskState.TASK_STATE_SHUTDOWN || s === TaskState.TASK_STATE_ORPHANED;
}

/** A past task of the slot that the orchestrator restarted (replaced after it ended on its own). */
function wasRestarted(t: Readonly<Task>): boolean {
  const s = observedState(t);
  return t.desiredState > TaskState.TASK_STATE_RUNNING && (s === TaskState.TASK_STATE_FAILED || s === TaskState.TASK_STATE_REJECTED || s === TaskState.TASK_STATE_COMPLETE);
}

/**
 * The restart supervisor's decision for a task that stopped (or turned unhealthy) while desired
 * RUNNING. Pure: `history` is the other tasks of its slot (replicated) or node (global), and the
 * attempts are counted from them, so a new leader decides the same from the store alone.
 *
 * - condition none: never; on-failure: not after a clean exit (COMPLETE); any: always.
 * - max_attempts (0 = unlimited): restarts already made (past tasks of the slot that failed or
 *   completed and were replaced), within `window_ms` of now when a window is set.
 * - delay: the replacement is created at (time the failure was recorded) + delay_ms.
 */
export function restartDecision(t: Readonly<Task>, policy: Readonly<RestartPolicy> | undefined, history: readonly Readonly<Task>[], now: number): RestartDecision {
  const p = policy ?? DEFAULT_RESTART_POLICY;
  if (p.condition === RestartPolicy_Condition.NONE) return { restart: false, reason: 'restart policy: none' };
  if (p.condition === RestartPolicy_Condition.ON_FAILURE && !endedInFailure(t)) return { restart: false, reason: 'restart policy: on-failure, and the task completed' };
  if (p.maxAttempts > 0) {
    let n = 0;
    for (const h of history) {
      if (h.id === t.id || !wasRestarted(h)) continue;
      if (p.windowMs > 0 && updatedAt(h) < now - p.windowMs) continue;
      n++;
    }
    if (n >= p.maxAttempts) return { restart: false, reason: `restart policy: ${p.maxAttempts} attempts made` };
  }
  return { restart: true, at: updatedAt(t) + Math.max(0, p.delayMs), reason: endedInFailure(t) ? 'task failed' : 'task completed' };
}
