/**
 * The canary rollout's decision for one service (*pure*: the store's service and tasks and `now`
 * in, writes out). A rollout is in the service (`Service.rollout`): the control API starts it
 * (UpdateService with a canary config), `promote` and `abort` move it by hand, and this plan
 * moves it on its own:
 *
 *  - canaries: `replicas` tasks of the new spec in extra slots (after the service's replicas),
 *    created, and replaced when one ends below the failure ratio. The old tasks are not touched.
 *  - the gate, at each step: every canary running, and healthy where the spec checks health; no
 *    canary failures past `max_failure_ratio` (a canary that ended on its own, or unhealthy); and
 *    with `check_path`, the HTTP checks the agents run (at least once a second per canary) at a
 *    success ratio of at least `check_success` over the step. The gate holds from the moment
 *    every canary is ready (`step_started_at`); a canary that stops being ready starts the step
 *    over. A failure or a check ratio that can no longer reach the threshold aborts.
 *  - timed steps (`interval_ms`): once the gate held for the whole interval, the next step; at
 *    the last one (or 100%) the rollout PROMOTES: the updater replaces the old tasks with the
 *    update config; when that update completes the canaries go and the rollout COMPLETES.
 *    Manual steps (`interval_ms` 0): the rollout WAITS at each step for `service promote`.
 */
import { Rollout_State, TaskState, UpdateStatus_State, type Rollout, type Service, type Task } from '@swarmd/proto';
import { atStep, isCanaryPhase, isLastStep, rolloutCanaries, isReadyTask, isUnhealthy, liveCanaries, observedState, promoting } from '../controller-kit/index.js';

/** Fewest HTTP checks in a step before its ratio can abort it (a manual step's ratio is the one so far). */
export const MIN_CHECKS = 5;
/** How often a rollout waiting on time or checks is looked at again. */
export const RECHECK_MS = 1000;

export interface RolloutInput {
  service: Readonly<Service>;
  /** Every task of the service. */
  tasks: readonly Readonly<Task>[];
  /** The service's replica count (the canaries take the slots after it). */
  replicas: number;
  now: number;
}

export interface RolloutPlan {
  /** The rollout, when it changes. */
  rollout?: Rollout;
  /** Canary tasks to create, by slot. */
  create: number[];
  /** Canary tasks to shut down (the rollout completed). */
  shutdown: Readonly<Task>[];
  /** End the rollout: traffic back to the old tasks, canaries removed, the old spec back. */
  abort?: { message: string };
  wakeAt?: number;
}

const stateName = (s: TaskState): string => ((TaskState[s] as string | undefined) ?? String(s)).replace(/^TASK_STATE_/, '').toLowerCase();

/** A canary that ended on its own or runs unhealthy: counted against the rollout, once. */
function failedCanary(t: Readonly<Task>): boolean {
  const s = observedState(t);
  return isUnhealthy(t) || s === TaskState.TASK_STATE_FAILED || s === TaskState.TASK_STATE_COMPLETE || s === TaskState.TASK_STATE_REJECTED;
}

function failureText(t: Readonly<Task>): string {
  const why = isUnhealthy(t) ? 'unhealthy' : t.status?.err || t.status?.message || stateName(observedState(t));
  return `canary task ${t.id} (${t.annotations?.name || 'slot ' + t.slot}) ${isUnhealthy(t) ? 'is' : 'ended'}: ${why}`;
}

export function planRollout(inp: RolloutInput): RolloutPlan {
  const { service, tasks, now } = inp;
  const out: RolloutPlan = { create: [], shutdown: [] };
  const r = service.rollout;
  if (!r || !r.config) return out;
  const c = r.config;
  const wake = (at: number): void => {
    if (at > now) out.wakeAt = Math.min(out.wakeAt ?? Infinity, at);
  };
  const canaries = rolloutCanaries(service, tasks);

  if (r.state === Rollout_State.PROMOTING) {
    if (service.specVersion !== r.specVersion) {
      // The update after the last step was rolled back (failure action rollback) or replaced.
      out.rollout = { ...r, state: Rollout_State.ABORTED, weight: 0, completedAt: now, message: service.updateStatus?.message || 'the service was updated again' };
      out.shutdown = liveCanaries(service, tasks);
      return out;
    }
    const st = service.updateStatus?.state;
    if (st === UpdateStatus_State.COMPLETED || st === undefined || st === UpdateStatus_State.UNKNOWN) {
      out.shutdown = liveCanaries(service, tasks);
      out.rollout = { ...r, state: Rollout_State.COMPLETED, completedAt: now, message: 'rollout completed: every task runs the new spec' };
    }
    return out;
  }
  if (!isCanaryPhase(service)) return out;
  if (service.specVersion !== r.specVersion) {
    out.abort = { message: 'the service was updated again' };
    return out;
  }

  // Failures, each counted once.
  const counted = new Set(r.failedTaskIds);
  const failures = canaries.filter((t) => !counted.has(t.id) && failedCanary(t)).sort((a, b) => (a.id < b.id ? -1 : 1));
  const failedTaskIds = [...r.failedTaskIds, ...failures.map((t) => t.id)];
  if (failures.length > 0 && failedTaskIds.length / Math.max(1, Number(r.replicas)) > c.maxFailureRatio) {
    out.abort = { message: `gate failed at step ${r.step + 1} (${r.weight}%): ${failureText(failures[failures.length - 1])}` };
    return out;
  }
  let next: Rollout = failures.length ? { ...r, failedTaskIds } : r;

  // Keep `replicas` canaries: replace those gone, in free slots after the service's replicas.
  const live = liveCanaries(service, tasks).filter((t) => !isUnhealthy(t));
  const used = new Set(live.map((t) => Number(t.slot)));
  for (let slot = inp.replicas + 1; live.length + out.create.length < Number(r.replicas); slot++) if (!used.has(slot)) out.create.push(slot);

  // The gate.
  const ready = live.filter(isReadyTask);
  const allReady = out.create.length === 0 && ready.length >= Number(r.replicas) && Number(r.replicas) > 0;
  if (!allReady) {
    if (next.stepStartedAt !== 0 || !next.message.startsWith('waiting')) {
      next = { ...next, stepStartedAt: 0, nextStepAt: 0, baselines: [], message: `waiting for ${Number(r.replicas) - ready.length} of ${r.replicas} canary tasks to run${service.spec?.task?.container?.healthcheck ? ' and be healthy' : ''}` };
    }
  } else if (next.stepStartedAt === 0) {
    next = {
      ...next,
      stepStartedAt: now,
      nextStepAt: c.intervalMs > 0 ? now + c.intervalMs : 0,
      baselines: ready.map((t) => ({ taskId: t.id, ok: t.status?.canaryCheck?.ok ?? 0, total: t.status?.canaryCheck?.total ?? 0 })),
      message: c.intervalMs > 0 ? 'gate holding' : 'gate holding, waiting for promote',
    };
  } else if (c.checkPath) {
    // The HTTP checks of this step, from the baselines.
    let ok = 0;
    let total = 0;
    let lastError = '';
    let lastAt = 0;
    for (const t of ready) {
      const b = next.baselines.find((x) => x.taskId === t.id);
      const cc = t.status?.canaryCheck;
      ok += Math.max(0, (cc?.ok ?? 0) - (b?.ok ?? 0));
      total += Math.max(0, (cc?.total ?? 0) - (b?.total ?? 0));
      if (cc?.lastError && (cc.lastAt ?? 0) >= lastAt) {
        lastError = `${cc.lastError} (task ${t.id})`;
        lastAt = cc.lastAt;
      }
    }
    const failed = total - ok;
    // What the whole step will have made at least: one check a second per canary.
    const expected = Math.max(total, c.intervalMs > 0 ? Math.floor(c.intervalMs / 1000) * ready.length : total);
    const best = (expected - failed) / Math.max(1, expected);
    if (total >= MIN_CHECKS && best < c.checkSuccess) {
      out.abort = {
        message: `gate failed at step ${r.step + 1} (${r.weight}%): HTTP check GET ${c.checkPath} on the canaries succeeded ${ok} of ${total} times in this step (below ${c.checkSuccess})${lastError ? `; last error: ${lastError}` : ''}`,
      };
      return out;
    }
    if (c.intervalMs > 0 && now >= next.nextStepAt && total < Math.floor(c.intervalMs / 2000) * ready.length) {
      // The checks are not coming in (an agent behind): the step waits for them.
      if (!next.message.startsWith('waiting for HTTP check results')) next = { ...next, message: `waiting for HTTP check results (${total} so far)` };
      wake(now + RECHECK_MS);
      if (next !== r) out.rollout = next;
      return out;
    }
    wake(now + RECHECK_MS);
  }

  // Timed steps move on once the gate held for the interval.
  if (allReady && c.intervalMs > 0 && next.stepStartedAt !== 0) {
    if (now >= next.nextStepAt) next = isLastStep(c, next.step) ? promoting(next, now, `step ${next.step + 1} of ${c.steps.length} passed`) : atStep(next, next.step + 1, now);
    else wake(next.nextStepAt);
  }
  if (next !== r) out.rollout = next;
  return out;
}
