/**
 * The composition of the task side of a node agent: the runtime under DIR/runtime, per-host
 * bridge networking, the container executor, the log publisher and the task supervisor, wired
 * to an agent (startAgent's Agent: its Worker and reportTaskStatus).
 *
 *     const agent = await startAgent({...});
 *     const tasks = await startWorker({ agent, stateDir, publishLogs });
 *     …
 *     await tasks.stop();   // containers keep running; the next start re-attaches
 */
import { join } from 'node:path';
import type { LogRecord, TaskStatus } from '@swarmd/proto';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import type { RegistryClientOptions } from '@swarmd/registry';
import { ContainerService, ImageService } from '@swarmd/runtime';
import type { Clock } from '@swarmd/common/clock';
import { ContainerExecutor } from '../executor/container-executor.js';
import { TaskFiles, type TaskDataSource } from '../secrets/task-files.js';
import { BridgeNetworking } from '../networking/bridge-network.js';
import { OverlayNetworking, type OverlayNetworkingOptions } from '../networking/overlay/overlay-networking.js';
import { HostNetworking } from '../networking/task-networking.js';
import type { NetworkStateSource } from '../assignments/worker.js';
import type { NetworkStateSet } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import { LogPublisher } from '../logs/log-publisher.js';
import { startTaskSupervisor, type AssignmentSource, type TaskSupervisor } from './task-supervisor.js';

export interface StartWorkerOptions {
  agent: {
    nodeId: string;
    worker: AssignmentSource & Partial<NetworkStateSource> & Partial<TaskDataSource>;
    reportTaskStatus(taskId: string, status: TaskStatus): void;
    publishLogs?(records: LogRecord[]): Promise<void>;
    /** Acknowledges a programmed network state (Dispatcher.NetworkStateApplied). */
    networkStateApplied?(version: string): void;
    /** Waits until every node holds the network state last received (Dispatcher.WaitNetworkSync). */
    waitNetworkSync?(timeoutMs: number): Promise<{ synced: boolean; lagging: string[] }>;
    /** Where the node's named volumes come from (reported with heartbeats: `swarmctl volume ls`). */
    reportVolumes?(list: () => Promise<{ name: string; driver: string }[]>): void;
  };
  /** The node's state dir: runtime/ and networking/ go under it. */
  stateDir: string;
  /** Sends task log lines to the managers; default: the agent's publishLogs (Dispatcher.PublishLogs). `false`: logs stay local. */
  publishLogs?: ((records: LogRecord[]) => Promise<void>) | false;
  /**
   * Per-host bridge subnet (default 172.31.X.0/24 from the node id) and the overlay networks'
   * settings (this node's underlay address: the vxlan's local end; the resolver's upstreams);
   * `false`: no networking (a new empty netns per task).
   */
  network?: { subnet?: string; overlay?: Pick<OverlayNetworkingOptions, 'underlayAddr' | 'dns'> } | false;
  registry?: RegistryClientOptions;
  hostname?: string;
  clock?: Clock;
  logger?: Logger;
}

export interface RunningWorker {
  executor: ContainerExecutor;
  images: ImageService;
  containers: ContainerService;
  networking: BridgeNetworking | undefined;
  overlay: OverlayNetworking | undefined;
  supervisor: TaskSupervisor;
  stop(): Promise<void>;
}

export async function startWorker(o: StartWorkerOptions): Promise<RunningWorker> {
  const logger = o.logger ?? nullLogger;
  const root = join(o.stateDir, 'runtime');
  const containers = new ContainerService({ root, logger: logger.child({ component: 'agent/runtime' }) });
  const images = await new ImageService({ root, ...(o.registry ? { registry: o.registry } : {}), layerDirsInUse: () => containers.layerDirsInUse() }).init();
  const networking =
    o.network === false
      ? undefined
      : new BridgeNetworking({ nodeId: o.agent.nodeId, stateDir: o.stateDir, ...(o.network?.subnet ? { subnet: o.network.subnet } : {}), logger: logger.child({ component: 'agent/network' }) });
  const overlay =
    o.network === false
      ? undefined
      : new OverlayNetworking({ nodeId: o.agent.nodeId, stateDir: o.stateDir, ...o.network?.overlay, logger: logger.child({ component: 'agent/overlay' }) });
  // The pushed network state reaches the overlay before the tasks that need it (Worker emits it
  // first); once programmed it is acknowledged, so that a task leaving its endpoints elsewhere
  // stops only when this host sends it nothing new.
  const ack = (version: string) => o.agent.networkStateApplied?.(version);
  const onNetworks = (s: NetworkStateSet, version: string) => {
    if (!overlay) return ack(version);
    overlay.setState(s).then(
      () => ack(version),
      (err: unknown) => logger.warn('overlay state not applied', { err: describeError(err) }),
    );
  };
  o.agent.worker.on?.('networks', onNetworks);
  if (overlay) {
    await overlay.setState(o.agent.worker.networkState?.() ?? { networks: [] });
    await overlay.start();
  }
  ack(o.agent.worker.networkStateVersion?.() ?? '');
  const executor = new ContainerExecutor({
    images,
    containers,
    nodeId: o.agent.nodeId,
    ...(networking || overlay ? { networking: new HostNetworking(networking, overlay) } : {}),
    ...(o.hostname ? { hostname: o.hostname } : {}),
    ...(o.clock ? { clock: o.clock } : {}),
    ...(o.agent.waitNetworkSync ? { networkSync: (ms: number) => o.agent.waitNetworkSync!(ms) } : {}),
    logger: logger.child({ component: 'agent/executor' }),
    taskFiles: new TaskFiles({
      stateDir: o.stateDir,
      source: { secret: (id) => o.agent.worker.secret?.(id), config: (id) => o.agent.worker.config?.(id) },
      logger: logger.child({ component: 'agent/secrets' }),
    }),
  });
  const send = o.publishLogs === false ? undefined : (o.publishLogs ?? (o.agent.publishLogs ? (r: LogRecord[]) => o.agent.publishLogs!(r) : undefined));
  const logs = send ? new LogPublisher({ containers, send, ...(o.clock ? { clock: o.clock } : {}), logger }) : undefined;
  const supervisor = await startTaskSupervisor({
    executor,
    assignments: o.agent.worker,
    report: (id, s) => o.agent.reportTaskStatus(id, s),
    ...(logs ? { logs } : {}),
    ...(o.clock ? { clock: o.clock } : {}),
    logger: logger.child({ component: 'agent/tasks' }),
  });
  o.agent.reportVolumes?.(() => containers.volumes.list());
  return {
    executor,
    images,
    containers,
    networking,
    overlay,
    supervisor,
    stop: async () => {
      o.agent.worker.off?.('networks', onNetworks);
      await supervisor.stop();
      await overlay?.stop();
      await logs?.stop();
      images.close();
    },
  };
}
