/**
 * A host's task networking: tasks attached to overlay networks (an allocated address on one)
 * go to the overlay layer, every other task to the per-host bridge (bridge, host and none modes,
 * ports published in mode=host) exactly as before.
 */
import type { Task } from '@swarmd/proto';
import type { TaskNetwork, TaskNetworking } from '../executor/container-executor.js';
import type { BridgeNetworking } from './bridge-network.js';
import type { OverlayNetworking } from './overlay/overlay-networking.js';

export class HostNetworking implements TaskNetworking {
  constructor(
    readonly bridge: BridgeNetworking | undefined,
    readonly overlay: OverlayNetworking | undefined,
  ) {}

  attach(task: Task): Promise<TaskNetwork> {
    if (this.overlay?.handles(task)) return this.overlay.attach(task);
    if (this.bridge) return this.bridge.attach(task);
    return Promise.resolve({ ports: [], addresses: [] });
  }

  async detach(taskId: string): Promise<void> {
    if (await this.overlay?.detach(taskId)) return;
    await this.bridge?.detach(taskId);
  }
}
