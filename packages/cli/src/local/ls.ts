import { isAlive } from './processes.js';
import { listStates, localRoot, type LocalClusterState } from './state.js';

export interface LocalClusterView extends LocalClusterState {
  hosts: (LocalClusterState['hosts'][number] & { alive: boolean })[];
  registry?: LocalClusterState['registry'] & { alive: boolean };
}

export async function localLs(env: NodeJS.ProcessEnv): Promise<LocalClusterView[]> {
  return (await listStates(localRoot(env))).map((s) => ({
    ...s,
    hosts: s.hosts.map((h) => ({ ...h, alive: isAlive(h.pid) })),
    registry: s.registry ? { ...s.registry, alive: isAlive(s.registry.pid) } : undefined,
  }));
}
