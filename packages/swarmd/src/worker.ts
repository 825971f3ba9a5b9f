/**
 * The worker side of a node: the node agent's startWorker (runtime under DIR/runtime, bridge
 * networking, executor, task supervisor, log publisher) with its logs sent over a Dispatcher
 * client that follows the agent's current session and certificates. Stopping it stops the
 * loops; containers keep running and a restarted swarmd re-attaches to them.
 */
import type { Logger } from '@swarmd/common';
import { DispatcherClient } from '@swarmd/proto';
import { channelCredentials, dispatcherLogSender, MANAGER_CHANNEL_OPTIONS, startWorker, type Agent, type AgentTls } from '@swarmd/node-agent';

export interface WorkerOptions {
  stateDir: string;
  agent: Agent;
  /** The node's current certificates (they change on renewal). */
  tls: () => AgentTls;
  insecureRegistries: string[];
  hostname?: string;
  logger: Logger;
}

export interface NodeWorker {
  stop(): Promise<void>;
}

export async function startNodeWorker(o: WorkerOptions): Promise<NodeWorker> {
  // One Dispatcher client per (manager, certificate): rebuilt when the session moves or renews.
  let cached: { key: string; client: DispatcherClient } | undefined;
  const current = () => {
    const s = o.agent.session();
    if (!s) return undefined;
    const tls = o.tls();
    const key = `${s.manager}\n${tls.certPem}`;
    if (cached?.key !== key) {
      cached?.client.close();
      cached = { key, client: new DispatcherClient(s.manager, channelCredentials(tls), MANAGER_CHANNEL_OPTIONS) };
    }
    return { client: cached.client, sessionId: s.sessionId };
  };
  const worker = await startWorker({
    agent: o.agent,
    stateDir: o.stateDir,
    publishLogs: dispatcherLogSender(current),
    registry: { insecureRegistries: o.insecureRegistries },
    ...(o.hostname ? { hostname: o.hostname } : {}),
    logger: o.logger.child({ component: 'worker' }),
  });
  return {
    async stop() {
      await worker.stop();
      cached?.client.close();
    },
  };
}
