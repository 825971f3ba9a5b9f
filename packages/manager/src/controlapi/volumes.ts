/**
 * Named volumes across nodes (`swarmctl volume ls`, as `docker volume ls` on each node of a
 * Swarm): read from each node's description, where its agent reports them with heartbeats
 * (Dispatcher.Heartbeat, volumes_set). Volumes are per node: the same name on two nodes is two
 * volumes.
 */
import type { ListVolumesRequest, VolumeOnNode } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';

export function createVolumesImpl(deps: { store: Store }) {
  async function listVolumes(req: ListVolumesRequest): Promise<{ volumes: VolumeOnNode[] }> {
    const names = new Set(req.filters?.names ?? []);
    const nodeIds = new Set(req.filters?.nodeIds ?? []);
    const out: VolumeOnNode[] = [];
    for (const n of deps.store.view((tx) => tx.find('node'))) {
      if (nodeIds.size && !nodeIds.has(n.id)) continue;
      for (const v of n.description?.volumes ?? []) {
        if (names.size && !names.has(v.name)) continue;
        out.push({ nodeId: n.id, hostname: n.description?.hostname ?? '', name: v.name, driver: v.driver || 'local' });
      }
    }
    out.sort((a, b) => a.name.localeCompare(b.name) || a.hostname.localeCompare(b.hostname) || a.nodeId.localeCompare(b.nodeId));
    return { volumes: out };
  }
  return { listVolumes };
}
