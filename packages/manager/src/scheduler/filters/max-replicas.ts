import type { Task } from '@swarmd/proto';
import { type Filter, nodeCount } from '../filter.js';
import type { NodeInfo } from '../node-info.js';

/** placement.max_replicas: at most that many active tasks of the service per node. */
export class MaxReplicasFilter implements Filter {
  readonly dynamic = true;
  readonly name = 'max-replicas';
  private max = 0;
  private serviceId = '';
  setTask(t: Readonly<Task>): boolean {
    this.max = t.spec?.placement?.maxReplicas ?? 0;
    this.serviceId = t.serviceId;
    return this.max > 0;
  }
  check(n: NodeInfo): boolean {
    return (n.byService.get(this.serviceId) ?? 0) < this.max;
  }
  explain(failed: number): string {
    return `max replicas per node limit exceeded on ${nodeCount(failed)}`;
  }
}
