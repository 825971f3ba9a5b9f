import { EventEmitter } from 'node:events';
import { AssignmentsMessage_Type, type AssignmentsMessage, type Config, type NetworkStateSet, type Secret, type Task } from '@swarmd/proto';
import type { Logger } from '@swarmd/common/logger';
import { AssignmentSet, type ApplyResult } from './assignment-set.js';
import { LocalTaskDb, NetworkStateDb } from './local-task-db.js';

/** Emitted after each applied message: the whole set and what changed. */
export interface AssignmentsEvent {
  tasks: Task[];
  updated: Task[];
  removed: string[];
  complete: boolean;
}

export interface WorkerEvents {
  assignments: [AssignmentsEvent];
  /**
   * A new NetworkStateSet (it replaces the previous one whole), with the `results_in` of the
   * message that carried it (to acknowledge once programmed); emitted before its `assignments`.
   */
  networks: [NetworkStateSet, string];
}

/** What networking needs of the Worker: the latest NetworkStateSet and its changes. */
export interface NetworkStateSource {
  networkState(): NetworkStateSet;
  /** The results_in of the message that carried networkState() ('' : persisted from an earlier run). */
  networkStateVersion(): string;
  on(ev: 'networks', fn: (s: NetworkStateSet, version: string) => void): unknown;
  off(ev: 'networks', fn: (s: NetworkStateSet, version: string) => void): unknown;
}

/**
 * Consumes the Assignments stream: keeps the assigned set (AssignmentSet) and the overlay
 * networks' state the managers push with it, persists both in the local db and emits `networks`
 * then `assignments`. The task runner subscribes to `assignments`, networking to `networks`.
 */
export class Worker extends EventEmitter<WorkerEvents> implements NetworkStateSource {
  private readonly set: AssignmentSet;
  private networks: NetworkStateSet;
  private networksVersion = '';

  private constructor(
    private readonly db: { tasks: LocalTaskDb; networks: NetworkStateDb } | undefined,
    initial: { version: string; tasks: Task[]; networks: NetworkStateSet },
    private readonly logger: Logger,
  ) {
    super();
    this.set = new AssignmentSet(initial.tasks, initial.version);
    this.networks = initial.networks;
  }

  /** A worker whose state starts from DIR/agent/{assignments,network-state}.json (none without a stateDir). */
  static async open(stateDir: string | undefined, logger: Logger): Promise<Worker> {
    const db = stateDir ? { tasks: new LocalTaskDb(stateDir), networks: new NetworkStateDb(stateDir) } : undefined;
    const initial = db ? { ...(await db.tasks.load()), networks: await db.networks.load() } : { version: '', tasks: [], networks: { networks: [] } };
    return new Worker(db, initial, logger);
  }

  tasks(): Task[] {
    return this.set.list();
  }

  /** A secret of one of this node's tasks, with its data (memory only). */
  secret(id: string): Secret | undefined {
    return this.set.secret(id);
  }

  config(id: string): Config | undefined {
    return this.set.config(id);
  }

  /** The overlay networks of this node's tasks, as last pushed (or persisted). */
  networkState(): NetworkStateSet {
    return this.networks;
  }

  networkStateVersion(): string {
    return this.networksVersion;
  }

  /** The results_in of the last message applied (a store version; '' before the first). */
  version(): string {
    return this.set.resultsIn;
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
    // A COMPLETE set without network state means no overlay networks; INCREMENTAL: unchanged.
    const networks = msg.networkState ?? (complete ? { networks: [] } : undefined);
    if (networks) {
      this.networks = networks;
      this.networksVersion = msg.resultsIn;
      // Programmed first, kept for a restart after.
      this.emit('networks', networks, msg.resultsIn);
      if (this.db) await this.db.networks.save(networks);
    }
    if (r.updated.length || r.removed.length || complete) {
      const tasks = this.set.list();
      if (this.db) await this.db.tasks.save(this.set.resultsIn, tasks);
      this.emit('assignments', { tasks, updated: r.updated, removed: r.removed, complete });
    }
    return r;
  }
}
