/**
 * A host's task networking: tasks attached to overlay networks (an allocated address on one)
 * go to the overlay layer, every other task to the per-host bridge (bridge, host and none modes).
 * The bridge layer owns every port published in mode=host (one DNAT table, one conflict check):
 * an overlay task's ports are claimed there before its links are made, DNATed to its overlay
 * address once they are, and released when it is detached.
 */
import type { Task } from '@swarmd/proto';
import type { AttachOptions, TaskNetwork, TaskNetworking } from '../executor/container-executor.js';
import { PermanentError } from '../executor/executor.js';
import { hostPorts, type BridgeNetworking } from './bridge-network.js';
import type { OverlayNetworking } from './overlay/overlay-networking.js';

export class HostNetworking implements TaskNetworking {
  constructor(
    readonly bridge: BridgeNetworking | undefined,
    readonly overlay: OverlayNetworking | undefined,
  ) {}

  attach(task: Task, o: AttachOptions = {}): Promise<TaskNetwork> {
    if (this.overlay?.handles(task)) return this.attachOverlay(this.overlay, task, o);
    if (this.bridge) return this.bridge.attach(task, o);
    return Promise.resolve({ ports: [], addresses: [] });
  }

  private async attachOverlay(overlay: OverlayNetworking, task: Task, o: AttachOptions): Promise<TaskNetwork> {
    const ports = hostPorts(task);
    if (!ports.length) return overlay.attach(task, o);
    if (!this.bridge) throw new PermanentError('ports published in mode=host need the host networking layer, disabled on this node');
    await this.bridge.claimPorts(task.id, overlay.hostPortTarget(task), ports);
    const net = await overlay.attach(task, o);
    return { ...net, ports: await this.bridge.publishPorts(task.id) };
  }

  async detach(taskId: string): Promise<void> {
    if (await this.overlay?.detach(taskId)) return this.bridge?.releasePorts(taskId);
    await this.bridge?.detach(taskId);
  }
}
