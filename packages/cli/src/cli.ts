import yargs, { type Argv } from 'yargs';
import { errorLine, UsageError } from './errors.js';
import { err, type CliIo } from './io.js';
import { FORMATS, type OutputFormat } from './format.js';
import { DEFAULT_HOST } from './client/context.js';
import type { Connection } from './client/connection.js';
import type { Control } from './client/control-client.js';

/** The flags every command takes. */
export interface GlobalArgs {
  host?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  context?: string;
  format: OutputFormat;
}

/** What a command handler gets besides its arguments. */
export interface CommandEnv {
  io: CliIo;
  /** Runs a handler, turning any error into `swarmctl: <message>` and exit code 1. */
  action<A>(fn: (a: A) => Promise<void>): (a: A) => Promise<void>;
  /**
   * Runs with the Control client of the global flags, closing it afterwards; each call may take
   * `deadlineMs` (default DEFAULT_DEADLINE_MS).
   */
  withControl<T>(g: GlobalArgs, fn: (c: Control, conn: Connection) => Promise<T>, deadlineMs?: number): Promise<T>;
}

const DEFAULT_FORMAT: OutputFormat = 'table';

/** Adds one top-level command (or command group) to the parser. */
type Register = (y: Argv<GlobalArgs>, env: CommandEnv, describe: string) => Argv<GlobalArgs>;

/** A group of subcommands (`swarmctl node ...`): the builder module and what to say without a subcommand. */
const group =
  (name: string, load: () => Promise<(y: Argv<GlobalArgs>, env: CommandEnv) => Argv<GlobalArgs>>, demand: string) =>
  async (): Promise<Register> => {
    const commands = await load();
    return (y, env, describe) => y.command(name, describe, (yy) => commands(yy, env).demandCommand(1, `${name}: give a subcommand (${demand})`));
  };

/** `secret` and `config`: the same commands for either kind. */
const dataGroup = (kind: 'secret' | 'config') =>
  group(
    kind,
    async () => {
      const { dataCommands } = await import('./commands/secret.js');
      return (y, env) => dataCommands(kind, y, env);
    },
    'create, ls, inspect, rm',
  );

/**
 * Every top-level command, in --help order. A command's module (and what it imports: gRPC, YAML,
 * the local cluster's code...) is loaded only when the command line names it: swarmctl starts in
 * the time Node takes to load what one command needs, not all of them.
 */
const COMMANDS: readonly { name: string; describe: string; load: () => Promise<Register> }[] = [
  { name: 'events', describe: 'Stream cluster events (nodes, services, tasks, networks) until interrupted', load: async () => (await import('./commands/events.js')).eventsCommand },
  { name: 'web', describe: 'Serve a live, read-only web view of the cluster (nodes, tasks) until interrupted', load: async () => (await import('./commands/web.js')).webCommand },
  { name: 'node', describe: 'Manage nodes', load: group('node', async () => (await import('./commands/node.js')).nodeCommands, 'ls, inspect, update, promote, demote, rm') },
  { name: 'cluster', describe: 'Manage the cluster', load: group('cluster', async () => (await import('./commands/cluster.js')).clusterCommands, 'inspect, update, rotate-token, join-token, admin-cert') },
  {
    name: 'service',
    describe: 'Manage services',
    load: group('service', async () => (await import('./commands/service.js')).serviceCommands, 'create, update, rollback, scale, ls, inspect, ps, rm, logs'),
  },
  { name: 'task', describe: 'Inspect tasks', load: group('task', async () => (await import('./commands/task.js')).taskCommands, 'ls, inspect') },
  { name: 'network', describe: 'Manage overlay networks', load: group('network', async () => (await import('./commands/network.js')).networkCommands, 'create, ls, inspect, rm') },
  { name: 'stack', describe: 'Manage stacks (Compose files)', load: group('stack', async () => (await import('./commands/stack.js')).stackCommands, 'deploy, ls, services, ps, rm') },
  { name: 'swarm', describe: 'Autolock: the unlock key, unlocking a manager', load: group('swarm', async () => (await import('./commands/swarm.js')).swarmCommands, 'unlock-key, unlock') },
  { name: 'volume', describe: 'List named volumes across nodes', load: group('volume', async () => (await import('./commands/volume.js')).volumeCommands, 'ls') },
  { name: 'secret', describe: 'Manage secrets', load: dataGroup('secret') },
  { name: 'config', describe: 'Manage configs', load: dataGroup('config') },
  {
    name: 'local',
    describe: 'A local multi-host cluster on this machine (network namespaces)',
    load: group('local', async () => (await import('./commands/local.js')).localCommands, 'up, add, stop, start, down, ls'),
  },
];

export function globalOptions<T>(y: Argv<T>) {
  return y
    .option('host', {
      alias: 'H',
      type: 'string',
      describe: `Manager to talk to: unix:///path/control.sock, or IP:PORT with --tlscacert/--tlscert/--tlskey (default: the context file, else ${DEFAULT_HOST})`,
    })
    .option('tlscacert', { type: 'string', describe: 'Cluster CA certificate (PEM), for --host IP:PORT' })
    .option('tlscert', { type: 'string', describe: 'Admin client certificate (PEM)' })
    .option('tlskey', { type: 'string', describe: 'Admin client key (PEM)' })
    .option('context', { type: 'string', describe: 'Context file (default $SWARMCTL_CONTEXT or ~/.swarmctl/context.json)' })
    .option('format', { type: 'string', choices: FORMATS, default: DEFAULT_FORMAT, describe: 'Output format' });
}

/** Parses and runs one swarmctl command line; resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code = 0;
  const env: CommandEnv = {
    io,
    action: (fn) => async (a) => {
      try {
        await fn(a);
      } catch (e) {
        err(io, `swarmctl: ${e instanceof UsageError ? e.message : errorLine(e)}`);
        if (e instanceof UsageError) err(io, `See 'swarmctl ${e.command} --help'.`);
        code = 1;
      }
    },
    withControl: async (g, fn, deadlineMs) => {
      const [{ resolveConnection }, { connectControl }] = await Promise.all([import('./client/connection.js'), import('./client/control-client.js')]);
      const conn = await resolveConnection(g, io.env);
      const control = connectControl(conn, deadlineMs);
      try {
        return await fn(control, conn);
      } finally {
        control.close();
      }
    },
  };
  const base = globalOptions(yargs().scriptName('swarmctl')).usage('swarmctl <command>\n\nManage a swarmd cluster through its control API.');
  // Load the modules of the commands this command line may run (any word that names one: a
  // flag's value that happens to be a command name only loads a module more); the others are
  // registered by name and description alone, for --help and "did you mean".
  const named = new Set(argv);
  let y: Argv<GlobalArgs> = base;
  for (const c of COMMANDS) y = named.has(c.name) ? (await c.load())(y, env, c.describe) : y.command(c.name, c.describe);
  y = y
    .demandCommand(1, 'give a command (node, cluster, service, task, network, stack, secret, config, events, web, local)')
    .strict()
    .recommendCommands()
    .help()
    .alias('help', 'h')
    .version(false)
    .wrap(Math.min(120, (io.stdout as { columns?: number }).columns ?? 100))
    .exitProcess(false);
  let reported = false;
  await new Promise<void>((resolve) => {
    void y
      .parseAsync([...argv], {}, (e: Error | undefined | null, _a: unknown, output: string) => {
        if (e) {
          reported = true;
          err(io, `swarmctl: ${e.message}`);
          err(io, `See 'swarmctl ${argv.filter((x) => !x.startsWith('-')).slice(0, 2).join(' ')} --help'.`.replace('  ', ' '));
          code = 1;
        } else if (output) {
          io.stdout.write(output.endsWith('\n') ? output : output + '\n');
        }
      })
      .catch((e: unknown) => {
        // A validation failure reaches both the callback and here: report it once.
        if (reported) return;
        err(io, `swarmctl: ${errorLine(e)}`);
        code = 1;
      })
      .finally(resolve);
  });
  return code;
}
