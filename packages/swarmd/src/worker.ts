/**
 * The worker side of a node: the node agent's startWorker (runtime under DIR/runtime, bridge and
 * overlay networking, executor, task supervisor, logs published on the agent's session). Stopping it
 * stops the loops; containers keep running and a restarted swarmd re-attaches to them.
 */
import type { Logger } from '@swarmd/common/logger';
import { startWorker, type Agent, type RunningWorker } from '@swarmd/node-agent';

export interface WorkerOptions {
  stateDir: string;
  agent: Agent;
  insecureRegistries: string[];
  /** IP:PORT other nodes reach this one at: its IP is the overlay networks' VXLAN endpoint. */
  advertiseAddr?: string;
  hostname?: string;
  logger: Logger;
}

export function startNodeWorker(o: WorkerOptions): Promise<RunningWorker> {
  return startWorker({
    agent: o.agent,
    stateDir: o.stateDir,
    registry: { insecureRegistries: o.insecureRegistries },
    ...(underlayIp(o.advertiseAddr) ? { network: { overlay: { underlayAddr: underlayIp(o.advertiseAddr)! } } } : {}),
    ...(o.hostname ? { hostname: o.hostname } : {}),
    logger: o.logger.child({ component: 'worker' }),
  });
}

/** The IPv4 of an IP:PORT advertise address (undefined for a name or IPv6). */
export function underlayIp(advertiseAddr: string | undefined): string | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?::\d+)?$/.exec(advertiseAddr ?? '');
  return m?.[1];
}
