import type { Argv } from 'yargs';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { defaultContextPath } from '../client/context.js';
import { json, nodesTable, table } from '../format.js';
import { err, out } from '../io.js';
import { localUp } from '../local/up.js';
import { localDown } from '../local/down.js';
import { localLs } from '../local/ls.js';
import { localAdd, localStart, localStop } from '../local/hosts.js';
import { loadState, localRoot } from '../local/state.js';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { nodeJson } from '../format.js';

export function localCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  // Progress goes to stderr with --format json, so stdout stays one JSON document.
  const progress = (a: GlobalArgs) => (line: string) => (a.format === 'json' ? err(io, line) : out(io, line));
  return y
    .command(
      'up',
      'Start a local cluster: network-namespace hosts on a bridge, one swarmd each, a registry',
      (yy) =>
        yy
          .option('managers', { type: 'number', default: 3, describe: 'Manager hosts' })
          .option('workers', { type: 'number', default: 2, describe: 'Worker hosts' })
          .option('subnet', { type: 'string', default: '10.250.0.0/24', describe: 'Underlay subnet (gateway = .1, hosts from .2)' })
          .option('name', { type: 'string', default: 'default', describe: 'Cluster name' })
          .option('timeout', { type: 'number', default: 180, describe: 'Seconds to wait for every node to be READY' })
          .option('store', { type: 'string', choices: ['raft', 'etcd'], default: 'raft', describe: 'Where the cluster store lives: the built-in raft, or an external etcd' })
          .option('etcd-endpoints', { type: 'string', describe: "--store etcd: etcd's client URLs, comma-separated, reachable from the hosts (e.g. on the gateway address)" }),
      env.action(async (a: GlobalArgs & { managers: number; workers: number; subnet: string; name: string; timeout: number; store: string; 'etcd-endpoints'?: string }) => {
        if (a['etcd-endpoints'] !== undefined && a.store !== 'etcd') throw new UsageError('--etcd-endpoints: only with --store etcd', 'local up');
        if (a.store === 'etcd' && !a['etcd-endpoints']) throw new UsageError('--store etcd: --etcd-endpoints is required (comma-separated etcd client URLs)', 'local up');
        if (!Number.isInteger(a.managers) || a.managers < 1) throw new UsageError(`--managers ${a.managers}: expected a whole number ≥ 1`, 'local up');
        if (!Number.isInteger(a.workers) || a.workers < 0) throw new UsageError(`--workers ${a.workers}: expected a whole number ≥ 0`, 'local up');
        const contextPath = a.context ?? defaultContextPath(io.env);
        const r = await localUp({
          name: a.name,
          managers: a.managers,
          workers: a.workers,
          subnet: a.subnet,
          contextPath,
          env: io.env,
          timeoutMs: a.timeout * 1000,
          progress: progress(a),
          store: a.store === 'etcd' ? { kind: 'etcd', endpoints: a['etcd-endpoints']!.split(',').map((e) => e.trim()) } : { kind: 'raft' },
        }).catch(async (e: unknown) => {
          // Whatever was made stays for inspection; say how to remove it.
          const dir = join(localRoot(io.env), a.name);
          if (e instanceof Error && !e.message.includes('local down') && (await loadState(dir))) {
            e.message += ` (logs in ${dir}/*.log; remove with: swarmctl local down --name ${a.name})`;
          }
          throw e;
        });
        if (a.format === 'json') {
          out(io, json({ name: r.state.name, context: contextPath, registry: r.state.registry?.addr, nodes: r.nodes.map(nodeJson) }));
        } else {
          out(io, `\nlocal cluster ${r.state.name} is up; context ${contextPath}; registry ${r.state.registry?.addr ?? '-'}\n`);
          out(io, nodesTable(r.nodes, r.selfNodeId));
        }
      }),
    )
    .command(
      'add',
      'Add hosts to a running local cluster (they join with its tokens)',
      (yy) =>
        yy
          .option('managers', { type: 'number', default: 0, describe: 'Manager hosts to add' })
          .option('workers', { type: 'number', default: 0, describe: 'Worker hosts to add' })
          .option('name', { type: 'string', default: 'default', describe: 'Cluster name' })
          .option('timeout', { type: 'number', default: 120, describe: 'Seconds to wait for the new nodes to be READY' }),
      env.action(async (a: GlobalArgs & { managers: number; workers: number; name: string; timeout: number }) => {
        for (const f of ['managers', 'workers'] as const) {
          if (!Number.isInteger(a[f]) || a[f] < 0) throw new UsageError(`--${f} ${a[f]}: expected a whole number ≥ 0`, 'local add');
        }
        if (a.managers + a.workers === 0) throw new UsageError('give --workers N or --managers N (at least one host to add)', 'local add');
        const r = await localAdd({ name: a.name, managers: a.managers, workers: a.workers, env: io.env, timeoutMs: a.timeout * 1000, progress: progress(a) });
        const mine = new Set(r.added.map((h) => h.hostname));
        const added = r.nodes.filter((n) => mine.has(n.description?.hostname ?? ''));
        if (a.format === 'json') out(io, json(added.map(nodeJson)));
        else out(io, nodesTable(added));
      }),
    )
    .command(
      'stop <host>',
      "Stop a host's swarmd (its containers keep running); --kill: the host dies as on a power loss",
      (yy) =>
        yy
          .positional('host', { type: 'string', demandOption: true, describe: 'Host (m1, w2, ... or its hostname)' })
          .option('kill', { type: 'boolean', default: false, describe: 'SIGKILL swarmd and remove every container of the host' })
          .option('name', { type: 'string', default: 'default', describe: 'Cluster name' }),
      env.action(async (a: GlobalArgs & { host: string; kill: boolean; name: string }) => {
        const r = await localStop({ name: a.name, host: a.host, kill: a.kill, env: io.env });
        if (a.format === 'json') out(io, json({ host: r.host.name, hostname: r.host.hostname, killed: a.kill, processes: r.processes }));
        else out(io, `${r.host.name} (${r.host.hostname}) ${a.kill ? 'killed' : 'stopped'}${r.processes ? '' : ' (swarmd was not running)'}`);
      }),
    )
    .command(
      'start <host>',
      "Start a stopped host's swarmd again; it resumes from its state and rejoins",
      (yy) =>
        yy
          .positional('host', { type: 'string', demandOption: true, describe: 'Host (m1, w2, ... or its hostname)' })
          .option('name', { type: 'string', default: 'default', describe: 'Cluster name' })
          .option('timeout', { type: 'number', default: 120, describe: 'Seconds to wait for the node to be READY' }),
      env.action(async (a: GlobalArgs & { host: string; name: string; timeout: number }) => {
        const r = await localStart({ name: a.name, host: a.host, env: io.env, timeoutMs: a.timeout * 1000, progress: progress(a) });
        const n = r.nodes.find((x) => x.description?.hostname === r.host.hostname);
        if (a.format === 'json') out(io, json(n ? nodeJson(n) : { hostname: r.host.hostname }));
        else out(io, `${r.host.name} (${r.host.hostname}) is READY again`);
      }),
    )
    .command(
      'down',
      'Remove a local cluster: processes, namespaces, links, mounts, dirs (safe to repeat)',
      (yy) => yy.option('name', { type: 'string', default: 'default', describe: 'Cluster name' }),
      env.action(async (a: GlobalArgs & { name: string }) => {
        const r = await localDown({ name: a.name, env: io.env, contextPath: a.context ?? defaultContextPath(io.env), progress: progress(a) });
        if (a.format === 'json') out(io, json({ name: a.name, ...r }));
        else out(io, r.found ? `local cluster ${a.name} removed` : `no local cluster ${a.name} (nothing to do)`);
      }),
    )
    .command(
      'ls',
      'List local clusters',
      (yy) => yy,
      env.action(async (a: GlobalArgs) => {
        const all = await localLs(io.env);
        if (a.format === 'json') return out(io, json(all));
        if (all.length === 0) return out(io, 'no local clusters');
        const rows: string[][] = [];
        for (const c of all) {
          for (const h of c.hosts) rows.push([c.name, h.name, h.hostname, h.role, h.addr, String(h.pid ?? '-'), h.alive ? 'running' : 'stopped']);
          if (c.registry) rows.push([c.name, 'registry', '', '', c.registry.addr, String(c.registry.pid ?? '-'), c.registry.alive ? 'running' : 'stopped']);
        }
        out(io, table(['CLUSTER', 'HOST', 'HOSTNAME', 'ROLE', 'ADDRESS', 'PID', 'PROCESS'], rows));
      }),
    );
}
