import yargs, { type Argv } from 'yargs';
import { errorLine, UsageError } from './errors.js';
import { err, type CliIo } from './io.js';
import { FORMATS, type OutputFormat } from './format.js';
import { resolveConnection, DEFAULT_HOST, type Connection } from './client/connection.js';
import { connectControl, type Control } from './client/control-client.js';
import { nodeCommands } from './commands/node.js';
import { clusterCommands } from './commands/cluster.js';
import { localCommands } from './commands/local.js';
import { serviceCommands } from './commands/service.js';
import { taskCommands } from './commands/task.js';
import { networkCommands } from './commands/network.js';
import { eventsCommand } from './commands/events.js';
import { webCommand } from './commands/web.js';
import { stackCommands } from './commands/stack.js';
import { dataCommands } from './commands/secret.js';
import { swarmCommands } from './commands/swarm.js';
import { volumeCommands } from './commands/volume.js';

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
  const y = webCommand(eventsCommand(base, env), env)
    .command('node', 'Manage nodes', (yy) => nodeCommands(yy, env).demandCommand(1, 'node: give a subcommand (ls, inspect, update, promote, demote, rm)'))
    .command('cluster', 'Manage the cluster', (yy) =>
      clusterCommands(yy, env).demandCommand(1, 'cluster: give a subcommand (inspect, update, rotate-token, join-token, admin-cert)'),
    )
    .command('service', 'Manage services', (yy) =>
      serviceCommands(yy, env).demandCommand(1, 'service: give a subcommand (create, update, rollback, scale, ls, inspect, ps, rm, logs)'),
    )
    .command('task', 'Inspect tasks', (yy) => taskCommands(yy, env).demandCommand(1, 'task: give a subcommand (ls, inspect)'))
    .command('network', 'Manage overlay networks', (yy) => networkCommands(yy, env).demandCommand(1, 'network: give a subcommand (create, ls, inspect, rm)'))
    .command('stack', 'Manage stacks (Compose files)', (yy) => stackCommands(yy, env).demandCommand(1, 'stack: give a subcommand (deploy, ls, services, ps, rm)'))
    .command('swarm', 'Autolock: the unlock key, unlocking a manager', (yy) => swarmCommands(yy, env).demandCommand(1, 'swarm: give a subcommand (unlock-key, unlock)'))
    .command('volume', 'List named volumes across nodes', (yy) => volumeCommands(yy, env).demandCommand(1, 'volume: give a subcommand (ls)'))
    .command('secret', 'Manage secrets', (yy) => dataCommands('secret', yy, env).demandCommand(1, 'secret: give a subcommand (create, ls, inspect, rm)'))
    .command('config', 'Manage configs', (yy) => dataCommands('config', yy, env).demandCommand(1, 'config: give a subcommand (create, ls, inspect, rm)'))
    .command('local', 'A local multi-host cluster on this machine (network namespaces)', (yy) =>
      localCommands(yy, env).demandCommand(1, 'local: give a subcommand (up, add, stop, start, down, ls)'),
    )
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
