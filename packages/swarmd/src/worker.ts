/**
 * The worker side of a node: the node agent's startWorker (runtime under DIR/runtime, bridge
 * networking, executor, task supervisor, logs published on the agent's session). Stopping it
 * stops the loops; containers keep running and a restarted swarmd re-attaches to them.
 */
import type { Logger } from '@swarmd/common';
import { startWorker, type Agent, type RunningWorker } from '@swarmd/node-agent';

export interface WorkerOptions {
  stateDir: string;
  agent: Agent;
  insecureRegistries: string[];
  hostname?: string;
  logger: Logger;
}

export function startNodeWorker(o: WorkerOptions): Promise<RunningWorker> {
  return startWorker({
    agent: o.agent,
    stateDir: o.stateDir,
    registry: { insecureRegistries: o.insecureRegistries },
    ...(o.hostname ? { hostname: o.hostname } : {}),
    logger: o.logger.child({ component: 'worker' }),
  });
}
