/**
 * `swarmctl volume ls`: named volumes across the nodes, as `docker volume ls` shows them on each
 * node of a Swarm (agents report their volumes; Control.ListVolumes gathers them).
 */
import type { Argv } from 'yargs';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { json, table } from '../format.js';
import { out } from '../io.js';
import { UsageError } from '../errors.js';

/** `--filter name=X`, `--filter node=ID|HOSTNAME` (repeatable), checked. */
export function parseVolumeFilters(list: readonly string[]): { names: string[]; nodes: string[] } {
  const names: string[] = [];
  const nodes: string[] = [];
  for (const f of list) {
    const m = /^(name|node)=(.+)$/.exec(f);
    if (!m) throw new UsageError(`--filter ${f}: expected name=VOLUME or node=NODE`, 'volume ls');
    (m[1] === 'name' ? names : nodes).push(m[2]);
  }
  return { names, nodes };
}

export function volumeCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y.command(
    ['ls', 'list'],
    'List named volumes on every node',
    (yy) =>
      yy
        .option('filter', { alias: 'f', type: 'string', array: true, default: [] as string[], describe: 'name=VOLUME or node=NODE (id or hostname), repeatable' })
        .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only the names' }),
    env.action(async (a: GlobalArgs & { filter: string[]; quiet: boolean }) => {
      const f = parseVolumeFilters(a.filter);
      await env.withControl(a, async (c) => {
        let vols = await c.listVolumes({ names: f.names });
        if (f.nodes.length) vols = vols.filter((v) => f.nodes.some((n) => n === v.nodeId || n === v.hostname));
        if (a.format === 'json') out(io, json(vols.map((v) => ({ node: v.hostname, nodeId: v.nodeId, name: v.name, driver: v.driver }))));
        else if (a.quiet) out(io, [...new Set(vols.map((v) => v.name))].join('\n'));
        else out(io, table(['NODE', 'DRIVER', 'VOLUME NAME'], vols.map((v) => [v.hostname || v.nodeId.slice(0, 12), v.driver, v.name])));
      });
    }),
  );
}
