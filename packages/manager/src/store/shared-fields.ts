import type { Task } from '@swarmd/proto';
import { deepFreeze } from './kinds.js';

/**
 * The fields a task copies from its service (the task spec, the service's annotations, its
 * endpoint): equal in every task of a service version, and most of a task's size. Each entry
 * decodes its own copy of them; the store keeps one frozen copy per service and value instead,
 * so 20,000 tasks of one service hold one spec, not 20,000.
 */
const SHARED = ['spec', 'serviceAnnotations', 'endpoint'] as const;
type SharedField = (typeof SHARED)[number];

/** Distinct values kept per service and field: a rolling update has two specs live at once, a rollback three. */
const KEPT = 3;

export class SharedTaskFields {
  private readonly byService = new Map<string, Map<SharedField, unknown[]>>();

  /**
   * Points the fields of `task` (decoded, not yet frozen, the store's alone) at the copies its
   * service's tasks already share when equal; a new value becomes the shared one. Returns the task.
   */
  share(task: Task): Task {
    if (!task.serviceId) return task;
    let fields = this.byService.get(task.serviceId);
    if (!fields) {
      fields = new Map();
      this.byService.set(task.serviceId, fields);
    }
    const t = task as unknown as Record<SharedField, unknown>;
    for (const f of SHARED) {
      const v = t[f];
      if (v === undefined || v === null) continue;
      let kept = fields.get(f);
      if (!kept) {
        kept = [];
        fields.set(f, kept);
      }
      const i = kept.findIndex((k) => sameValue(k, v));
      if (i >= 0) {
        t[f] = kept[i];
        if (i > 0) kept.unshift(...kept.splice(i, 1));
      } else {
        kept.unshift(deepFreeze(v));
        if (kept.length > KEPT) kept.length = KEPT;
      }
    }
    return task;
  }

  /** The service is gone: its tasks keep what they point at; no new task will share it. */
  forget(serviceId: string): void {
    this.byService.delete(serviceId);
  }

  clear(): void {
    this.byService.clear();
  }
}

/** Structural equality of decoded messages: plain objects, arrays, bytes, dates and primitives. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (a instanceof Date) return a.getTime() === (b as Date).getTime();
  if (ArrayBuffer.isView(a)) {
    const x = a as Uint8Array;
    const y = b as Uint8Array;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (Array.isArray(a)) {
    const y = b as unknown[];
    if (a.length !== y.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameValue(a[i], y[i])) return false;
    return true;
  }
  // Decoded messages are plain objects of own enumerable fields: for-in walks them without
  // allocating key arrays (this runs for every task applied).
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    n++;
    if (!(k in y) || !sameValue(x[k], y[k])) return false;
  }
  for (const _ in y) n--;
  return n === 0;
}
