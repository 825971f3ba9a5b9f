import type { ReadTx } from '../store/memory-store.js';
import type { ObjectEvent } from '../store/events.js';

export type NodeEvent = Extract<ObjectEvent, { kind: 'node' }>;

/**
 * Whether a node event may change where tasks run: the node came or went, or its state or
 * availability changed; with `labels`, its labels too; with `all`, also its description or role.
 */
export function nodeChanged(e: NodeEvent, o: { labels?: boolean; all?: boolean } = {}): boolean {
  const old = e.old;
  const n = e.object;
  if (e.type !== 'update' || !old) return true;
  if (old.status?.state !== n.status?.state || old.spec?.availability !== n.spec?.availability) return true;
  if ((o.labels || o.all) && JSON.stringify(old.spec?.annotations?.labels) !== JSON.stringify(n.spec?.annotations?.labels)) return true;
  return !!o.all && (JSON.stringify(old.description) !== JSON.stringify(n.description) || old.role !== n.role);
}

/**
 * The services a controller must look at again: those marked dirty by events, and those with a
 * wake-up time (a restart delay, a rolling update's delay or monitor period, a retry) once it
 * comes. `nextWake()` is the loop's WatchLoop.nextWake.
 */
export class ServiceQueue {
  readonly dirty = new Set<string>();
  private readonly wakeups = new Map<string, number>();
  private readonly nodes = new Set<string>();

  /**
   * A node event: when the node came, went, or changed state or availability (or, with `labels`,
   * its labels), the services with tasks on it are marked dirty at the next markNodeServices.
   */
  onNodeEvent(e: NodeEvent, labels = false): void {
    if (nodeChanged(e, { labels })) this.nodes.add(e.object.id);
  }

  /** Marks dirty the services of the tasks on the nodes onNodeEvent took. */
  markNodeServices(tx: ReadTx): void {
    for (const nodeId of this.nodes) for (const t of tx.find('task', { nodeId })) if (t.serviceId) this.dirty.add(t.serviceId);
    this.nodes.clear();
  }

  /** Sets (or, with undefined, clears) when a service must be looked at again. */
  wakeAt(id: string, at: number | undefined): void {
    if (at === undefined) this.wakeups.delete(id);
    else this.wakeups.set(id, at);
  }

  nextWake(): number | undefined {
    let min: number | undefined;
    for (const at of this.wakeups.values()) if (min === undefined || at < min) min = at;
    return min;
  }

  /** Marks dirty the services whose wake-up time has come. */
  takeDue(now: number): void {
    for (const [id, at] of this.wakeups) {
      if (at <= now) {
        this.wakeups.delete(id);
        this.dirty.add(id);
      }
    }
  }

  /**
   * The services to look at now, sorted, and no longer dirty: those marked, those whose wake-up
   * time has come, and those with tasks on the nodes onNodeEvent took.
   */
  take(tx: ReadTx, now: number): string[] {
    this.takeDue(now);
    this.markNodeServices(tx);
    const ids = [...this.dirty].sort();
    this.dirty.clear();
    return ids;
  }

  /** Services whose writes were refused: again after `delayMs`, never in a loop. */
  retry(ids: Iterable<string>, at: number): void {
    for (const id of ids) {
      this.dirty.add(id);
      this.wakeups.set(id, at);
    }
  }
}
