#!/usr/bin/env node
/**
 * swarmd: the daemon of every node (docs/cluster.md). `init` creates a cluster, `join` enters
 * one with a token, `run` resumes from the state dir. JSON logs on stderr; SIGTERM/SIGINT stop it
 * cleanly (agent, manager, WAL); containers keep running.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { createLogger } from '@swarmd/common/logger';
import { describeError, isSwarmError } from '@swarmd/common/errors';
import { readFirstLine } from '@swarmd/common/input';
import { loadSwarmdConfig, parseLabels, type SwarmdConfig } from './config.js';
import { startDaemon, type SwarmdCommand } from './daemon.js';
import { cleanupNode } from './cleanup.js';
import { unlockLocalManager } from './unlock.js';

interface Args {
  'state-dir'?: string;
  'listen-addr'?: string;
  'advertise-addr'?: string;
  config?: string;
  'force-new-cluster'?: boolean;
  hostname?: string;
  label?: string[];
  'insecure-registry'?: string[];
  'default-addr-pool'?: string[];
  'default-addr-pool-mask-length'?: number;
  token?: string;
  'log-level'?: string;
  manager?: string;
  'metrics-addr'?: string;
  store?: string;
  'etcd-endpoints'?: string;
  'etcd-cacert'?: string;
  'etcd-cert'?: string;
  'etcd-key'?: string;
  'etcd-prefix'?: string;
}

// stderr carries JSON log lines only: no plain-text deprecation notices (e.g. grpc-js dialling
// an IP with TLS sets an IP as ServerName, DEP0123).
process.noDeprecation = true;

async function main(command: SwarmdCommand, a: Args): Promise<void> {
  let config: SwarmdConfig;
  try {
    config = await loadSwarmdConfig(a.config, {
      stateDir: a['state-dir'],
      listenAddr: a['listen-addr'],
      advertiseAddr: a['advertise-addr'],
      hostname: a.hostname,
      labels: parseLabels(a.label),
      insecureRegistries: a['insecure-registry'],
      defaultAddrPool: a['default-addr-pool'],
      defaultAddrPoolMaskLength: a['default-addr-pool-mask-length'],
      token: a.token,
      forceNewCluster: a['force-new-cluster'] || undefined,
      logLevel: a['log-level'],
      metricsAddr: a['metrics-addr'],
      store: a.store,
      etcdEndpoints: a['etcd-endpoints']?.split(',').map((e) => e.trim()),
      etcdCacert: a['etcd-cacert'],
      etcdCert: a['etcd-cert'],
      etcdKey: a['etcd-key'],
      etcdPrefix: a['etcd-prefix'],
    });
  } catch (err) {
    process.stderr.write(`swarmd: ${describeError(err)}\n`);
    process.exit(2);
  }
  const logger = createLogger({ format: 'json', level: config.logLevel, component: 'swarmd' });
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  let stopping = false;
  const shutdown = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal: sig });
    const force = setTimeout(() => {
      logger.error('clean shutdown took too long; exiting');
      process.exit(1);
    }, 20_000);
    force.unref();
    void (daemon?.stop() ?? Promise.resolve()).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error('shutdown failed', { error: describeError(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    daemon = await startDaemon({ command, config, ...(a.manager ? { joinAddr: a.manager } : {}), logger });
    if (stopping) await daemon.stop();
  } catch (err) {
    logger.error(`swarmd ${command} failed`, { error: describeError(err), code: isSwarmError(err) ? err.code : undefined });
    process.stderr.write(`swarmd ${command}: ${describeError(err)}\n`);
    process.exit(1);
  }
}

const common = (y: ReturnType<typeof yargs>) =>
  y
    .option('state-dir', { type: 'string', describe: 'state directory (default /var/lib/swarmd)' })
    .option('config', { type: 'string', describe: 'YAML config file (every flag may be set there, camelCase; flags win)' })
    .option('log-level', { type: 'string', choices: ['error', 'warn', 'info', 'debug'] })
    .option('metrics-addr', { type: 'string', describe: 'HOST:PORT to serve Prometheus metrics on (/metrics); off by default' });
const etcdFlags = (y: ReturnType<typeof yargs>) =>
  y
    .option('etcd-endpoints', { type: 'string', describe: "etcd's client URLs, comma-separated (--store etcd; join: instead of the cluster's)" })
    .option('etcd-cacert', { type: 'string', describe: "PEM file: the CA of etcd's server certificate" })
    .option('etcd-cert', { type: 'string', describe: "PEM file: this manager's etcd client certificate" })
    .option('etcd-key', { type: 'string', describe: "PEM file: this manager's etcd client key (never leaves this host)" });
const addrs = (y: ReturnType<typeof yargs>) =>
  y
    .option('listen-addr', { type: 'string', describe: 'IP:PORT to listen on (default 0.0.0.0:4242)' })
    .option('advertise-addr', { type: 'string', describe: 'IP:PORT other nodes reach this one at' })
    .option('hostname', { type: 'string' })
    .option('label', { type: 'string', array: true, describe: 'node label key=value (repeatable)' })
    .option('insecure-registry', { type: 'string', array: true, nargs: 1, describe: 'registry (host:port or CIDR) pulled from over plain HTTP (repeatable)' });

await yargs(hideBin(process.argv))
  .scriptName('swarmd')
  .command(
    'init',
    'create a cluster (this node is its first manager) and run',
    (y) =>
      etcdFlags(addrs(common(y)))
        .option('store', { type: 'string', describe: 'where the cluster store lives: raft (built in, the default) or etcd (external: --etcd-endpoints)' })
        .option('etcd-prefix', { type: 'string', describe: 'key prefix of the cluster in etcd (default /swarmd/CLUSTER_ID)' })
        .option('force-new-cluster', { type: 'boolean', describe: 'restart a former manager as the only one, keeping its state' })
        .option('default-addr-pool', { type: 'string', array: true, nargs: 1, describe: 'CIDR overlay networks take their subnets from (repeatable; default 10.0.0.0/8)' })
        .option('default-addr-pool-mask-length', { type: 'number', describe: 'prefix length of each subnet taken from the pool (default 24)' }),
    (a) => main('init', a as Args),
  )
  .command(
    'join <manager>',
    'join a cluster through a manager (IP:PORT) with a token, and run',
    (y) => etcdFlags(addrs(common(y))).option('store', { type: 'string', describe: 'etcd: refuse unless the cluster keeps its store in etcd' }).option('token', { type: 'string', describe: 'join token (SWMTKN-1-...)' }).positional('manager', { type: 'string' }),
    (a) => main('join', a as Args),
  )
  .command(
    'run',
    'resume from the state dir',
    (y) => etcdFlags(common(y)).option('store', { type: 'string', describe: 'the backend the state dir was made with (refused when it differs)' }).option('etcd-prefix', { type: 'string' }).option('force-new-cluster', { type: 'boolean', describe: 'restart this former manager as the only one, keeping its state' }).option('listen-addr', { type: 'string' }).option('advertise-addr', { type: 'string' }),
    (a) => main('run', a as Args),
  )
  .command(
    'cleanup',
    "remove this node's containers and task networking (swarmd must be stopped)",
    (y) => y.option('state-dir', { type: 'string', describe: 'state directory (default /var/lib/swarmd)' }),
    async (a) => {
      const logger = createLogger({ format: 'json', component: 'swarmd' });
      try {
        const r = await cleanupNode(String(a['state-dir'] ?? '/var/lib/swarmd'), logger);
        process.stdout.write(`removed ${r.containers} containers\n`);
        if (r.failed.length) {
          process.stderr.write(`swarmd cleanup: could not remove: ${r.failed.join('; ')}\n`);
          process.exit(1);
        }
      } catch (err) {
        process.stderr.write(`swarmd cleanup: ${describeError(err)}\n`);
        process.exit(1);
      }
    },
  )
  .command(
    'unlock',
    'unlock this node\'s manager after a restart with autolock on (the unlock key on stdin)',
    (y) => y.option('state-dir', { type: 'string', describe: 'state directory (default /var/lib/swarmd)' }),
    async (a) => {
      try {
        await unlockLocalManager(String(a['state-dir'] ?? '/var/lib/swarmd'), await readFirstLine(process.stdin));
        process.stdout.write('manager unlocked\n');
      } catch (err) {
        process.stderr.write(`swarmd unlock: ${describeError(err)}\n`);
        process.exit(1);
      }
    },
  )
  .demandCommand(1)
  .strict()
  .help()
  .parseAsync();
