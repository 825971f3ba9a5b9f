import { AssignmentsMessage_Type, AssignmentChange_Action, Task, type Assignment, type AssignmentsMessage, type Config, type Secret } from '@swarmd/proto';

/** What one AssignmentsMessage changed. */
export interface AssignmentDiff {
  /** Tasks that are new or whose content changed, in message order. */
  updated: Task[];
  /** Ids of tasks no longer assigned. */
  removed: string[];
}

export type ApplyResult = ({ ok: true } & AssignmentDiff) | { ok: false; reason: string };

/**
 * The set of tasks the dispatcher assigned to this node. Pure: messages in, a diff out.
 *
 * - COMPLETE replaces the whole set (its REMOVE changes mean nothing and are ignored); tasks
 *   missing from it are removed.
 * - INCREMENTAL applies UPDATE (add or replace) and REMOVE changes, but only on top of the set it
 *   was computed from: `appliesTo` must be the `resultsIn` of the last message applied. Out of
 *   sequence it is refused (the caller re-opens the stream, which starts with a COMPLETE).
 * - Re-sending a task unchanged is not a change.
 */
export class AssignmentSet {
  private tasks = new Map<string, Task>();
  /** The secrets (with their data) and configs of the assigned tasks: in memory only, never persisted. */
  private secrets = new Map<string, Secret>();
  private configs = new Map<string, Config>();
  private version = '';
  private complete = false;

  constructor(initial: readonly Task[] = [], version = '') {
    for (const t of initial) this.tasks.set(t.id, t);
    this.version = version;
  }

  get resultsIn(): string {
    return this.version;
  }

  /** True once a COMPLETE set has been applied in this life of the stream. */
  get hasComplete(): boolean {
    return this.complete;
  }

  /** A new stream starts: only a COMPLETE message is accepted until one arrives. */
  resetStream(): void {
    this.complete = false;
  }

  list(): Task[] {
    return [...this.tasks.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: string): Task | undefined {
    return this.tasks.get(id);
  }

  secret(id: string): Secret | undefined {
    return this.secrets.get(id);
  }

  config(id: string): Config | undefined {
    return this.configs.get(id);
  }

  /** Secrets and configs ride in the same messages as tasks (COMPLETE: the whole set). */
  private applyData(msg: AssignmentsMessage): void {
    if (msg.type === AssignmentsMessage_Type.COMPLETE) {
      this.secrets = new Map();
      this.configs = new Map();
    }
    for (const c of msg.changes) {
      const item = c.assignment?.item;
      const remove = c.action === AssignmentChange_Action.REMOVE;
      if (item?.$case === 'secret') {
        if (remove) this.secrets.delete(item.secret.id);
        else this.secrets.set(item.secret.id, item.secret);
      } else if (item?.$case === 'config') {
        if (remove) this.configs.delete(item.config.id);
        else this.configs.set(item.config.id, item.config);
      }
    }
  }

  get size(): number {
    return this.tasks.size;
  }

  apply(msg: AssignmentsMessage): ApplyResult {
    const updated: Task[] = [];
    const removed: string[] = [];
    if (msg.type === AssignmentsMessage_Type.COMPLETE) {
      const next = new Map<string, Task>();
      for (const c of msg.changes) {
        const t = taskOf(c.assignment);
        if (c.action !== AssignmentChange_Action.UPDATE || !t) continue;
        next.set(t.id, t);
      }
      for (const id of this.tasks.keys()) if (!next.has(id)) removed.push(id);
      for (const [id, t] of next) if (!sameTask(this.tasks.get(id), t)) updated.push(t);
      this.tasks = next;
      this.complete = true;
    } else if (msg.type === AssignmentsMessage_Type.INCREMENTAL) {
      if (!this.complete) return { ok: false, reason: 'incremental assignments before a complete set' };
      const added = new Set<string>();
      if (msg.appliesTo !== this.version) {
        return { ok: false, reason: `incremental assignments apply to ${msg.appliesTo || '(none)'}, have ${this.version || '(none)'}` };
      }
      for (const c of msg.changes) {
        const t = taskOf(c.assignment);
        if (!t) continue;
        if (c.action === AssignmentChange_Action.REMOVE) {
          if (this.tasks.delete(t.id)) {
            if (!added.has(t.id)) removed.push(t.id); // added and removed in one message: no change
            const i = updated.findIndex((u) => u.id === t.id);
            if (i >= 0) updated.splice(i, 1);
          }
        } else if (!sameTask(this.tasks.get(t.id), t)) {
          if (!this.tasks.has(t.id) && !removed.includes(t.id)) added.add(t.id);
          this.tasks.set(t.id, t);
          const i = updated.findIndex((u) => u.id === t.id);
          if (i >= 0) updated[i] = t;
          else updated.push(t);
          const r = removed.indexOf(t.id);
          if (r >= 0) removed.splice(r, 1);
        }
      }
    } else {
      return { ok: false, reason: `unknown assignments message type ${String(msg.type)}` };
    }
    this.applyData(msg);
    this.version = msg.resultsIn;
    return { ok: true, updated, removed };
  }
}

function taskOf(a: Assignment | undefined): Task | undefined {
  const t = a?.item?.$case === 'task' ? a.item.task : undefined;
  return t && t.id ? t : undefined;
}

function sameTask(a: Task | undefined, b: Task): boolean {
  return a !== undefined && JSON.stringify(Task.toJSON(a)) === JSON.stringify(Task.toJSON(b));
}
