/**
 * `swarmctl stack deploy|ls|ps|services|rm`, as `docker stack`: a stack is the services,
 * networks, secrets and configs of Compose files, each named `STACK_NAME` and labelled
 * com.docker.stack.namespace=STACK. The translation and the plan are pure (src/stack/); this file
 * reads the files and calls the control API.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { type RegistryAuth } from '@swarmd/proto/gen/swarm/types';
import { ServiceSpec } from '@swarmd/proto/gen/swarm/specs';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import type { Control } from '../client/control-client.js';
import { retryOnConflict } from '../client/rpc.js';
import { UsageError } from '../errors.js';
import { json, table } from '../format.js';
import { err, out } from '../io.js';
import { servicesTable, serviceJson, taskJson, tasksTable } from '../service-format.js';
import { waitConverged } from '../progress.js';
import { dockerConfig, withServices } from './service.js';
import { registryAuthOf } from '../service-spec.js';
import { parseEnvFile } from '../stack/interpolate.js';
import { translateCompose, STACK_LABEL, checkStackName, type Stack } from '../stack/translate.js';
import { planDeploy, planRemove, planText, withRegistryAuth, type Current, type Step } from '../stack/plan.js';
import type { ComposeFile } from '../stack/load.js';

const RESOLVE = ['always', 'changed', 'never'] as const;

interface DeployArgs extends GlobalArgs {
  stack: string;
  'compose-file': string[];
  prune: boolean;
  'resolve-image': string;
  'with-registry-auth': boolean;
  'dry-run': boolean;
  detach: boolean;
  quiet: boolean;
}

/** The variables for interpolation: a `.env` beside the first file, overridden by the environment. */
async function envFor(first: string, env: NodeJS.ProcessEnv): Promise<Record<string, string | undefined>> {
  const path = resolve(dirname(first), '.env');
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    text = undefined;
  }
  const vars: Record<string, string | undefined> = {};
  if (text !== undefined) {
    try {
      for (const { key, value } of parseEnvFile(text)) vars[key] = value ?? '';
    } catch (e) {
      throw new UsageError(`${path}: ${(e as Error).message}`, 'stack deploy');
    }
  }
  return { ...vars, ...env };
}

/** Reads and translates the files; a problem is an error naming file, line and key. */
export async function loadStack(name: string, files: readonly string[], env: NodeJS.ProcessEnv): Promise<Stack> {
  if (!files.length) throw new UsageError('stack deploy: give a Compose file with -c FILE', 'stack deploy');
  const read: ComposeFile[] = [];
  for (const f of files) {
    const path = resolve(f);
    try {
      read.push({ path, text: await readFile(path, 'utf8') });
    } catch (e) {
      throw new UsageError(`stack deploy: cannot read ${f}: ${(e as Error).message}`, 'stack deploy');
    }
  }
  return translateCompose(name, read, { env: await envFor(read[0].path, env), readFile: (p) => readFileSync(p) });
}

async function current(c: Control, stack?: string): Promise<Current> {
  const f = stack ? { labels: { [STACK_LABEL]: stack } as Record<string, string> } : {};
  const [services, networks, secrets, configs] = await Promise.all([c.listServices(f), c.listNetworks(), c.listSecrets(f), c.listConfigs(f)]);
  return { services, networks, secrets, configs };
}

/** Carries out the steps in order; prints one line each (as docker stack deploy). */
async function apply(env: CommandEnv, c: Control, stack: Stack, steps: readonly Step[], a: DeployArgs): Promise<string[]> {
  const say = (l: string) => (a.quiet || a.format === 'json' ? undefined : out(env.io, l));
  const touched: string[] = [];
  const noResolve = a['resolve-image'] === 'never';
  for (const s of steps) {
    if (s.action === 'unchanged') continue;
    if (s.kind === 'network' && s.action === 'create') {
      say(`Creating network ${s.name}`);
      await c.createNetwork(stack.networks.find((n) => n.name === s.name)!.spec);
    } else if (s.kind === 'secret' || s.kind === 'config') {
      const d = (s.kind === 'secret' ? stack.secrets : stack.configs).find((x) => x.name === s.name)!;
      say(`Creating ${s.kind} ${s.name}`);
      if (s.kind === 'secret') await c.createSecret(s.name, d.data!, d.labels);
      else await c.createConfig(s.name, d.data!, d.labels);
    } else if (s.kind === 'service' && s.action === 'create') {
      say(`Creating service ${s.name}`);
      const r = await c.createService(s.spec!, noResolve);
      for (const w of r.warnings) err(env.io, `warning: ${w}`);
      touched.push(r.service.id);
    } else if (s.kind === 'service' && s.action === 'update') {
      say(`Updating service ${s.name} (id: ${s.id}): ${s.fields.join(', ')}`);
      const r = await retryOnConflict(async () => {
        const cur = await c.getService(s.id!);
        // Without --with-registry-auth the stored credentials stay (the manager keeps them when
        // the redacted ones it answered with come back), as Docker does.
        const spec = s.spec!.task?.container?.pullAuth || !cur.spec?.task?.container?.pullAuth ? s.spec! : withStoredAuth(s.spec!, cur.spec.task.container.pullAuth);
        return c.updateService({ serviceId: s.id!, version: cur.meta?.version ?? 0, spec, noResolveImage: noResolve });
      });
      for (const w of r.warnings) err(env.io, `warning: ${w}`);
      touched.push(r.service.id);
    } else if (s.kind === 'service' && s.action === 'remove') {
      say(`Removing service ${s.name}`);
      await c.removeService(s.id!);
    }
  }
  return touched;
}

function withStoredAuth(spec: ServiceSpec, redacted: RegistryAuth): ServiceSpec {
  const c = ServiceSpec.fromPartial(spec);
  c.task!.container!.pullAuth = redacted;
  return c;
}

function stepJson(s: Step): unknown {
  return { kind: s.kind, action: s.action, name: s.name, ...(s.fields.length ? { fields: s.fields } : {}), ...(s.id ? { id: s.id } : {}) };
}

/** Network removal waits while tasks of removed services are still attached (stopping). */
async function removeNetwork(c: Control, id: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await c.removeNetwork(id);
    } catch (e) {
      if (!/still has \d+ task|in use by service/.test(String((e as Error).message)) || Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

export function stackCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  const stackArg = <T>(yy: Argv<T>) => yy.positional('stack', { type: 'string', demandOption: true, describe: 'Stack name' });
  return y
    .command(
      ['deploy <stack>', 'up <stack>'],
      'Deploy or update a stack from Compose files: creates what is new, updates (rolling) only services whose spec changed',
      (yy) =>
        stackArg(yy)
          .option('compose-file', { alias: 'c', type: 'string', array: true, nargs: 1, demandOption: true, describe: 'Compose file (repeatable: merged in order)' })
          .option('prune', { type: 'boolean', default: false, describe: 'Remove services of the stack that are no longer in the files' })
          .option('resolve-image', { type: 'string', choices: RESOLVE, default: 'always', describe: 'Pin images to digests through the registry (never: keep tags)' })
          .option('with-registry-auth', { type: 'boolean', default: false, describe: 'Send registry credentials (~/.docker/config.json) with every service, for the nodes that pull its image' })
          .option('dry-run', { type: 'boolean', default: false, describe: 'Print the plan (create/update/remove per object, changed fields) and change nothing' })
          .option('detach', { alias: 'd', type: 'boolean', default: true, describe: 'Return at once (--detach=false: wait until every changed service converged)' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress lines' }),
      env.action(async (a: DeployArgs) => {
        try {
          checkStackName(a.stack);
        } catch (e) {
          throw new UsageError((e as Error).message, 'stack deploy');
        }
        const stack = await loadStack(a.stack, a['compose-file'], io.env);
        if (stack.warnings.length) err(io, `Ignoring unsupported options:\n${stack.warnings.map((w) => `  ${w}`).join('\n')}`);
        await withServices(env, a, async (c) => {
          let steps = planDeploy(stack, await current(c), { prune: a.prune });
          if (a['with-registry-auth']) {
            const config = await dockerConfig(io.env);
            const r = withRegistryAuth(steps, (image) => registryAuthOf(config, image));
            steps = r.steps;
            for (const image of r.missing) err(io, `warning: --with-registry-auth: no credentials for the registry of ${image} in the docker config`);
          }
          if (a['dry-run']) {
            out(io, a.format === 'json' ? json(steps.map(stepJson)) : planText(steps));
            return;
          }
          const touched = await apply(env, c, stack, steps, a);
          if (a.format === 'json') out(io, json(steps.map(stepJson)));
          const kept = steps.filter((s) => s.kind === 'service' && s.action !== 'unchanged').length;
          if (!kept && !a.quiet && a.format !== 'json') out(io, `Stack ${a.stack}: every service is up to date`);
          if (a.detach) return;
          for (const id of touched) {
            const s = await c.getService(id);
            const r = await waitConverged(c, s, { print: (l) => (a.quiet ? undefined : err(io, `${s.spec?.annotations?.name ?? id}: ${l}`)), timeoutMs: 300_000 });
            if (!r.converged) throw new Error(`service ${s.spec?.annotations?.name ?? id} did not converge: ${r.paused ?? r.reasons.join('; ')}`);
          }
        });
      }),
    )
    .command(
      ['ls', 'list'],
      'List stacks',
      (yy) => yy,
      env.action(async (a: GlobalArgs) => {
        const services = await withServices(env, a, (c) => c.listServices());
        const count = new Map<string, number>();
        for (const s of services) {
          const ns = s.spec?.annotations?.labels?.[STACK_LABEL];
          if (ns) count.set(ns, (count.get(ns) ?? 0) + 1);
        }
        const rows = [...count].sort(([x], [y2]) => (x < y2 ? -1 : 1));
        if (a.format === 'json') return out(io, json(rows.map(([name, n]) => ({ name, services: n }))));
        out(io, table(['NAME', 'SERVICES'], rows.map(([name, n]) => [name, String(n)])));
      }),
    )
    .command(
      'services <stack>',
      'List the services of a stack',
      (yy) => stackArg(yy),
      env.action(async (a: GlobalArgs & { stack: string }) => {
        await withServices(env, a, async (c) => {
          const services = await c.listServices({ labels: { [STACK_LABEL]: a.stack } });
          if (!services.length) throw new Error(`nothing found in stack: ${a.stack}`);
          if (a.format === 'json') return out(io, json(services.map(serviceJson)));
          out(io, servicesTable(services, await c.listTasks({ serviceIds: services.map((s) => s.id) })));
        });
      }),
    )
    .command(
      'ps <stack>',
      'List the tasks of a stack',
      (yy) => stackArg(yy).option('no-trunc', { type: 'boolean', default: false }),
      env.action(async (a: GlobalArgs & { stack: string; 'no-trunc': boolean }) => {
        await withServices(env, a, async (c) => {
          const services = await c.listServices({ labels: { [STACK_LABEL]: a.stack } });
          if (!services.length) throw new Error(`nothing found in stack: ${a.stack}`);
          const tasks = await c.listTasks({ serviceIds: services.map((s) => s.id) });
          if (a.format === 'json') return out(io, json(tasks.map(taskJson)));
          out(io, tasksTable(tasks, await c.listNodes(), { noTrunc: a['no-trunc'] }));
        });
      }),
    )
    .command(
      ['rm <stacks..>', 'remove <stacks..>', 'down <stacks..>'],
      'Remove stacks: their services, then secrets, configs and networks',
      (yy) => yy.positional('stacks', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { stacks: string[] }) => {
        await withServices(env, a, async (c) => {
          for (const name of a.stacks) {
            const steps = planRemove(name, await current(c, name));
            if (!steps.length) {
              err(io, `Nothing found in stack: ${name}`);
              continue;
            }
            for (const s of steps) {
              if (a.format !== 'json') out(io, `Removing ${s.kind} ${s.name}`);
              if (s.kind === 'service') await c.removeService(s.id!);
              else if (s.kind === 'secret') await c.removeSecret(s.id!);
              else if (s.kind === 'config') await c.removeConfig(s.id!);
              else await removeNetwork(c, s.id!);
            }
            if (a.format === 'json') out(io, json(steps.map(stepJson)));
          }
        });
      }),
    );
}
