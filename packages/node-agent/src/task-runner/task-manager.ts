/**
 * The per-task loop (swarmkit's agent/task.go): asks the pure step what to do, runs it on the
 * TaskController, applies the outcome and reports each new status. A change of the desired
 * state (update()) interrupts a running wait/start so a shutdown proceeds at once.
 */
import { TaskState, type Task, type TaskStatus } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { isAbortError, systemClock, type Clock } from '@swarmd/common/clock';
import { ContainerExitedError, PermanentError, UnhealthyError, type TaskController } from '../executor/executor.js';
import { isTerminal, nextAction, taskStep, type ActionResult, type StepAction } from './task-step.js';
import { startCanaryCheck } from './canary-check.js';

export interface TaskManagerOptions {
  task: Task;
  controller: TaskController;
  report: (taskId: string, status: TaskStatus) => void;
  clock?: Clock;
  logger?: Logger;
  /** Delay between retries of a failing action (doubles up to 10× this; default 500 ms). */
  retryDelayMs?: number;
}

export function emptyStatus(state: TaskState = TaskState.TASK_STATE_ASSIGNED): TaskStatus {
  return { timestamp: 0, state, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined };
}

export class TaskManager {
  private task: Task;
  private status: TaskStatus;
  private readonly ctlr: TaskController;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly closed = new AbortController();
  /** The action in flight, and how to interrupt it. */
  private inFlight: { action: StepAction; ac: AbortController } | undefined;
  private wake: (() => void) | undefined;
  private readonly loop: Promise<void>;
  private removing: Promise<void> | undefined;
  private canaryCheck: { stop(): void } | undefined;

  constructor(private readonly o: TaskManagerOptions) {
    this.task = o.task;
    this.status = o.task.status ?? emptyStatus();
    this.ctlr = o.controller;
    this.clock = o.clock ?? systemClock;
    this.log = o.logger ?? nullLogger;
    this.loop = this.run();
  }

  get id(): string {
    return this.task.id;
  }

  current(): TaskStatus {
    return this.status;
  }

  /** A new version of the task (desired state may have changed). */
  update(task: Task): void {
    const desiredChanged = task.desiredState !== this.task.desiredState;
    this.task = { ...task, status: this.status };
    // Interrupted only when the new desired state asks for another action: a prepare going on
    // when the task may start (desired READY → RUNNING) is what RUNNING needs too, so it runs
    // on (aborted, it would be done again: a second attach, every spawn of it again).
    const f = this.inFlight;
    if (desiredChanged && f && nextAction({ desiredState: task.desiredState, status: this.status }) !== f.action) f.ac.abort();
    this.wake?.();
  }

  /** Stops the loop; the container is left as it is (it outlives the agent). */
  async close(): Promise<void> {
    this.closed.abort();
    this.syncCanaryCheck();
    this.inFlight?.ac.abort();
    this.wake?.();
    await this.loop;
  }

  /** The task left the assignments: shut it down (if needed), remove its container, stop. */
  remove(): Promise<void> {
    this.removing ??= (async () => {
      this.update({ ...this.task, desiredState: Math.max(this.task.desiredState, TaskState.TASK_STATE_SHUTDOWN) });
      // Bounded: a shutdown that keeps failing must not hold the removal (or the agent's stop) forever.
      const bound = new AbortController();
      await Promise.race([this.settled(), this.clock.sleep(60_000, bound.signal).catch(() => undefined)]);
      bound.abort();
      await this.close();
      await this.releasing;
      for (let attempt = 0; ; attempt++) {
        try {
          await this.ctlr.remove(new AbortController().signal);
          return;
        } catch (err) {
          this.log.warn('remove failed', { err: describeError(err), attempt });
          if (attempt >= 5) return;
          await this.clock.sleep(200 * 2 ** attempt);
        }
      }
    })();
    return this.removing;
  }

  private settledWaiters: (() => void)[] = [];
  /** Resolves once the task is terminal or the loop is closed. */
  settled(): Promise<void> {
    if (isTerminal(this.status.state) || this.closed.signal.aborted) return Promise.resolve();
    return new Promise((r) => this.settledWaiters.push(r));
  }

  private releasing: Promise<void> | undefined;

  /**
   * Moves to `s`. A task that ends is released (what still runs is stopped, its address and host
   * ports freed). The managers hear it ended once that is done when its container may still run
   * (a failed health check, a failed start) or when it publishes host-mode ports, so that a
   * replacement never runs beside it nor finds its ports taken. A task whose container is known to
   * have exited (`exited`) and that holds no host port is reported at once, and released
   * meanwhile: a rolling update's next task does not wait for the old one's network teardown
   * (`ip link del`, `ip netns del`), and its overlay address stays its own until the task is
   * removed (the allocator frees it only then; `remove` waits for the release).
   */
  private async setStatus(s: TaskStatus, exited = false): Promise<void> {
    if (isTerminal(s.state)) {
      this.releasing ??= this.ctlr.release(new AbortController().signal).catch((err: unknown) => this.log.warn('releasing the ended task failed', { err: describeError(err) }));
      if (!exited || this.ctlr.ports().length > 0) await this.releasing;
    }
    this.status = s;
    this.task = { ...this.task, status: s };
    this.syncCanaryCheck();
    this.log.info('task status', { state: TaskState[s.state], message: s.message, err: s.err || undefined });
    this.o.report(this.task.id, s);
    if (isTerminal(s.state)) for (const w of this.settledWaiters.splice(0)) w();
  }

  /** Re-attach: bring the status in line with what the runtime has (agent restart). */
  private async reattach(): Promise<void> {
    const st = this.status.state;
    if (isTerminal(st) || st < TaskState.TASK_STATE_PREPARING) return;
    const facts = await this.ctlr.inspect();
    const now = this.clock.now();
    const base = { ...this.status, timestamp: now, err: '', container: { ...emptyContainer(), ...this.status.container, ...facts.container } };
    if (facts.exists && (facts.status === 'running' || facts.status === 'exited') && st < TaskState.TASK_STATE_RUNNING) {
      await this.setStatus({ ...base, state: TaskState.TASK_STATE_RUNNING, message: 're-attached' });
    } else if (!facts.exists && st >= TaskState.TASK_STATE_STARTING) {
      await this.setStatus({ ...base, state: TaskState.TASK_STATE_FAILED, message: 'failed', err: 'task: container lost (not found after an agent restart)' });
    }
  }

  /**
   * A canary task with an HTTP check runs it while it is RUNNING (and this loop is open); each
   * result goes to the managers with the task's status.
   */
  private syncCanaryCheck(): void {
    const c = this.task.canary;
    const want = !!c?.path && c.port > 0 && this.status.state === TaskState.TASK_STATE_RUNNING && !this.closed.signal.aborted;
    if (!want) {
      this.canaryCheck?.stop();
      this.canaryCheck = undefined;
      return;
    }
    const host = this.ctlr.address?.();
    if (this.canaryCheck || !host) return;
    this.log.info('canary HTTP check started', { host, port: c.port, path: c.path });
    this.canaryCheck = startCanaryCheck(
      {
        host,
        port: c.port,
        path: c.path,
        clock: this.clock,
        onResult: (r) => {
          if (this.status.state !== TaskState.TASK_STATE_RUNNING) return;
          this.status = { ...this.status, canaryCheck: r };
          this.task = { ...this.task, status: this.status };
          this.o.report(this.task.id, this.status);
        },
      },
      this.status.canaryCheck,
    );
  }

  private async run(): Promise<void> {
    try {
      await this.reattach();
    } catch (err) {
      this.log.warn('re-attach: inspect failed', { err: describeError(err) });
    }
    this.syncCanaryCheck();
    let failures = 0;
    while (!this.closed.signal.aborted) {
      const t = { desiredState: this.task.desiredState, status: this.status };
      const action = nextAction(t);
      if (action === 'none') {
        if (isTerminal(this.status.state)) for (const w of this.settledWaiters.splice(0)) w();
        await this.idle();
        continue;
      }
      const ac = new AbortController();
      this.inFlight = { action, ac };
      const result = await this.perform(action, ac.signal);
      this.inFlight = undefined;
      if (this.closed.signal.aborted) return;
      if (ac.signal.aborted && action !== 'shutdown') continue; // desired state changed mid-action: decide again
      const outcome = taskStep(t, action, result, this.clock.now());
      if (outcome.kind === 'transition') {
        failures = 0;
        const ports = this.ctlr.ports();
        const s = outcome.status;
        if (ports.length && s.state >= TaskState.TASK_STATE_READY) s.portStatus = { ports };
        // The container is known to be gone: it exited, or a shutdown stopped it (or found none).
        await this.setStatus(s, result.kind === 'exited' || (action === 'shutdown' && result.kind === 'ok'));
      } else if (outcome.kind === 'retry') {
        failures++;
        this.log.warn('task action failed; retrying', { action, err: describeError(outcome.error), failures });
        const base = this.o.retryDelayMs ?? 500;
        const delay = Math.min(base * 2 ** (failures - 1), base * 10);
        // As Docker's tasks do: the error shows at once (service ps ERROR) while it is retried.
        if (action === 'prepare' || action === 'start') await this.reportRetry(outcome.error, delay);
        await this.clock.sleep(delay, this.closed.signal).catch(() => undefined);
      } else {
        await this.idle();
      }
    }
  }

  /** The same state again, with the error and when the next attempt comes (only when they change). */
  private async reportRetry(error: Error, delayMs: number): Promise<void> {
    const err = describeError(error);
    const message = `${TaskState[this.status.state].slice('TASK_STATE_'.length).toLowerCase()}: retrying in ${Math.max(1, Math.round(delayMs / 1000))}s`;
    if (this.status.err === err && this.status.message === message) return;
    await this.setStatus({ ...this.status, timestamp: this.clock.now(), err, message });
  }

  private idle(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
      if (this.closed.signal.aborted) resolve();
    });
  }

  private async perform(action: StepAction, signal: AbortSignal): Promise<ActionResult> {
    try {
      switch (action) {
        case 'accept':
        case 'ready':
        case 'none':
          return { kind: 'ok' };
        case 'prepare':
          return { kind: 'ok', container: await this.ctlr.prepare(signal, { mayStart: () => this.task.desiredState === TaskState.TASK_STATE_RUNNING && !signal.aborted }) };
        case 'start':
          return { kind: 'ok', container: await this.ctlr.start(signal) };
        case 'wait': {
          const exit = await this.ctlr.wait(signal);
          return { kind: 'exited', ...exit };
        }
        case 'shutdown': {
          const exit = await this.ctlr.shutdown(signal);
          return exit ? { kind: 'exited', ...exit } : { kind: 'ok' };
        }
      }
    } catch (err) {
      if (err instanceof UnhealthyError) return { kind: 'unhealthy', message: err.detail };
      if (err instanceof ContainerExitedError) return { kind: 'exited', ...err.exit };
      if (isAbortError(err) || signal.aborted) return { kind: 'error', error: err instanceof Error ? err : new Error(String(err)), permanent: false };
      const error = err instanceof Error ? err : new Error(String(err));
      // prepare: only PermanentError rejects the task; start: any error fails it; wait/shutdown: retried.
      const permanent = action === 'prepare' ? err instanceof PermanentError : action === 'start';
      return { kind: 'error', error, permanent };
    }
  }
}

function emptyContainer() {
  return { containerId: '', pid: 0, exitCode: 0, oomKilled: false, health: 0, healthOutput: '' };
}
