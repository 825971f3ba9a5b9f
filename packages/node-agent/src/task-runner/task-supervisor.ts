/**
 * Assignments → one TaskManager per task (swarmkit's agent/worker.go reconcile). Wires the
 * agent's Worker (its `assignments` event and persisted set), an Executor and the status
 * reporter. On start it re-attaches: each assigned task's manager inspects its container first
 * (found by the task id) and resumes; containers of tasks no longer assigned are removed. A
 * persisted task that has no container yet is not started from the persisted set: the managers
 * may have given its slot to another node while this one was away (a second container of the
 * slot), so it waits for their first complete set of assignments.
 */
import type { EventEmitter } from 'node:events';
import { TaskState, type Task, type TaskStatus } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { systemClock, type Clock } from '@swarmd/common/clock';
import type { Executor } from '../executor/executor.js';
import type { AssignmentsEvent } from '../assignments/worker.js';
import { TaskManager } from './task-manager.js';
import type { LogPublisher } from '../logs/log-publisher.js';

/** What the supervisor needs of the agent's Worker. */
export interface AssignmentSource {
  tasks(): Task[];
  on(ev: 'assignments', fn: (e: AssignmentsEvent) => void): unknown;
  off(ev: 'assignments', fn: (e: AssignmentsEvent) => void): unknown;
}

export interface TaskSupervisorOptions {
  executor: Executor;
  assignments: AssignmentSource | (EventEmitter & AssignmentSource);
  report: (taskId: string, status: TaskStatus) => void;
  clock?: Clock;
  logger?: Logger;
  retryDelayMs?: number;
  /** Streams the logs of running tasks to the managers. */
  logs?: LogPublisher;
}

export interface TaskSupervisor {
  /** Task ids with a running manager. */
  taskIds(): string[];
  /** The last status of a task this agent observed. */
  status(taskId: string): TaskStatus | undefined;
  /** Resolves once the reconciles queued so far are done (tests). */
  idle(): Promise<void>;
  /** Stops every loop; containers keep running (a restarted agent re-attaches). */
  stop(): Promise<void>;
}

export async function startTaskSupervisor(o: TaskSupervisorOptions): Promise<TaskSupervisor> {
  const log = o.logger ?? nullLogger;
  const clock = o.clock ?? systemClock;
  const managers = new Map<string, TaskManager>();
  const removing = new Map<string, Promise<void>>();
  let chain: Promise<void> = Promise.resolve();
  let stopped = false;
  const startedAt = clock.now();
  /** Tasks already running before this agent started (re-attached): only their new lines are sent. */
  const wasRunning = new Set<string>();
  const serviceOf = new Map<string, string>();
  const report = (taskId: string, s: TaskStatus) => {
    o.report(taskId, s);
    if (o.logs && s.state >= TaskState.TASK_STATE_RUNNING && s.state <= TaskState.TASK_STATE_FAILED) {
      o.logs.follow(taskId, serviceOf.get(taskId) ?? '', wasRunning.has(taskId) ? startedAt : undefined);
    }
  };

  const removeTask = (id: string, m: TaskManager | undefined) => {
    if (removing.has(id)) return;
    managers.delete(id);
    o.logs?.unfollow(id);
    const p = (async () => {
      if (m) await m.remove();
      else await o.executor.controller({ id } as Task).remove(new AbortController().signal);
    })()
      .catch((err: unknown) => log.warn('removing task failed', { task: id, err: describeError(err) }))
      .finally(() => removing.delete(id));
    removing.set(id, p);
  };

  const reconcile = async (tasks: Task[], removeOrphans: boolean, persisted = false) => {
    if (stopped) return;
    const want = new Map(tasks.map((t) => [t.id, t]));
    const containers = removeOrphans ? await o.executor.listTaskContainers().catch(() => []) : [];
    const hasContainer = new Set(containers.map((c) => c.taskId));
    for (const t of tasks) {
      const m = managers.get(t.id);
      if (m) m.update(t);
      else if (persisted && (t.status?.state ?? 0) < TaskState.TASK_STATE_STARTING && !hasContainer.has(t.id)) {
        log.info('persisted task not started before the managers confirm it', { task: t.id });
      } else if (!removing.has(t.id)) {
        serviceOf.set(t.id, t.serviceId);
        if ((t.status?.state ?? 0) >= TaskState.TASK_STATE_RUNNING) wasRunning.add(t.id);
        if (o.logs && t.status?.state === TaskState.TASK_STATE_RUNNING) o.logs.follow(t.id, t.serviceId, startedAt);
        managers.set(
          t.id,
          new TaskManager({
            task: t,
            controller: o.executor.controller(t),
            report,
            clock,
            logger: log.child({ task: t.id }),
            ...(o.retryDelayMs !== undefined ? { retryDelayMs: o.retryDelayMs } : {}),
          }),
        );
      }
    }
    for (const [id, m] of managers) if (!want.has(id)) removeTask(id, m);
    for (const c of containers) {
      if (!want.has(c.taskId) && !managers.has(c.taskId)) removeTask(c.taskId, undefined);
    }
  };

  const enqueue = (tasks: Task[], removeOrphans: boolean, persisted = false) => {
    chain = chain.then(() => reconcile(tasks, removeOrphans, persisted)).catch((err: unknown) => log.warn('reconcile failed', { err: describeError(err) }));
  };

  const onAssignments = (e: AssignmentsEvent) => enqueue(e.tasks, e.complete);
  o.assignments.on('assignments', onAssignments);
  enqueue(o.assignments.tasks(), true, true);
  await chain;

  return {
    taskIds: () => [...managers.keys()],
    status: (id) => managers.get(id)?.current(),
    idle: async () => {
      await chain;
      await Promise.all(removing.values());
    },
    stop: async () => {
      stopped = true;
      o.assignments.off('assignments', onAssignments);
      await chain;
      await Promise.all([...managers.values()].map((m) => m.close()));
      await Promise.all(removing.values());
      managers.clear();
    },
  };
}
