import type { Task } from '@swarmd/proto';
import { type Filter, nodeCount } from '../filter.js';
import { type NodeInfo, isNodeSchedulable } from '../node-info.js';

/** The node is READY and its availability ACTIVE (not paused, not drained, not down). */
export class ReadyFilter implements Filter {
  readonly name = 'ready';
  setTask(_t: Readonly<Task>): boolean {
    return true;
  }
  check(n: NodeInfo): boolean {
    return isNodeSchedulable(n.node);
  }
  explain(failed: number): string {
    return `${nodeCount(failed)} not available for new tasks`;
  }
}
