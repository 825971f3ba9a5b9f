/**
 * `swarmd cleanup`: removes what a node left running after swarmd stopped — every container of
 * its runtime (processes, overlay mounts, cgroups, dirs) and its task networking (task netns,
 * veths, the bridge and its nft table; the overlay networks' bridges, vxlan devices and nft table) — leaving the state dir's certificates and Raft data alone.
 * Containers outlive swarmd on purpose; this is how a host (or `swarmctl local down`) lets go of
 * them. Run it in the node's network namespace, with swarmd stopped.
 */
import { join } from 'node:path';
import { describeError, failedPrecondition } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { certificateFacts } from '@swarmd/manager/manager/tls';
import { loadStateDirCerts } from '@swarmd/manager/manager/node-certs';
import { BridgeNetworking, OverlayNetworking } from '@swarmd/node-agent';
import { ContainerService } from '@swarmd/runtime';

export interface CleanupResult {
  containers: number;
  failed: string[];
}

export async function cleanupNode(stateDir: string, log: Logger): Promise<CleanupResult> {
  const tls = await loadStateDirCerts(stateDir);
  if (!tls) throw failedPrecondition(`${stateDir}/certs holds no certificates: not a swarmd state dir`);
  const { nodeId } = certificateFacts(tls.certPem);
  const containers = new ContainerService({ root: join(stateDir, 'runtime'), logger: log });
  const failed: string[] = [];
  const list = await containers.list();
  for (const c of list) {
    try {
      await containers.remove(c.id, { force: true });
    } catch (err) {
      failed.push(`${c.id}: ${describeError(err)}`);
    }
  }
  await new BridgeNetworking({ nodeId, stateDir, logger: log }).destroy();
  await new OverlayNetworking({ nodeId, stateDir, logger: log }).destroy();
  if (!failed.length) await containers.removeCgroupParent().catch((err: unknown) => failed.push(`cgroup parent: ${describeError(err)}`));
  return { containers: list.length - failed.length, failed };
}
