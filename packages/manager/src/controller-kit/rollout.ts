/**
 * Canary rollouts as every controller sees them (the rollout controller drives them; the
 * orchestrator and the updater leave their tasks alone; the control API starts, promotes and
 * aborts them; the dispatcher weights their traffic). Pure helpers and the one write that ends a
 * rollout, shared so that each of them reads a rollout the same way.
 */
import { Rollout_State, UpdateStatus_State, type CanaryConfig, type Rollout, type Service, type Task } from '@swarmd/proto';
import type { Tx } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import { createdAt, isDead, isRunnable } from './task.js';
import { shutdownTask } from './task-writes.js';

/** A canary task of a rollout (an extra slot beside the replicas): the rollout's, not the orchestrator's. */
export function isCanaryTask(t: Readonly<Task>): boolean {
  return t.canary !== undefined;
}

/** At a canary step (PROGRESSING or WAITING): the canaries take their weight, the old tasks stay. */
export function isCanaryPhase(s: Readonly<Service>): boolean {
  const st = s.rollout?.state;
  return st === Rollout_State.PROGRESSING || st === Rollout_State.WAITING;
}

/** A rollout not yet ended (a canary step, or the old tasks being replaced after the last step). */
export function isRolloutActive(s: Readonly<Service>): boolean {
  return isCanaryPhase(s) || s.rollout?.state === Rollout_State.PROMOTING;
}

/** The weight the canaries take now (percent; 0: none, every endpoint alike). */
export function canaryWeight(s: Readonly<Service>): number {
  return isCanaryPhase(s) ? (s.rollout?.weight ?? 0) : 0;
}

/** Docker-style state name of a rollout (`progressing`, `waiting`...). */
export function rolloutStateName(st: Rollout_State | undefined): string {
  return ((Rollout_State[st ?? 0] as string | undefined) ?? 'unknown').toLowerCase();
}

/** The smallest count of canaries whose share of all the tasks is at least `weight` percent (at least 1). */
export function canaryCountFor(replicas: number, weight: number): number {
  if (weight >= 100) return Math.max(1, replicas);
  return Math.max(1, Math.ceil((replicas * weight) / (100 - weight) - 1e-9));
}

/** Whether `step` is the rollout's last canary step (its weight 100, or no step after it). */
export function isLastStep(c: Readonly<CanaryConfig>, step: number): boolean {
  return step >= c.steps.length - 1 || c.steps[step] >= 100;
}

/** The rollout moved to `step` (weight, holding reset: the gate starts over once the canaries are ready). */
export function atStep(r: Readonly<Rollout>, step: number, now: number): Rollout {
  const c = r.config!;
  if (c.steps[step] >= 100) return promoting(r, now, `promoted to 100%`);
  return {
    ...r,
    state: c.intervalMs > 0 ? Rollout_State.PROGRESSING : Rollout_State.WAITING,
    step,
    weight: c.steps[step],
    stepStartedAt: 0,
    nextStepAt: 0,
    baselines: [],
    message: 'starting',
  };
}

/** The canary steps are over: the old tasks are replaced with the update config. */
export function promoting(r: Readonly<Rollout>, now: number, why: string): Rollout {
  return { ...r, state: Rollout_State.PROMOTING, weight: 100, stepStartedAt: now, nextStepAt: 0, baselines: [], message: `${why}: replacing the old tasks` };
}

/**
 * Ends a rollout in `tx` (`service abort`, a failed gate, a new update with --force): every new
 * connection goes back to the old tasks at once (the canaries are shut down, so no host counts
 * them as endpoints any more), and the spec the old tasks run is put back, so nothing replaces
 * them (after the last step, the updater rolls back what was already replaced).
 */
export function abortRollout(tx: Tx, s: Readonly<Service>, message: string, now: number, o: { restoreSpec?: boolean } = {}): Service {
  const u = cloneObject('service', s);
  const r = u.rollout!;
  for (const t of tx.find('task', { serviceId: s.id })) if (isCanaryTask(t) && isRunnable(t)) shutdownTask(tx, t, `canary removed: ${message}`, now);
  if (o.restoreSpec !== false && u.previousSpec && u.specVersion === r.specVersion) {
    [u.spec, u.previousSpec] = [u.previousSpec, u.spec];
    u.specVersion = (u.specVersion || 1) + 1;
    u.updateStatus = { state: UpdateStatus_State.ROLLBACK_STARTED, startedAt: now, completedAt: 0, message: `canary rollout aborted: ${message}`, failedTaskIds: [] };
  }
  u.rollout = { ...r, state: Rollout_State.ABORTED, weight: 0, completedAt: now, nextStepAt: 0, message };
  tx.update('service', u);
  return u;
}

/** The canary tasks of the service's current rollout (created since it started; earlier ones are a past rollout's). */
export function rolloutCanaries(s: Readonly<Service>, tasks: readonly Readonly<Task>[]): Readonly<Task>[] {
  const since = s.rollout?.startedAt ?? 0;
  return tasks.filter((t) => isCanaryTask(t) && createdAt(t) >= since);
}

/** The rollout's canary tasks meant to run and not ended. */
export function liveCanaries(s: Readonly<Service>, tasks: readonly Readonly<Task>[]): Readonly<Task>[] {
  return rolloutCanaries(s, tasks).filter((t) => isRunnable(t) && !isDead(t));
}
