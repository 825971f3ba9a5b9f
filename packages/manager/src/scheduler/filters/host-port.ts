import type { Task } from '@swarmd/proto';
import { type Filter, nodeCount } from '../filter.js';
import { type NodeInfo, hostPortsOf } from '../node-info.js';

/** Host-mode published ports of the task are free on the node. */
export class HostPortFilter implements Filter {
  readonly dynamic = true;
  readonly name = 'host-port';
  private ports: string[] = [];
  setTask(t: Readonly<Task>): boolean {
    this.ports = hostPortsOf(t);
    return this.ports.length > 0;
  }
  check(n: NodeInfo): boolean {
    return this.ports.every((p) => !n.hostPorts.has(p));
  }
  explain(failed: number): string {
    return `host-mode port already in use on ${nodeCount(failed)}`;
  }
}
