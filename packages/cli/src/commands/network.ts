/** `swarmctl network create|ls|inspect|rm`, with docker network's flag names. */
import type { Argv } from 'yargs';
import { NetworkSpec } from '@swarmd/proto/gen/swarm/specs';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { json } from '../format.js';
import { out } from '../io.js';
import { UsageError } from '../errors.js';
import { networkDetails, networkJson, networksTable } from '../network-format.js';
import { parseLabelAdds } from './node.js';

export interface NetworkCreateFlags {
  driver?: string;
  subnet?: string[];
  gateway?: string[];
  attachable?: boolean;
  internal?: boolean;
  label?: string[];
}

/** The spec of `network create [flags] NAME` (checked further by the manager). */
export function networkSpecOfFlags(name: string, f: NetworkCreateFlags): NetworkSpec {
  const bad = (m: string) => new UsageError(m, 'network create');
  const driver = f.driver ?? 'overlay';
  if (driver !== 'overlay') throw bad(`--driver ${driver}: only overlay networks are supported`);
  const subnets = f.subnet ?? [];
  const gateways = f.gateway ?? [];
  if (subnets.length > 1) throw bad('--subnet: one subnet per network');
  if (gateways.length > 1) throw bad('--gateway: one gateway per network');
  if (gateways.length && !subnets.length) throw bad('--gateway needs a --subnet');
  let labels: Record<string, string>;
  try {
    labels = parseLabelAdds(f.label ?? []);
  } catch (e) {
    throw bad((e as Error).message.replace('--label-add', '--label'));
  }
  return NetworkSpec.fromPartial({
    annotations: { name, labels },
    driver,
    ipam: subnets.length ? [{ subnet: subnets[0], gateway: gateways[0] ?? '' }] : [],
    attachable: !!f.attachable,
    internal: !!f.internal,
  });
}

export function networkCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      'create <name>',
      'Create an overlay network',
      (yy) =>
        yy
          .positional('name', { type: 'string', demandOption: true })
          .option('driver', { alias: 'd', type: 'string', describe: 'overlay (the default and only driver)' })
          .option('subnet', { type: 'string', array: true, nargs: 1, describe: 'CIDR (default: the next free one of the cluster address pool)' })
          .option('gateway', { type: 'string', array: true, nargs: 1, describe: 'gateway address (default: the subnet first address)' })
          .option('attachable', { type: 'boolean', describe: 'allow manual container attachment' })
          .option('internal', { type: 'boolean', describe: 'no route out of the network' })
          .option('label', { type: 'string', array: true, nargs: 1, describe: 'KEY=VALUE (repeatable)' }),
      env.action(async (a: GlobalArgs & NetworkCreateFlags & { name: string }) => {
        const spec = networkSpecOfFlags(a.name, a);
        const n = await env.withControl(a, (c) => c.createNetwork(spec));
        if (a.format === 'json') out(io, json(networkJson(n)));
        else out(io, n.id);
      }),
    )
    .command(
      ['ls', 'list'],
      'List networks',
      (yy) => yy.option('no-trunc', { type: 'boolean', default: false }).option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only ids' }),
      env.action(async (a: GlobalArgs & { 'no-trunc': boolean; quiet: boolean }) => {
        const nets = await env.withControl(a, (c) => c.listNetworks());
        if (a.format === 'json') return out(io, json(nets.map(networkJson)));
        if (a.quiet) return nets.forEach((n) => out(io, n.id));
        out(io, networksTable(nets, { noTrunc: a['no-trunc'] }));
      }),
    )
    .command(
      'inspect <networks..>',
      'Show networks in detail (name, id or unique id prefix)',
      (yy) => yy.positional('networks', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { networks: string[] }) => {
        const found = await env.withControl(a, async (c) => {
          const all = [];
          for (const ref of a.networks) all.push(await c.getNetwork(ref));
          return all;
        });
        if (a.format === 'json') out(io, json(found.map(networkJson)));
        else out(io, found.map(networkDetails).join('\n\n'));
      }),
    )
    .command(
      ['rm <networks..>', 'remove <networks..>'],
      'Remove networks (refused while a service uses one)',
      (yy) => yy.positional('networks', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { networks: string[] }) => {
        await env.withControl(a, async (c) => {
          for (const ref of a.networks) {
            await c.removeNetwork(ref);
            out(io, ref);
          }
        });
      }),
    );
}
