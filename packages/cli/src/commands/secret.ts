/**
 * `swarmctl secret|config create|ls|inspect|rm`, as `docker secret` / `docker config`. A
 * secret's data goes in once and never comes out (inspect shows its name, labels, digest and
 * dates); a config's data is shown by inspect. Removing one a service uses is refused.
 */
import { readFile } from 'node:fs/promises';
import type { Argv } from 'yargs';
import { Config, Secret } from '@swarmd/proto/gen/swarm/objects';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import type { Control } from '../client/control-client.js';
import { json, kv, table } from '../format.js';
import { out } from '../io.js';
import { UsageError } from '../errors.js';
import { agoText } from '../service-format.js';
import { parseLabelAdds } from './node.js';

type DataKind = 'secret' | 'config';
type DataObject = Secret | Config;

async function readData(file: string, kind: DataKind, stdin: NodeJS.ReadableStream): Promise<Buffer> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
    return Buffer.concat(chunks);
  }
  try {
    return await readFile(file);
  } catch (e) {
    throw new UsageError(`${kind} create: cannot read ${file}: ${(e as Error).message}`, `${kind} create`);
  }
}

const ops = (c: Control, kind: DataKind) =>
  kind === 'secret'
    ? { create: c.createSecret.bind(c), get: c.getSecret.bind(c), list: c.listSecrets.bind(c), remove: c.removeSecret.bind(c) }
    : { create: c.createConfig.bind(c), get: c.getConfig.bind(c), list: c.listConfigs.bind(c), remove: c.removeConfig.bind(c) };

function toJson(kind: DataKind, o: DataObject): unknown {
  if (kind === 'secret') {
    const j = Secret.toJSON(o as Secret) as { spec?: { data?: string } };
    if (j.spec) delete j.spec.data;
    return j;
  }
  return Config.toJSON(o);
}

function details(kind: DataKind, o: DataObject): string {
  const rows: [string, string][] = [
    ['ID', o.id],
    ['Name', o.spec?.annotations?.name ?? ''],
    ['Labels', Object.entries(o.spec?.annotations?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')],
    ['Created', new Date(o.meta?.createdAt ?? 0).toISOString()],
    ['Updated', new Date(o.meta?.updatedAt ?? 0).toISOString()],
  ];
  if (kind === 'secret') rows.push(['Digest', `sha256:${(o as Secret).digest}`]);
  else rows.push(['Data', Buffer.from(o.spec?.data ?? []).toString('utf8')]);
  return kv(rows);
}

export function dataCommands(kind: DataKind, y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      'create <name> <file>',
      `Create a ${kind} from a file, or from standard input with -`,
      (yy) =>
        yy
          .positional('name', { type: 'string', demandOption: true })
          .positional('file', { type: 'string', demandOption: true })
          .option('label', { alias: 'l', type: 'string', array: true, nargs: 1, describe: 'KEY=VALUE (repeatable)' }),
      env.action(async (a: GlobalArgs & { name: string; file: string; label?: string[] }) => {
        let labels: Record<string, string>;
        try {
          labels = parseLabelAdds(a.label ?? []);
        } catch (e) {
          throw new UsageError((e as Error).message.replace('--label-add', '--label'), `${kind} create`);
        }
        const file = a.file === '' ? '-' : a.file; // yargs parses a lone "-" positional as ''
        const data = await readData(file, kind, io.stdin ?? process.stdin);
        if (data.length === 0) throw new UsageError(`${kind} create: ${file === '-' ? 'standard input' : file} is empty`, `${kind} create`);
        const o = await env.withControl(a, (c) => ops(c, kind).create(a.name, data, labels));
        out(io, a.format === 'json' ? json(toJson(kind, o)) : o.id);
      }),
    )
    .command(
      ['ls', 'list'],
      `List ${kind}s`,
      (yy) => yy.option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only ids' }),
      env.action(async (a: GlobalArgs & { quiet: boolean }) => {
        const all: DataObject[] = await env.withControl(a, (c) => ops(c, kind).list());
        if (a.format === 'json') return out(io, json(all.map((o) => toJson(kind, o))));
        if (a.quiet) return all.forEach((o) => out(io, o.id));
        const now = Date.now();
        out(io, table(['ID', 'NAME', 'CREATED', 'UPDATED'], all.map((o) => [o.id.slice(0, 25), o.spec?.annotations?.name ?? '', agoText(o.meta?.createdAt ?? 0, now), agoText(o.meta?.updatedAt ?? 0, now)])));
      }),
    )
    .command(
      'inspect <names..>',
      kind === 'secret' ? 'Show secrets (never their data)' : 'Show configs with their data',
      (yy) => yy.positional('names', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { names: string[] }) => {
        const found: DataObject[] = await env.withControl(a, async (c) => {
          const r: DataObject[] = [];
          for (const n of a.names) r.push(await ops(c, kind).get(n));
          return r;
        });
        out(io, a.format === 'json' ? json(found.map((o) => toJson(kind, o))) : found.map((o) => details(kind, o)).join('\n\n'));
      }),
    )
    .command(
      ['rm <names..>', 'remove <names..>'],
      `Remove ${kind}s (refused while a service uses one)`,
      (yy) => yy.positional('names', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { names: string[] }) => {
        await env.withControl(a, async (c) => {
          for (const n of a.names) {
            await ops(c, kind).remove(n);
            out(io, n);
          }
        });
      }),
    );
}
