import type { Task } from '@swarmd/proto';
import { type Filter, nodeCount } from '../filter.js';
import { type NodeInfo, availableResources } from '../node-info.js';

/** The task's reservations fit in what the node offers minus what its tasks reserve. */
export class ResourceFilter implements Filter {
  readonly dynamic = true;
  readonly name = 'resources';
  private cpu = 0;
  private mem = 0;
  setTask(t: Readonly<Task>): boolean {
    const r = t.spec?.resources?.reservations;
    this.cpu = r?.nanoCpus ?? 0;
    this.mem = r?.memoryBytes ?? 0;
    return this.cpu > 0 || this.mem > 0;
  }
  check(n: NodeInfo): boolean {
    const a = availableResources(n);
    return a.nanoCpus >= this.cpu && a.memoryBytes >= this.mem;
  }
  explain(failed: number): string {
    return `insufficient resources on ${nodeCount(failed)}`;
  }
}
