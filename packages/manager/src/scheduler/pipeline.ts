import type { Task } from '@swarmd/proto';
import type { Filter } from './filter.js';
import type { NodeInfo } from './node-info.js';
import { ReadyFilter, ResourceFilter, ConstraintFilter, PlatformFilter, HostPortFilter, MaxReplicasFilter } from './filters/index.js';

/** The filters in the order they run (cheap and common first, as SwarmKit). */
export function defaultFilters(): Filter[] {
  return [new ReadyFilter(), new ResourceFilter(), new ConstraintFilter(), new PlatformFilter(), new HostPortFilter(), new MaxReplicasFilter()];
}

/**
 * Runs the enabled filters over nodes and remembers, per filter, how many nodes it was the first
 * to reject, so a task that fits nowhere can say why (SwarmKit's Pipeline + Explain).
 */
export class Pipeline {
  private readonly entries: { f: Filter; enabled: boolean; failures: number }[];
  private active: { f: Filter; enabled: boolean; failures: number }[] = [];
  private activeDynamic: Filter[] = [];

  constructor(filters: Filter[] = defaultFilters()) {
    this.entries = filters.map((f) => ({ f, enabled: false, failures: 0 }));
  }

  /** Prepares for one task (or a group of identical tasks) and resets the failure counts. */
  setTask(t: Readonly<Task>): void {
    for (const e of this.entries) {
      e.enabled = e.f.setTask(t);
      e.failures = 0;
    }
    this.active = this.entries.filter((e) => e.enabled);
    this.activeDynamic = this.active.filter((e) => e.f.dynamic).map((e) => e.f);
  }

  /** Whether the node passes every enabled filter; a failure is counted against the first filter that refused. */
  process(n: NodeInfo): boolean {
    for (const e of this.active) {
      if (!e.f.check(n)) {
        e.failures++;
        return false;
      }
    }
    return true;
  }

  /** The name of the first filter refusing the node, without counting it; undefined when it passes. */
  firstFailure(n: NodeInfo): string | undefined {
    for (const e of this.active) if (!e.f.check(n)) return e.f.name;
    return undefined;
  }

  /**
   * For a node that passed process() for this task: whether it still does after placements,
   * checking only the filters whose answer placements can change. Not counted.
   */
  stillFits(n: NodeInfo): boolean {
    for (const f of this.activeDynamic) if (!f.check(n)) return false;
    return true;
  }

  resetCounts(): void {
    for (const e of this.entries) e.failures = 0;
  }

  /** Failure counts per filter name (filters that refused no node are left out). */
  failures(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const e of this.entries) if (e.failures > 0) out[e.f.name] = e.failures;
    return out;
  }

  /**
   * "no suitable node (insufficient resources on 3 nodes; scheduling constraints not satisfied on
   * 2 nodes)": the reasons by how many nodes they refused, most first (ties: filter order).
   */
  explain(): string {
    const parts = this.entries
      .map((e, i) => ({ e, i }))
      .filter(({ e }) => e.failures > 0)
      .sort((a, b) => b.e.failures - a.e.failures || a.i - b.i)
      .map(({ e }) => e.f.explain(e.failures));
    return parts.length === 0 ? 'no suitable node (no nodes in the cluster)' : `no suitable node (${parts.join('; ')})`;
  }
}
