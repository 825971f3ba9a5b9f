import { type Service, type Task, TaskState } from '@swarmd/proto';
import type { Batch, Tx } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import { newTask } from './task.js';

/**
 * Sets desired SHUTDOWN on a task as read (CONFLICT if it changed since: the caller re-reconciles).
 * Returns false when the task is gone or already told to stop (by someone else: not ours to replace).
 */
export function shutdownTask(tx: Tx, t: Readonly<Task>, reason: string, now: number): boolean {
  const cur = tx.get('task', t.id);
  if (!cur || cur.desiredState > TaskState.TASK_STATE_RUNNING) return false;
  const c = cloneObject('task', t);
  c.desiredState = TaskState.TASK_STATE_SHUTDOWN;
  if (c.status && c.status.state < TaskState.TASK_STATE_ASSIGNED) {
    // Never handed to a node: nothing will report it stopped.
    c.status = { ...c.status, state: TaskState.TASK_STATE_SHUTDOWN, timestamp: now, message: reason };
  } else if (c.status) c.status = { ...c.status, message: c.status.message || reason };
  tx.update('task', c);
  return true;
}

export interface WriteOutcome {
  failed: number;
}

/**
 * Stages a service's changes into a batch: each shutdown alone, each replacement as one
 * callback (old task SHUTDOWN + new task in the same slot or node, atomically), each creation
 * alone. A callback refused (CONFLICT: the task changed meanwhile) is counted, not thrown.
 */
export async function writeChanges(
  b: Batch,
  service: Readonly<Service>,
  changes: { create: { slot: number; nodeId?: string }[]; replace: { task: Readonly<Task>; reason: string }[]; shutdown: { task: Readonly<Task>; reason: string }[] },
  now: number,
  newId: () => string,
  out: WriteOutcome,
): Promise<void> {
  const attempt = async (fn: (tx: Tx) => void): Promise<void> => {
    try {
      await b.update(fn);
    } catch {
      out.failed++;
    }
  };
  for (const s of changes.shutdown) await attempt((tx) => shutdownTask(tx, s.task, s.reason, now));
  for (const r of changes.replace)
    await attempt((tx) => {
      // Already stopped by someone else (the rolling updater, a user): the slot is theirs.
      if (!shutdownTask(tx, r.task, r.reason, now)) return;
      tx.create('task', newTask(service, { id: newId(), slot: r.task.slot, nodeId: service.spec?.mode?.$case === 'global' ? r.task.nodeId : undefined, now }));
    });
  for (const c of changes.create) await attempt((tx) => tx.create('task', newTask(service, { id: newId(), slot: c.slot, ...(c.nodeId ? { nodeId: c.nodeId } : {}), now })));
}

/** Tasks an orchestrator writes per tick at most, so watchers (ours too) keep up (see the scheduler's maxPerTick). */
export const DEFAULT_MAX_WRITES_PER_TICK = 2_000;

/**
 * Trims a service's changes to a budget of task writes (a replacement counts 2). Returns how many
 * it used and whether it trimmed: the service must then be reconciled again next tick, which
 * recomputes the rest from the store.
 */
export function capChanges<C extends { replace: unknown[]; shutdown: unknown[]; create: unknown[] }>(c: C, budget: number): { used: number; trimmed: boolean } {
  let left = budget;
  const take = <T>(l: T[], cost: number): T[] => {
    const n = Math.max(0, Math.min(l.length, Math.floor(left / cost)));
    left -= n * cost;
    return l.slice(0, n);
  };
  const before = c.shutdown.length + c.replace.length + c.create.length;
  c.shutdown = take(c.shutdown, 1);
  c.replace = take(c.replace, 2);
  c.create = take(c.create, 1);
  const after = c.shutdown.length + c.replace.length + c.create.length;
  return { used: budget - left, trimmed: after < before };
}

/** Pause before an orchestrator retries a service whose writes were refused. */
export const RETRY_MS = 1_000;

/** One service's changes in a tick of an orchestrator. */
export interface ServiceWork<R> {
  service: Readonly<Service>;
  result: R;
}

type Changes = Parameters<typeof writeChanges>[2];

/**
 * The write budget of a tick: keeps the work that fits (trimming changes with capChanges) and
 * names the services whose changes did not all fit — the orchestrator reconciles them again next
 * tick, which recomputes the rest from the store.
 */
export function applyWriteBudget<R extends { replace: unknown[]; shutdown: unknown[]; create: unknown[] }>(
  work: ServiceWork<R>[],
  maxWrites: number,
): { kept: ServiceWork<R>[]; deferred: string[] } {
  let budget = maxWrites;
  const kept: ServiceWork<R>[] = [];
  const deferred: string[] = [];
  for (const w of work) {
    if (budget <= 1) {
      deferred.push(w.service.id);
      continue;
    }
    const r = capChanges(w.result, budget);
    budget -= r.used;
    if (r.trimmed) deferred.push(w.service.id);
    kept.push(w);
  }
  return { kept, deferred };
}

/**
 * Writes a tick's work in one store batch. Returns false when a write was refused (a task changed
 * meanwhile, or this member is losing leadership): the caller retries those services after
 * RETRY_MS, never in a loop.
 */
export async function writeWork<R>(
  store: { batch(fn: (b: Batch) => Promise<void>): Promise<void> },
  work: ServiceWork<R>[],
  changesOf: (r: R) => Changes,
  now: number,
  newId: () => string,
): Promise<boolean> {
  const outcome: WriteOutcome = { failed: 0 };
  try {
    await store.batch(async (b) => {
      for (const w of work) await writeChanges(b, w.service, changesOf(w.result), now, newId, outcome);
    });
  } catch {
    outcome.failed++;
  }
  return outcome.failed === 0;
}

/**
 * One store batch of independent writes: `stage` calls `attempt` once per write; a write refused
 * (CONFLICT: its object changed since it was planned, or a check in it threw) is counted, not
 * thrown, and the others still go. Returns how many were refused (a batch refused at apply: 1+).
 */
export async function batchOfAttempts(
  store: { batch(fn: (b: Batch) => Promise<void>): Promise<void> },
  stage: (attempt: (fn: (tx: Tx) => void) => Promise<void>) => Promise<void>,
): Promise<number> {
  let failed = 0;
  try {
    await store.batch(async (b) => {
      await stage(async (fn) => {
        try {
          await b.update(fn);
        } catch {
          failed++;
        }
      });
    });
  } catch {
    failed++;
  }
  return failed;
}
