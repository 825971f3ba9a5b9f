import { EventEmitter } from 'node:events';
import { AssignmentsMessage_Type, type AssignmentsMessage, type Task } from '@swarmd/proto';
import type { Logger } from '@swarmd/common';
import { AssignmentSet, type ApplyResult } from './assignment-set.js';
import { LocalTaskDb } from './local-task-db.js';

/** Emitted after each applied message: the whole set and what changed. */
export interface AssignmentsEvent {
  tasks: Task[];
  updated: Task[];
  removed: string[];
  complete: boolean;
}

export interface WorkerEvents {
  assignments: [AssignmentsEvent];
}

/**
 * Consumes the Assignments stream: keeps the assigned set (AssignmentSet), persists it in the
 * local db and emits `assignments`. The task runner subscribes to that event (issue: services).
 */
export class Worker extends EventEmitter<WorkerEvents> {
  private readonly set: AssignmentSet;

  private constructor(
    private readonly db: LocalTaskDb | undefined,
    initial: { version: string; tasks: Task[] },
    private readonly logger: Logger,
  ) {
    super();
    this.set = new AssignmentSet(initial.tasks, initial.version);
  }

  /** A worker whose set starts from DIR/agent/assignments.json (none without a stateDir). */
  static async open(stateDir: string | undefined, logger: Logger): Promise<Worker> {
    const db = stateDir ? new LocalTaskDb(stateDir) : undefined;
    return new Worker(db, db ? await db.load() : { version: '', tasks: [] }, logger);
  }

  tasks(): Task[] {
    return this.set.list();
  }

  /** A new Assignments stream begins: wait for its COMPLETE set. */
  streamStarted(): void {
    this.set.resetStream();
  }

  async apply(msg: AssignmentsMessage): Promise<ApplyResult> {
    const r = this.set.apply(msg);
    if (!r.ok) {
      this.logger.warn('assignments refused', { reason: r.reason });
      return r;
    }
    const complete = msg.type === AssignmentsMessage_Type.COMPLETE;
    if (r.updated.length || r.removed.length || complete) {
      const tasks = this.set.list();
      if (this.db) await this.db.save(this.set.resultsIn, tasks);
      this.emit('assignments', { tasks, updated: r.updated, removed: r.removed, complete });
    }
    return r;
  }
}
