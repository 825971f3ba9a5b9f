import type { Argv } from 'yargs';
import { invalidArgument } from '@swarmd/common/errors';
import { NodeAvailability, NodeRole } from '@swarmd/proto/gen/swarm/types';
import { NodeSpec } from '@swarmd/proto/gen/swarm/specs';
import { type Node } from '@swarmd/proto/gen/swarm/objects';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import type { Control } from '../client/control-client.js';
import { retryOnConflict } from '../client/rpc.js';
import { json, nodeDetails, nodeJson, nodesTable, roleText } from '../format.js';
import { out } from '../io.js';
import { UsageError } from '../errors.js';
import { pickNode, resolveNode } from '../resolve.js';

const AVAILABILITY = { active: NodeAvailability.NODE_AVAILABILITY_ACTIVE, pause: NodeAvailability.NODE_AVAILABILITY_PAUSE, drain: NodeAvailability.NODE_AVAILABILITY_DRAIN };
type AvailabilityName = keyof typeof AVAILABILITY;

/** Checks `node update` flags before anything is sent. */
export function nodeChangeOfArgs(a: { availability?: string; 'label-add': string[]; 'label-rm': string[] }): NodeChange {
  const usage = (m: string) => new UsageError(m, 'node update');
  let labelAdd: Record<string, string>;
  try {
    labelAdd = parseLabelAdds(a['label-add']);
  } catch (e) {
    throw usage((e as Error).message);
  }
  for (const k of a['label-rm']) if (!k || k.includes('=')) throw usage(`--label-rm ${k}: expected a label KEY`);
  if (a.availability === undefined && a['label-add'].length === 0 && a['label-rm'].length === 0) {
    throw usage('node update: nothing to change (give --availability, --label-add or --label-rm)');
  }
  return {
    availability: a.availability === undefined ? undefined : AVAILABILITY[a.availability as AvailabilityName],
    labelAdd,
    labelRm: a['label-rm'],
  };
}

/** `--label-add k=v` (repeatable): each must be KEY=VALUE with a non-empty key. */
export function parseLabelAdds(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf('=');
    const k = i < 0 ? v : v.slice(0, i);
    if (!k.trim() || i < 0) throw invalidArgument(`--label-add ${v}: expected KEY=VALUE`);
    out[k] = v.slice(i + 1);
  }
  return out;
}

export interface NodeChange {
  availability?: NodeAvailability;
  labelAdd?: Record<string, string>;
  labelRm?: readonly string[];
  desiredRole?: NodeRole;
}

/** The new spec of a node after a change (pure). */
export function applyNodeChange(n: Node, ch: NodeChange): NodeSpec {
  const spec = NodeSpec.fromPartial({
    annotations: n.spec?.annotations ?? {},
    desiredRole: n.spec?.desiredRole ?? n.role,
    availability: n.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE,
  });
  if (ch.availability !== undefined) spec.availability = ch.availability;
  for (const k of ch.labelRm ?? []) delete spec.annotations!.labels[k];
  Object.assign(spec.annotations!.labels, ch.labelAdd ?? {});
  if (ch.desiredRole !== undefined) spec.desiredRole = ch.desiredRole;
  return spec;
}

/** Read, change, write; a write that raced another (ABORTED) is retried on fresh data. */
async function updateNode(c: Control, ref: string, ch: NodeChange): Promise<Node> {
  return retryOnConflict(async () => {
    const n = await resolveNode(c, ref);
    return c.updateNode(n.id, n.meta?.version ?? 0, applyNodeChange(n, ch));
  });
}

export function nodeCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      'ls',
      'List nodes (* marks the node behind --host)',
      (yy) => yy.option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only ids' }),
      env.action(async (a: GlobalArgs & { quiet: boolean }) => {
        await env.withControl(a, async (c) => {
          const nodes = await c.listNodes();
          if (a.format === 'json') out(io, json(nodes.map(nodeJson)));
          else if (a.quiet) for (const n of nodes) out(io, n.id);
          else out(io, nodesTable(nodes, c.answeredBy().selfNodeId));
        });
      }),
    )
    .command(
      'inspect <nodes..>',
      'Show nodes in detail (by id, unique id prefix or hostname)',
      (yy) => yy.positional('nodes', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { nodes: string[] }) => {
        await env.withControl(a, async (c) => {
          const all = await c.listNodes();
          const found: Node[] = [];
          for (const ref of a.nodes) found.push(await c.getNode(pickNode(all, ref).id));
          if (a.format === 'json') out(io, json(found.map(nodeJson)));
          else out(io, found.map((n) => nodeDetails(n, c.answeredBy().selfNodeId)).join('\n\n'));
        });
      }),
    )
    .command(
      'update <node>',
      'Change a node: availability, labels',
      (yy) =>
        yy
          .positional('node', { type: 'string', demandOption: true })
          .option('availability', { type: 'string', choices: Object.keys(AVAILABILITY), describe: 'active | pause | drain' })
          .option('label-add', { type: 'string', array: true, nargs: 1, default: [] as string[], describe: 'Add or change a label (KEY=VALUE), repeatable' })
          .option('label-rm', { type: 'string', array: true, nargs: 1, default: [] as string[], describe: 'Remove a label (KEY), repeatable' }),
      env.action(async (a: GlobalArgs & { node: string; availability?: string; 'label-add': string[]; 'label-rm': string[] }) => {
        const change = nodeChangeOfArgs(a);
        await env.withControl(a, async (c) => {
          const n = await updateNode(c, a.node, change);
          out(io, a.format === 'json' ? json(nodeJson(n)) : n.id);
        });
      }),
    )
    .command(
      'promote <nodes..>',
      'Make workers managers',
      (yy) => yy.positional('nodes', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { nodes: string[] }) => roleChange(env, a, NodeRole.NODE_ROLE_MANAGER)),
    )
    .command(
      'demote <nodes..>',
      'Make managers workers',
      (yy) => yy.positional('nodes', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { nodes: string[] }) => roleChange(env, a, NodeRole.NODE_ROLE_WORKER)),
    )
    .command(
      ['rm <nodes..>', 'remove'],
      'Remove nodes from the cluster (a node still up needs --force)',
      (yy) =>
        yy
          .positional('nodes', { type: 'string', array: true, demandOption: true })
          .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Remove even if the node is up (its certificate is refused from now on)' }),
      env.action(async (a: GlobalArgs & { nodes: string[]; force: boolean }) => {
        await env.withControl(a, async (c) => {
          for (const ref of a.nodes) {
            const n = await resolveNode(c, ref);
            await c.removeNode(n.id, a.force);
            out(io, a.format === 'json' ? json({ removed: n.id }) : n.id);
          }
        });
      }),
    );
}

async function roleChange(env: CommandEnv, a: GlobalArgs & { nodes: string[] }, role: NodeRole): Promise<void> {
  await env.withControl(a, async (c) => {
    const done: string[] = [];
    for (const ref of a.nodes) {
      const n = await updateNode(c, ref, { desiredRole: role });
      done.push(n.id);
      if (a.format !== 'json') out(env.io, `Node ${n.id} ${role === NodeRole.NODE_ROLE_MANAGER ? 'promoted to' : 'demoted to'} a ${roleText(role)} in the cluster.`);
    }
    if (a.format === 'json') out(env.io, json(done.map((id) => ({ id, desiredRole: roleText(role) }))));
  });
}
