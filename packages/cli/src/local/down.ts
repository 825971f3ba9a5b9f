import { rm, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError } from '@swarmd/common/errors';
import { readContext } from '../client/context.js';
import { cleanupHost } from './swarmd.js';
import { clusterProcesses, terminate } from './processes.js';
import { unmountUnder } from './mounts.js';
import { kernelNames, loadState, localRoot, validateName } from './state.js';
import { linkExists, listNetns, netnsPath, removeUnderlay } from './underlay.js';

export interface DownResult {
  found: boolean;
  processes: number;
  netns: number;
  mounts: number;
}

/**
 * Removes a local cluster: every process (swarmd, registry, anything in its namespaces),
 * mounts under its dir, namespaces, links, the FORWARD rule, the dir, and the context file if it
 * points into the cluster. Works from the state file or, without one, from the names alone;
 * running it again finds nothing and succeeds.
 */
export async function localDown(o: { name: string; env: NodeJS.ProcessEnv; contextPath?: string; progress: (l: string) => void }): Promise<DownResult> {
  const name = validateName(o.name);
  const dir = join(localRoot(o.env), name);
  const names = kernelNames(name);
  const state = await loadState(dir);
  const netns = [...new Set([...(state?.hosts.map((h) => h.netns) ?? []), ...(await listNetns()).filter((n) => n.startsWith(names.netnsPrefix))])];
  const dirExists = await readFile(join(dir, 'cluster.json')).then(
    () => true,
    () => false,
  );
  const bridge = state?.bridge ?? names.bridge;
  const found = dirExists || netns.length > 0 || (await linkExists(bridge));

  // Processes tied to this cluster now (by command line or netns), not the recorded pids alone:
  // after a crash or reboot those may belong to someone else.
  const kill = await clusterProcesses(dir, netns.map(netnsPath));
  if (kill.length) o.progress(`stopping ${kill.length} processes`);
  await terminate(kill);
  // Containers outlive swarmd on purpose: let each host's swarmd remove its own (processes,
  // mounts, cgroups) and its task networking, in the host's namespace, before the host goes.
  const existing = new Set(await listNetns());
  for (const h of state?.hosts ?? []) {
    if (!existing.has(h.netns)) continue;
    try {
      const said = await cleanupHost(h, o.env);
      if (!/removed 0 containers/.test(said)) o.progress(`${h.name}: ${said}`);
    } catch (err) {
      o.progress(`${h.name}: cleanup of its containers failed: ${describeError(err)}`);
    }
  }
  const mounts = await unmountUnder(dir);
  if (mounts) o.progress(`unmounted ${mounts} mounts under ${dir}`);
  await removeUnderlay({ bridge, netns, vethes: state?.hosts.map((h) => h.veth) });
  await rm(dir, { recursive: true, force: true });
  for (const ctx of [state?.contextPath, o.contextPath]) {
    if (!ctx) continue;
    const c = await readContext(ctx, false).catch(() => undefined);
    if (c && c.host.includes(`${dir}/`)) await rm(ctx, { force: true });
  }
  return { found, processes: kill.length, netns: netns.length, mounts };
}
