import type { Task } from '@swarmd/proto';
import type { NodeInfo } from './node-info.js';

/**
 * One reason a node cannot take a task (SwarmKit's Filter). `setTask` says whether the filter
 * applies to this task at all; `check` runs per node; `explain` words the failure for N nodes.
 */
export interface Filter {
  readonly name: string;
  /** The answer can change as tasks are placed (resources, ports, per-node counts). */
  readonly dynamic?: boolean;
  setTask(t: Readonly<Task>): boolean;
  check(n: NodeInfo): boolean;
  explain(failedNodes: number): string;
}

export function nodeCount(n: number): string {
  return n === 1 ? '1 node' : `${n} nodes`;
}
