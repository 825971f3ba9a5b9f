import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { Rollout_State, TaskState, UpdateStatus_State } from '@swarmd/proto/gen/swarm/types';
import { type Service, type Task } from '@swarmd/proto/gen/swarm/objects';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import type { Control } from '../client/control-client.js';
import { retryOnConflict } from '../client/rpc.js';
import { UsageError, errorLine } from '../errors.js';
import { json, parseDuration, parseTimeArg } from '../format.js';
import { out, err } from '../io.js';
import { pickService, resolveService } from '../resolve.js';
import { applyUpdateFlags, defaultServiceName, registryAuthOf, specOfCreateFlags, type CreateFlags, type UpdateFlags } from '../service-spec.js';
import { logPrefix, serviceDetails, serviceJson, serviceName, servicesTable, taskJson, tasksTable } from '../service-format.js';
import { waitConverged } from '../progress.js';
import { canaryConfigOf, followRollout, rolloutLine, type CanaryFlags } from '../canary.js';
import { progressPrinter } from '../live-lines.js';

const DESIRED: Record<string, TaskState> = {
  running: TaskState.TASK_STATE_RUNNING,
  shutdown: TaskState.TASK_STATE_SHUTDOWN,
  accepted: TaskState.TASK_STATE_ACCEPTED,
  ready: TaskState.TASK_STATE_READY,
  remove: TaskState.TASK_STATE_REMOVE,
};

/** `--filter desired-state=running`, `node=ID`, `name=web.1`, `id=PREFIX` → ListTasks filters. */
export function taskFiltersOf(filters: readonly string[], cmd: string): { desiredStates: TaskState[]; nodeIds: string[]; names: string[]; idPrefixes: string[]; services: string[] } {
  const f = { desiredStates: [] as TaskState[], nodeIds: [] as string[], names: [] as string[], idPrefixes: [] as string[], services: [] as string[] };
  for (const x of filters) {
    const i = x.indexOf('=');
    const k = x.slice(0, i);
    const v = x.slice(i + 1);
    if (i < 0 || !v) throw new UsageError(`--filter ${x}: expected KEY=VALUE (desired-state, node, name, id, service)`, cmd);
    if (k === 'desired-state') {
      const s = DESIRED[v];
      if (s === undefined) throw new UsageError(`--filter ${x}: desired-state is running, shutdown, accepted, ready or remove`, cmd);
      f.desiredStates.push(s);
    } else if (k === 'node') f.nodeIds.push(v);
    else if (k === 'name') f.names.push(v);
    else if (k === 'id') f.idPrefixes.push(v);
    else if (k === 'service') f.services.push(v);
    else throw new UsageError(`--filter ${x}: unknown filter "${k}" (desired-state, node, name, id, service)`, cmd);
  }
  return f;
}

/** Each call of a service or task command may take this long: a create or update may wait on the manager pinning the image through a registry. */
const SERVICE_DEADLINE_MS = 60_000;

/** Runs with the Control client (calls allowed SERVICE_DEADLINE_MS), closing it afterwards. */
export function withServices<T>(env: CommandEnv, g: GlobalArgs, fn: (sc: Control) => Promise<T>): Promise<T> {
  return env.withControl(g, fn, SERVICE_DEADLINE_MS);
}

async function nodeIdsOf(sc: Control, refs: readonly string[]): Promise<string[]> {
  if (!refs.length) return [];
  const nodes = await sc.listNodes();
  return refs.map((r) => nodes.find((n) => n.id === r || n.description?.hostname === r || n.spec?.annotations?.name === r)?.id ?? nodes.find((n) => n.id.startsWith(r))?.id ?? r);
}

interface WaitArgs {
  detach: boolean;
  timeout: string;
  quiet?: boolean;
}

function timeoutMs(a: WaitArgs, cmd: string): number {
  const ms = parseDuration(a.timeout);
  if (ms === undefined || ms <= 0) throw new UsageError(`--timeout ${a.timeout}: expected a duration like 60s or 2m`, cmd);
  return ms;
}

/**
 * Waits for convergence unless --detach (a rolling update: until it completes); a service that does
 * not converge in time, or an update that pauses, is an error naming why.
 */
async function converge(env: CommandEnv, sc: Control, s: Service, a: WaitArgs & GlobalArgs, ms: number, o: { rollout?: boolean } = {}): Promise<void> {
  if (a.detach) return;
  if (o.rollout !== false && isRolloutOn(s)) return followCanary(env, sc, s, a, ms);
  // On a terminal one line per task, rewritten in place; plain lines otherwise.
  const printer = progressPrinter(env.io.stderr);
  const print = (l: string, key?: string) => (a.format === 'json' || a.quiet ? undefined : printer.print(l, key));
  const updating = s.updateStatus?.state === UpdateStatus_State.UPDATING;
  const rollingBack = s.updateStatus?.state === UpdateStatus_State.ROLLBACK_STARTED;
  const r = await waitConverged(sc, s, { print, timeoutMs: ms });
  if (r.converged && r.rolledBack !== undefined && !rollingBack) {
    // An update that failed and was rolled back (failure action rollback): the command failed.
    print(`rollback: ${r.rolledBack}`);
    throw new Error(`service ${serviceName(s)}: ${r.rolledBack.replace(/^rollback completed \((.*)\)$/, '$1')}; the previous spec runs again`);
  }
  if (r.converged) {
    print(rollingBack ? 'verify: Service converged (rollback completed)' : updating ? 'verify: Service converged (update completed)' : 'verify: Service converged', 'verify');
    return;
  }
  if (r.paused !== undefined)
    throw new Error(`service ${serviceName(s)}: ${r.paused} (see \`swarmctl service ps ${serviceName(s)}\`; run \`swarmctl service update\` again to resume)`);
  if (updating) throw new Error(`service ${serviceName(s)}: the update made no progress for ${a.timeout}: ${r.reasons.join('; ')}`);
  throw new Error(`service ${serviceName(s)} did not converge within ${a.timeout}: ${r.reasons.join('; ')}`);
}

const isRolloutOn = (s: Service): boolean => {
  const st = s.rollout?.state;
  return st === Rollout_State.PROGRESSING || st === Rollout_State.WAITING || st === Rollout_State.PROMOTING;
};

/**
 * Follows a canary rollout unless --detach: a live line per change of step, weight or gate; at a
 * manual step it returns once the gate holds (saying how to go on); past the last step it
 * follows the rolling update of the old tasks until the rollout completes. An abort is an error
 * naming why.
 */
async function followCanary(env: CommandEnv, sc: Control, s: Service, a: WaitArgs & GlobalArgs, ms: number): Promise<void> {
  if (a.detach) return;
  const print = (l: string) => (a.format === 'json' || a.quiet ? undefined : err(env.io, l));
  const name = serviceName(s);
  let r = await followRollout(sc, s, { print, timeoutMs: ms });
  if (r.outcome === 'promoting') {
    await converge(env, sc, r.service, a, ms, { rollout: false });
    r = await followRollout(sc, await sc.getService(s.id), { print, timeoutMs: ms });
  }
  if (r.outcome === 'aborted') throw new Error(`service ${name}: canary rollout aborted: ${r.message}; the old tasks take every connection`);
  if (r.outcome === 'waiting') {
    print(`canary: waiting at ${rolloutLine(r.service.rollout!).replace(/ \(waiting\).*$/, '')}: \`swarmctl service promote ${name}\` goes on (--all: to the end), \`swarmctl service abort ${name}\` stops it`);
    return;
  }
  print('verify: Service converged (canary rollout completed)');
}

function printWarnings(env: CommandEnv, warnings: readonly string[]): void {
  for (const w of warnings) err(env.io, `warning: ${w}`);
}

/** The docker config.json ($DOCKER_CONFIG or ~/.docker), if readable. */
export async function dockerConfig(envVars: NodeJS.ProcessEnv): Promise<unknown> {
  const dir = envVars.DOCKER_CONFIG ?? join(envVars.HOME ?? '/root', '.docker');
  try {
    return JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

// `--no-healthcheck`, `--no-resolve-image`, `--no-trunc` are flags of their own (as in Docker), not negations;
// a repeatable flag takes one value each time (`-e A=1 web:1`: web:1 is the image).
const NO_NEGATION = { 'boolean-negation': false, 'greedy-arrays': false } as const;

const commonOptions = <T>(y: Argv<T>) =>
  y
    .parserConfiguration(NO_NEGATION)
    .option('env', { alias: 'e', type: 'string', array: true, describe: 'Set an environment variable (KEY=VALUE)' })
    .option('workdir', { alias: 'w', type: 'string', describe: 'Working directory inside the container' })
    .option('user', { alias: 'u', type: 'string', describe: 'Username or UID[:GID]' })
    .option('hostname', { type: 'string', describe: 'Container hostname' })
    .option('container-label', { type: 'string', array: true, describe: 'Container label (KEY=VALUE)' })
    .option('reserve-cpu', { type: 'string', describe: 'Reserve CPUs (e.g. 0.5)' })
    .option('reserve-memory', { type: 'string', describe: 'Reserve memory (e.g. 64M)' })
    .option('limit-cpu', { type: 'string', describe: 'Limit CPUs' })
    .option('limit-memory', { type: 'string', describe: 'Limit memory (e.g. 1G)' })
    .option('limit-pids', { type: 'number', describe: 'Limit the number of processes (0 = unlimited)' })
    .option('restart-condition', { type: 'string', describe: 'none | on-failure | any' })
    .option('restart-delay', { type: 'string', describe: 'Delay between restart attempts (e.g. 5s)' })
    .option('restart-max-attempts', { type: 'number', describe: 'Maximum restarts before giving up' })
    .option('restart-window', { type: 'string', describe: 'Window used to evaluate the restart policy' })
    .option('health-cmd', { type: 'string', describe: 'Command to check health (run with sh -c)' })
    .option('health-interval', { type: 'string', describe: 'Time between checks' })
    .option('health-timeout', { type: 'string', describe: 'Maximum time a check may take' })
    .option('health-retries', { type: 'number', describe: 'Consecutive failures to report unhealthy' })
    .option('health-start-period', { type: 'string', describe: 'Start period before failures count' })
    .option('no-healthcheck', { type: 'boolean', describe: 'Disable any container-specified HEALTHCHECK' })
    .option('stop-signal', { type: 'string', describe: 'Signal to stop the container' })
    .option('stop-grace-period', { type: 'string', describe: 'Time to wait before force killing (e.g. 10s)' })
    .option('stop-drain-period', { type: 'string', describe: 'Time a task on overlay networks keeps running after it left DNS and the VIP endpoints, before its stop signal (default 2s; 0s: none)' })
    .option('endpoint-mode', { type: 'string', describe: 'How the service name resolves on its networks: vip (one virtual IP balanced over the tasks; default) | dnsrr (the tasks\' addresses, round robin)' })
    .option('entrypoint', { type: 'string', describe: 'Overwrite the image ENTRYPOINT' })
    .option('replicas', { type: 'number', describe: 'Number of tasks' })
    .option('update-parallelism', { type: 'number', describe: 'Tasks replaced at once by a rolling update (0 = all at once; default 1)' })
    .option('update-delay', { type: 'string', describe: 'Wait between a replaced task running and the next replacement (e.g. 10s; default 0s)' })
    .option('update-order', { type: 'string', describe: 'stop-first (default: stop the old task, then start the new) | start-first' })
    .option('update-failure-action', { type: 'string', describe: 'On a failed new task: pause (default) | continue | rollback (to the previous spec, with the rollback config)' })
    .option('update-monitor', { type: 'string', describe: 'How long after it starts a new task counts as failed if it stops (default 5s)' })
    .option('update-max-failure-ratio', { type: 'string', describe: 'Failed new tasks tolerated, as a fraction of the tasks (0 to 1; default 0)' })
    .option('rollback-parallelism', { type: 'number', describe: 'Tasks replaced at once by a rollback (0 = all at once; default 1)' })
    .option('rollback-delay', { type: 'string', describe: 'Wait between rolled back tasks (default 0s)' })
    .option('rollback-order', { type: 'string', describe: 'stop-first (default) | start-first' })
    .option('rollback-failure-action', { type: 'string', describe: 'On a failed task during a rollback: pause (default) | continue' })
    .option('rollback-monitor', { type: 'string', describe: 'How long after it starts a rolled back task counts as failed if it stops (default 5s)' })
    .option('rollback-max-failure-ratio', { type: 'string', describe: 'Failed tasks tolerated during a rollback (0 to 1; default 0)' })
    .option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'Exit at once instead of waiting for the service to converge (or the update to complete)' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Suppress progress output' })
    .option('timeout', { type: 'string', default: '60s', describe: 'Give up waiting for convergence after this long (a rolling update: this long without progress), and say why' })
    .option('no-resolve-image', { type: 'boolean', default: false, describe: 'Do not pin the image to a digest through the registry' })
    .option('with-registry-auth', { type: 'boolean', default: false, describe: 'Send registry credentials (~/.docker/config.json) to the nodes that run the tasks' });

type CreateArgs = GlobalArgs & CreateFlags & WaitArgs & { _: (string | number)[]; image: string; command?: (string | number)[]; 'no-resolve-image': boolean; 'with-registry-auth': boolean };
type UpdateArgs = GlobalArgs & UpdateFlags & WaitArgs & CanaryFlags & { service: string; rollback: boolean; force: boolean; 'no-resolve-image': boolean; 'with-registry-auth': boolean };

export function serviceCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      'create <image> [command..]',
      'Create a service (waits until it converges unless --detach)',
      (yy) =>
        commonOptions(yy)
          .positional('image', { type: 'string', demandOption: true })
          .positional('command', { type: 'string', array: true })
          .option('name', { type: 'string', describe: 'Service name' })
          .option('mode', { type: 'string', describe: 'replicated | global', default: 'replicated' })
          .option('label', { alias: 'l', type: 'string', array: true, describe: 'Service label (KEY=VALUE)' })
          .option('mount', { type: 'string', array: true, describe: 'type=bind|volume|tmpfs,source=,target=,readonly' })
          .option('constraint', { type: 'string', array: true, describe: 'Placement constraint (node.labels.zone==a)' })
          .option('placement-pref', { type: 'string', array: true, describe: 'spread=node.labels.NAME' })
          .option('publish', { alias: 'p', type: 'string', array: true, describe: 'published=,target=,mode=host|ingress,protocol= (or 8080:80)' })
          .option('network', { type: 'string', array: true, nargs: 1, describe: 'NAME of an overlay network (repeatable), or host | none' })
          .option('secret', { type: 'string', array: true, nargs: 1, describe: 'NAME or source=NAME,target=,uid=,gid=,mode= (at /run/secrets/NAME)' })
          .option('config', { type: 'string', array: true, nargs: 1, describe: 'NAME or source=NAME,target=/PATH,uid=,gid=,mode= (at /NAME)' }),
      env.action(async (a: CreateArgs) => {
        const ms = timeoutMs(a, 'service create');
        // What follows `--` (a command with flags of its own: `-- sh -c 'echo hi'`) lands in `_`, after "service create".
        const command = [...(a.command ?? []), ...a._.slice(2)].map(String);
        const auth = a['with-registry-auth'] ? registryAuthOf(await dockerConfig(io.env), a.image) : undefined;
        if (a['with-registry-auth'] && !auth) err(io, `warning: --with-registry-auth: no credentials for the registry of ${a.image} in the docker config`);
        const spec = specOfCreateFlags(a, a.image, command, auth);
        if (!spec.annotations!.name) spec.annotations!.name = defaultServiceName(a.image, () => randomBytes(8).readBigUInt64BE().toString(36).slice(0, 5).padStart(5, '0'));
        await withServices(env, a, async (sc) => {
          const r = await sc.createService(spec, a['no-resolve-image']);
          printWarnings(env, r.warnings);
          out(io, a.format === 'json' ? json(serviceJson(r.service)) : r.service.id);
          await converge(env, sc, r.service, a, ms);
        });
      }),
    )
    .command(
      'update <service>',
      'Update a service: tasks whose spec changed are replaced by a rolling update (--update-*), shown as it goes; waits until it completes unless --detach',
      (yy) =>
        commonOptions(yy)
          .positional('service', { type: 'string', demandOption: true })
          .option('image', { type: 'string', describe: 'New image' })
          .option('args', { type: 'string', describe: 'New command arguments' })
          .option('env-add', { type: 'string', array: true, describe: 'Add or change an environment variable' })
          .option('env-rm', { type: 'string', array: true, describe: 'Remove an environment variable (KEY)' })
          .option('label-add', { type: 'string', array: true, describe: 'Add or change a service label' })
          .option('label-rm', { type: 'string', array: true, describe: 'Remove a service label' })
          .option('container-label-add', { type: 'string', array: true, describe: 'Add or change a container label' })
          .option('container-label-rm', { type: 'string', array: true, describe: 'Remove a container label' })
          .option('constraint-add', { type: 'string', array: true, describe: 'Add a placement constraint' })
          .option('constraint-rm', { type: 'string', array: true, describe: 'Remove a placement constraint' })
          .option('mount-add', { type: 'string', array: true, describe: 'Add or replace a mount (by target)' })
          .option('mount-rm', { type: 'string', array: true, describe: 'Remove a mount (by target)' })
          .option('publish-add', { type: 'string', array: true, describe: 'Add a published port' })
          .option('publish-rm', { type: 'string', array: true, describe: 'Remove a published port (by target port)' })
          .option('network-add', { type: 'string', array: true, nargs: 1, describe: 'Attach to a network (NAME)' })
          .option('network-rm', { type: 'string', array: true, nargs: 1, describe: 'Detach from a network (NAME or id)' })
          .option('secret-add', { type: 'string', array: true, nargs: 1, describe: 'Add or replace a secret (as --secret of create)' })
          .option('secret-rm', { type: 'string', array: true, nargs: 1, describe: 'Remove a secret (by name or target)' })
          .option('config-add', { type: 'string', array: true, nargs: 1, describe: 'Add or replace a config' })
          .option('config-rm', { type: 'string', array: true, nargs: 1, describe: 'Remove a config (by name or target)' })
          .option('force', { type: 'boolean', default: false, describe: 'Replace every task (a rolling update) even if nothing changed; replaces a canary rollout in progress' })
          .option('canary-weight', { type: 'number', describe: 'Start a canary rollout: canary tasks of the new spec beside the old ones take P% of new connections (one step)' })
          .option('canary-steps', { type: 'string', describe: 'Canary weights in percent, increasing (e.g. 10,50,100); at 100 the old tasks are replaced' })
          .option('canary-interval', { type: 'string', describe: 'How long each step\'s gate must hold before the next (e.g. 1m); manual (default): wait for `service promote`' })
          .option('canary-replicas', { type: 'number', describe: 'Canary tasks (default: the fewest whose share of the tasks is the first weight)' })
          .option('canary-max-failure-ratio', { type: 'string', describe: 'Canary failures tolerated (0 to 1; default 0): past it the rollout aborts' })
          .option('canary-check-path', { type: 'string', describe: 'HTTP path each canary is sent GET once a second from its host; a failing ratio aborts' })
          .option('canary-check-port', { type: 'number', describe: 'Port of the HTTP check (default: the first published target port)' })
          .option('canary-check-success', { type: 'string', describe: 'Success ratio of the HTTP checks each step must reach (default 0.99)' })
          .option('rollback', { type: 'boolean', default: false, describe: 'Roll back to the previous spec' }),
      env.action(async (a: UpdateArgs) => {
        const ms = timeoutMs(a, 'service update');
        const canary = canaryConfigOf(a);
        if (canary && a.rollback) throw new UsageError('--rollback and --canary-* do not go together: a rollback puts the previous spec back at once', 'service update');
        await withServices(env, a, async (sc) => {
          const auth = a['with-registry-auth'] ? registryAuthOf(await dockerConfig(io.env), a.image ?? '') : undefined;
          const r = await retryOnConflict(async () => {
            const cur = await resolveService(sc, a.service);
            let spec;
            if (!a.rollback) {
              spec = applyUpdateFlags(cur.spec!, a, a['network-add'] || a['network-rm'] ? await sc.listNetworks() : []);
              if (auth) spec.task!.container!.pullAuth = auth;
            }
            return sc.updateService({ serviceId: cur.id, version: cur.meta?.version ?? 0, spec, rollback: a.rollback, noResolveImage: a['no-resolve-image'], canary, force: a.force });
          });
          printWarnings(env, r.warnings);
          out(io, a.format === 'json' ? json(serviceJson(r.service)) : serviceName(r.service));
          await converge(env, sc, r.service, a, ms);
        });
      }),
    )
    .command(
      'rollback <service>',
      'Go back to the previous spec of a service, with its rollback config (waits until done unless --detach)',
      (yy) =>
        yy
          .positional('service', { type: 'string', demandOption: true })
          .option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'Exit at once instead of waiting for the rollback to complete' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Suppress progress output' })
          .option('timeout', { type: 'string', default: '60s', describe: 'Give up waiting after this long without progress, and say why' }),
      env.action(async (a: GlobalArgs & WaitArgs & { service: string }) => {
        const ms = timeoutMs(a, 'service rollback');
        await withServices(env, a, async (sc) => {
          const r = await retryOnConflict(async () => {
            const cur = await resolveService(sc, a.service);
            return sc.updateService({ serviceId: cur.id, version: cur.meta?.version ?? 0, rollback: true });
          });
          out(io, a.format === 'json' ? json(serviceJson(r.service)) : serviceName(r.service));
          await converge(env, sc, r.service, a, ms);
        });
      }),
    )
    .command(
      'promote <service>',
      'Move a canary rollout to its next step (--all: to the end: the old tasks are replaced); waits as `service update` does unless --detach',
      (yy) =>
        yy
          .positional('service', { type: 'string', demandOption: true })
          .option('all', { type: 'boolean', default: false, describe: 'Skip the remaining steps: replace the old tasks now' })
          .option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'Exit at once' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Suppress progress output' })
          .option('timeout', { type: 'string', default: '60s', describe: 'Give up waiting after this long without progress, and say why' }),
      env.action(async (a: GlobalArgs & WaitArgs & { service: string; all: boolean }) => {
        const ms = timeoutMs(a, 'service promote');
        await withServices(env, a, async (sc) => {
          const cur = await resolveService(sc, a.service);
          const s = await sc.promoteService(cur.id, a.all, cur.rollout ? cur.rollout.step + 1 : 0);
          out(io, a.format === 'json' ? json(serviceJson(s)) : serviceName(s));
          await converge(env, sc, s, a, ms);
        });
      }),
    )
    .command(
      'abort <service>',
      'End a canary rollout: every new connection goes back to the old tasks at once, the canaries are removed and the previous spec is back',
      (yy) =>
        yy
          .positional('service', { type: 'string', demandOption: true })
          .option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'Exit at once' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Suppress progress output' })
          .option('timeout', { type: 'string', default: '60s', describe: 'Give up waiting after this long without progress, and say why' }),
      env.action(async (a: GlobalArgs & WaitArgs & { service: string }) => {
        const ms = timeoutMs(a, 'service abort');
        await withServices(env, a, async (sc) => {
          const cur = await resolveService(sc, a.service);
          const s = await sc.abortRollout(cur.id);
          out(io, a.format === 'json' ? json(serviceJson(s)) : serviceName(s));
          if (a.format !== 'json' && !a.quiet) err(env.io, `canary: ${s.rollout?.message ?? 'aborted'}`);
          await converge(env, sc, s, a, ms);
        });
      }),
    )
    .command(
      'scale <pairs..>',
      'Scale replicated services: NAME=REPLICAS ...',
      (yy) =>
        yy
          .positional('pairs', { type: 'string', array: true, demandOption: true })
          .option('detach', { alias: 'd', type: 'boolean', default: false, describe: 'Exit at once' })
          .option('timeout', { type: 'string', default: '60s', describe: 'Give up waiting for convergence after this long' }),
      env.action(async (a: GlobalArgs & WaitArgs & { pairs: string[] }) => {
        const ms = timeoutMs(a, 'service scale');
        const pairs = a.pairs.map((p) => {
          const m = /^(.+)=(\d+)$/.exec(p);
          if (!m) throw new UsageError(`${p}: expected SERVICE=REPLICAS (a whole number)`, 'service scale');
          return { ref: m[1], replicas: Number(m[2]) };
        });
        await withServices(env, a, async (sc) => {
          const updated: Service[] = [];
          for (const p of pairs) {
            const r = await retryOnConflict(async () => {
              const cur = await resolveService(sc, p.ref);
              if (cur.spec?.mode?.$case === 'global') throw new Error(`${serviceName(cur)}: scale can only be used with replicated mode`);
              const spec = structuredClone(cur.spec!);
              spec.mode = { $case: 'replicated', replicated: { replicas: p.replicas } };
              return sc.updateService({ serviceId: cur.id, version: cur.meta?.version ?? 0, spec, noResolveImage: true });
            });
            updated.push(r.service);
            if (a.format !== 'json') out(io, `${serviceName(r.service)} scaled to ${p.replicas}`);
          }
          if (a.format === 'json') out(io, json(updated.map(serviceJson)));
          for (const s of updated) await converge(env, sc, s, a, ms);
        });
      }),
    )
    .command(
      ['ls', 'list'],
      'List services (REPLICAS = running/desired)',
      (yy) => yy.option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only ids' }),
      env.action(async (a: GlobalArgs & { quiet: boolean }) => {
        await withServices(env, a, async (sc) => {
          const services = await sc.listServices();
          if (a.format === 'json') return out(io, json(services.map(serviceJson)));
          if (a.quiet) return services.forEach((s) => out(io, s.id));
          const tasks = await sc.listTasks({ desiredStates: [TaskState.TASK_STATE_RUNNING] });
          out(io, servicesTable(services, tasks));
        });
      }),
    )
    .command(
      'inspect <services..>',
      'Show services in detail',
      (yy) => yy.positional('services', { type: 'string', array: true, demandOption: true }).option('pretty', { type: 'boolean', default: false, describe: 'Human-readable (the default table form)' }),
      env.action(async (a: GlobalArgs & { services: string[]; pretty: boolean }) => {
        await withServices(env, a, async (sc) => {
          const found: Service[] = [];
          for (const ref of a.services) found.push(await resolveService(sc, ref));
          if (a.format === 'json' && !a.pretty) out(io, json(found.map(serviceJson)));
          else {
            const nets = found.some((s) => s.spec?.task?.networks.length) ? await sc.listNetworks() : [];
            out(io, found.map((s) => serviceDetails(s, nets)).join('\n\n'));
          }
        });
      }),
    )
    .command(
      'ps <services..>',
      'List the tasks of services',
      (yy) =>
        yy
          .parserConfiguration(NO_NEGATION)
          .positional('services', { type: 'string', array: true, demandOption: true })
          .option('no-trunc', { type: 'boolean', default: false, describe: 'Do not truncate ids, images and errors' })
          .option('filter', { alias: 'f', type: 'string', array: true, default: [] as string[], describe: 'desired-state=running|shutdown|accepted, node=, name=, id=' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only task ids' }),
      env.action(async (a: GlobalArgs & { services: string[]; 'no-trunc': boolean; filter: string[]; quiet: boolean }) => {
        const f = taskFiltersOf(a.filter, 'service ps');
        await withServices(env, a, async (sc) => {
          const all = await sc.listServices();
          const ids = a.services.map((r) => pickService(all, r).id);
          const nodeIds = await nodeIdsOf(sc, f.nodeIds);
          const tasks = await sc.listTasks({ serviceIds: ids, desiredStates: f.desiredStates, nodeIds, names: f.names, idPrefixes: f.idPrefixes });
          if (a.format === 'json') return out(io, json(tasks.map(taskJson)));
          if (a.quiet) return tasks.forEach((t) => out(io, t.id));
          out(io, tasksTable(tasks, await sc.listNodes(), { noTrunc: a['no-trunc'] }));
        });
      }),
    )
    .command(
      ['rm <services..>', 'remove'],
      'Remove services (their tasks are stopped)',
      (yy) => yy.positional('services', { type: 'string', array: true, demandOption: true }),
      env.action(async (a: GlobalArgs & { services: string[] }) => {
        await withServices(env, a, async (sc) => {
          const all = await sc.listServices();
          const removed: string[] = [];
          const failed: string[] = [];
          // As docker: remove every service that exists; report the others, then fail.
          for (const ref of a.services) {
            try {
              const s = pickService(all, ref);
              await sc.removeService(s.id);
              removed.push(s.id);
              if (a.format !== 'json') out(io, serviceName(s));
            } catch (e) {
              failed.push(ref);
              err(io, `swarmctl: ${errorLine(e)}`);
            }
          }
          if (a.format === 'json') out(io, json(removed.map((id) => ({ removed: id }))));
          if (failed.length > 0) throw new Error(`${failed.length} of ${a.services.length} services not removed: ${failed.join(', ')}`);
        });
      }),
    )
    .command(
      'logs <service>',
      "Show a service's (or a task's) output, as the agents publish it",
      (yy) =>
        yy
          .parserConfiguration(NO_NEGATION)
          .positional('service', { type: 'string', demandOption: true })
          .option('follow', { alias: 'f', type: 'boolean', default: false, describe: 'Keep streaming new output' })
          .option('tail', { alias: 'n', type: 'string', default: 'all', describe: 'Lines from the end (all or a number)' })
          .option('timestamps', { alias: 't', type: 'boolean', default: false, describe: 'Show timestamps' })
          .option('since', { type: 'string', describe: 'Only lines newer than this (a duration like 10m, or an RFC 3339 time)' })
          .option('no-trunc', { type: 'boolean', default: false, describe: 'Do not truncate task ids' })
          .option('no-task-ids', { type: 'boolean', default: false, describe: 'Leave task ids out of the prefix' }),
      env.action(
        async (a: GlobalArgs & { service: string; follow: boolean; tail: string; timestamps: boolean; since?: string; 'no-trunc': boolean; 'no-task-ids': boolean }) => {
          const tail = a.tail === 'all' ? -1 : /^\d+$/.test(a.tail) ? Number(a.tail) : NaN;
          if (Number.isNaN(tail)) throw new UsageError(`--tail ${a.tail}: expected all or a number`, 'service logs');
          let sinceMs = 0;
          if (a.since !== undefined) {
            sinceMs = parseTimeArg(a.since, Date.now()) ?? NaN;
            if (Number.isNaN(sinceMs)) throw new UsageError(`--since ${a.since}: expected a duration (10m) or a time (2024-01-02T15:04:05Z)`, 'service logs');
          }
          await withServices(env, a, async (sc) => {
            const services = await sc.listServices();
              let serviceIds: string[] = [];
            let taskIds: string[] = [];
            try {
              serviceIds = [pickService(services, a.service).id];
            } catch (e) {
              // Not a service: perhaps a task id.
              const t = await sc.getTask(a.service).catch(() => undefined);
              if (!t) throw e;
              taskIds = [t.id];
            }
            const nodes = await sc.listNodes();
            const tasks = new Map<string, Task>((await sc.listTasks({ serviceIds: serviceIds.length ? serviceIds : undefined, idPrefixes: taskIds })).map((t) => [t.id, t]));
            const lines: Promise<void>[] = [];
            await sc.logs({ serviceIds, taskIds, follow: a.follow, tail, sinceMs }, (l) => {
              const write = (task: Task | undefined) => {
                if (a.format === 'json') {
                  // One JSON object per line (a stream: not one array).
                  const text = Buffer.from(l.data).toString();
                  io.stdout.write(JSON.stringify({ service: task?.serviceAnnotations?.name ?? l.serviceId, serviceId: l.serviceId, taskId: l.taskId, slot: task?.slot ?? 0, nodeId: l.nodeId, timestamp: new Date(l.timestamp).toISOString(), stream: l.stream, line: text.replace(/\n$/, '') }) + '\n');
                  return;
                }
                const prefix = logPrefix(l, task, nodes, { noTrunc: a['no-trunc'] });
                const p = a['no-task-ids'] ? prefix.replace(/\.[a-z0-9]+@/, '@') : prefix;
                const data = Buffer.from(l.data).toString().replace(/\n$/, '');
                for (const line of data.split('\n')) {
                  const text = `${p.padEnd(30)} | ${a.timestamps ? new Date(l.timestamp).toISOString() + ' ' : ''}${line}`;
                  if (l.stream === 'stderr') err(io, text);
                  else out(io, text);
                }
              };
              const known = tasks.get(l.taskId);
              if (known || !a.follow) return write(known);
              // A task created since we listed: read it once.
              lines.push(
                sc.getTask(l.taskId).then(
                  (t) => (tasks.set(t.id, t), write(t)),
                  () => write(undefined),
                ),
              );
            });
            await Promise.all(lines);
          });
        },
      ),
    );
}
