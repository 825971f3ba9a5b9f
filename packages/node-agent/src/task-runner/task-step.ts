/**
 * The pure core of the task runner (STYLE.md §2 S5, swarmkit's exec.Do): one transition per call,
 * never backwards. *pure*: no I/O, no timers, no clock (the timestamp is an input).
 *
 * The driver (task-manager.ts) asks `nextAction()` what to do with the controller, runs it, and
 * hands the result to `taskStep()`, which decides the next status.
 */
import { HealthState, TaskState, type ContainerStatus, type TaskStatus } from '@swarmd/proto';

/** What the step needs of a task: its desired state and the status observed so far. */
export interface StepTask {
  desiredState: TaskState;
  status: TaskStatus;
}

/** The controller operation the task needs next. */
export type StepAction = 'accept' | 'prepare' | 'ready' | 'start' | 'wait' | 'shutdown' | 'none';

/** The result of running `action` on the controller. */
export type ActionResult =
  | { kind: 'ok'; container?: Partial<ContainerStatus> }
  /** prepare/start/wait/shutdown failed: `permanent` errors end the task, others are retried. */
  | { kind: 'error'; error: Error; permanent: boolean }
  /** The container exited (wait, or start when it died before being healthy). */
  | { kind: 'exited'; exitCode: number; oomKilled: boolean; error?: string }
  /** The health check failed `retries` times in a row. */
  | { kind: 'unhealthy'; message?: string };

export type StepOutcome = { kind: 'transition'; status: TaskStatus } | { kind: 'noop' } | { kind: 'retry'; error: Error };

const S = TaskState;

/** A state the task never leaves. */
export function isTerminal(state: TaskState): boolean {
  return state >= S.TASK_STATE_COMPLETE;
}

/** What to do next for this task (the controller call the driver makes before `taskStep`). */
export function nextAction(t: StepTask): StepAction {
  const state = t.status.state;
  if (isTerminal(state)) return 'none';
  if (t.desiredState >= S.TASK_STATE_SHUTDOWN) return 'shutdown';
  if (state > t.desiredState) return 'none'; // beyond what is asked (e.g. desired READY: pre-pull only)
  if (state < S.TASK_STATE_PREPARING) return 'accept';
  switch (state) {
    case S.TASK_STATE_PREPARING:
      return 'prepare';
    case S.TASK_STATE_READY:
      return t.desiredState >= S.TASK_STATE_RUNNING ? 'ready' : 'none';
    case S.TASK_STATE_STARTING:
      return 'start';
    case S.TASK_STATE_RUNNING:
      return 'wait';
    default:
      return 'none';
  }
}

function next(prev: TaskStatus, state: TaskState, message: string, now: number, extra: Partial<TaskStatus> = {}): StepOutcome {
  if (state < prev.state) throw new Error(`task-step: refusing a backward move ${TaskState[prev.state]} → ${TaskState[state]}`);
  return {
    kind: 'transition',
    status: {
      timestamp: now,
      state,
      message,
      err: extra.err ?? '',
      container: extra.container ?? prev.container,
      portStatus: extra.portStatus ?? prev.portStatus,
      appliedAt: prev.appliedAt,
      canaryCheck: prev.canaryCheck,
    },
  };
}

function withContainer(prev: TaskStatus, c: Partial<ContainerStatus> | undefined): ContainerStatus | undefined {
  if (!c) return prev.container;
  const base: ContainerStatus = prev.container ?? { containerId: '', pid: 0, exitCode: 0, oomKilled: false, health: HealthState.HEALTH_STATE_NONE, healthOutput: '' };
  return { ...base, ...c };
}

/** The status a container exit leads to: COMPLETE on 0, FAILED otherwise (OOM named). */
export function exitOutcome(prev: TaskStatus, r: { exitCode: number; oomKilled: boolean; error?: string }, now: number): StepOutcome {
  const container = withContainer(prev, { exitCode: r.exitCode, oomKilled: r.oomKilled, pid: 0 });
  if (r.exitCode === 0 && !r.oomKilled) return next(prev, S.TASK_STATE_COMPLETE, 'finished', now, { container });
  const oom = r.oomKilled ? ': OOM killed (memory limit reached)' : '';
  const why = r.error ? `: ${r.error}` : '';
  const err = `task: non-zero exit (${r.exitCode})${oom}${why}`;
  return next(prev, S.TASK_STATE_FAILED, 'failed', now, { err, container });
}

/**
 * The next status after `action` ran with `result`. `now` stamps the new status. A `noop` means
 * nothing changed (wait for the desired state to change); `retry` means run the action again later.
 */
export function taskStep(t: StepTask, action: StepAction, result: ActionResult, now: number): StepOutcome {
  const prev = t.status;
  if (isTerminal(prev.state)) return { kind: 'noop' };
  if (result.kind === 'error' && !result.permanent) return { kind: 'retry', error: result.error };
  switch (action) {
    case 'none':
      return { kind: 'noop' };
    case 'accept':
      return next(prev, S.TASK_STATE_PREPARING, 'preparing', now);
    case 'shutdown':
      if (result.kind === 'error') return next(prev, S.TASK_STATE_FAILED, 'shutdown failed', now, { err: result.error.message });
      return next(prev, S.TASK_STATE_SHUTDOWN, 'shutdown', now, {
        container: result.kind === 'exited' ? withContainer(prev, { exitCode: result.exitCode, oomKilled: result.oomKilled, pid: 0 }) : prev.container,
      });
    case 'prepare':
      if (result.kind === 'error') return next(prev, S.TASK_STATE_REJECTED, 'preparing failed', now, { err: result.error.message });
      if (result.kind !== 'ok') return { kind: 'retry', error: new Error(`prepare: unexpected ${result.kind}`) };
      return next(prev, S.TASK_STATE_READY, 'prepared', now, { container: withContainer(prev, result.container) });
    case 'ready':
      return next(prev, S.TASK_STATE_STARTING, 'starting', now);
    case 'start':
      switch (result.kind) {
        case 'ok':
          return next(prev, S.TASK_STATE_RUNNING, 'started', now, { container: withContainer(prev, result.container) });
        case 'error':
          return next(prev, S.TASK_STATE_FAILED, 'starting failed', now, { err: result.error.message });
        case 'exited':
          return exitOutcome(prev, result, now);
        case 'unhealthy':
          return next(prev, S.TASK_STATE_FAILED, 'unhealthy', now, { err: unhealthyErr(result.message), container: withContainer(prev, { health: HealthState.HEALTH_STATE_UNHEALTHY }) });
      }
      break;
    case 'wait':
      switch (result.kind) {
        case 'ok':
          return { kind: 'noop' };
        case 'error':
          return next(prev, S.TASK_STATE_FAILED, 'failed', now, { err: result.error.message });
        case 'exited':
          return exitOutcome(prev, result, now);
        case 'unhealthy':
          return next(prev, S.TASK_STATE_FAILED, 'unhealthy', now, { err: unhealthyErr(result.message), container: withContainer(prev, { health: HealthState.HEALTH_STATE_UNHEALTHY }) });
      }
  }
  return { kind: 'noop' };
}

function unhealthyErr(detail?: string): string {
  return detail ? `task: unhealthy container: ${detail}` : 'task: unhealthy container';
}
