import { networkInterfaces } from 'node:os';
import { loadConfig, z } from '@swarmd/common/config';
import { invalidArgument } from '@swarmd/common/errors';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/, 'expected IP:PORT (or HOST:PORT, [IPv6]:PORT)');

/** swarmd's settings: a YAML config file may set each of them (camelCase keys); flags win. */
export const SwarmdConfigSchema = z
  .object({
    stateDir: z.string().min(1).default('/var/lib/swarmd'),
    /** Default: what the state dir was set up with, else 0.0.0.0:4242. */
    listenAddr: hostPort.optional(),
    /** Default: the listen address when it names an IP, else the first non-loopback address + the listen port. */
    advertiseAddr: hostPort.optional(),
    hostname: z.string().min(1).optional(),
    labels: z.record(z.string(), z.string()).default({}),
    /** join: the token (SWMTKN-1-...). */
    token: z.string().optional(),
    forceNewCluster: z.boolean().default(false),
    /** Registries pulled from over plain HTTP (host:port or a CIDR); loopback ones always are. */
    insecureRegistries: z.array(z.string().min(1)).default([]),
    /** Run tasks on this node (the agent's executor over runc); off only for control-plane tests. */
    runTasks: z.boolean().default(true),
    logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
    /** init: the cluster's node certificate lifetime (default 90 days; at least 1 hour). */
    nodeCertExpiryMs: z.number().int().positive().optional(),
    /** init: the agents' heartbeat period (default: automatic, 1 s up to 200 nodes, at most 5 s). */
    heartbeatPeriodMs: z.number().int().positive().optional(),
    /** init: where overlay networks without --subnet take theirs (default 10.0.0.0/8). */
    defaultAddrPool: z.array(z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'an IPv4 CIDR such as 10.20.0.0/16')).optional(),
    /** init: the prefix length of each subnet taken from the pool (default 24). */
    defaultAddrPoolMaskLength: z.number().int().min(8).max(29).optional(),
    raft: z
      .object({
        tickMs: z.number().int().positive(),
        electionTicks: z.number().int().min(2),
        heartbeatTicks: z.number().int().positive(),
        snapshotEvery: z.number().int().positive(),
      })
      .partial()
      .strict()
      .default({}),
    /** Where Prometheus metrics are served (http://HOST:PORT/metrics); unset: not served. */
    metricsAddr: hostPort.optional(),
    /** Where the cluster's store lives (init; default raft). join takes it from the cluster; run from the state dir. */
    store: z.enum(['raft', 'etcd']).optional(),
    /** --store etcd: etcd's client URLs (http(s)://HOST:PORT), comma-separated on the command line. */
    etcdEndpoints: z.array(z.string().min(1)).optional(),
    /** --store etcd: PEM files: the CA of etcd's server certificate, this manager's client certificate and key. */
    etcdCacert: z.string().min(1).optional(),
    etcdCert: z.string().min(1).optional(),
    etcdKey: z.string().min(1).optional(),
    /** --store etcd: the key prefix of the cluster (default /swarmd/CLUSTER_ID). */
    etcdPrefix: z.string().min(1).optional(),
    /** Seconds between checks of the certificate's renewal time (default 60 s). */
    renewalCheckMs: z.number().int().positive().default(60_000),
  })
  .strict();

export type SwarmdConfig = z.infer<typeof SwarmdConfigSchema>;

/** Loads the config file (if any) overlaid by flags; INVALID_ARGUMENT naming every bad field. */
export async function loadSwarmdConfig(file: string | undefined, flags: Partial<Record<keyof SwarmdConfig, unknown>>): Promise<SwarmdConfig> {
  return loadConfig(SwarmdConfigSchema, { ...(file ? { file } : {}), overrides: flags });
}

/** "k=v" flags as a map; INVALID_ARGUMENT for anything else. */
export function parseLabels(list: readonly string[] | undefined): Record<string, string> | undefined {
  if (!list?.length) return undefined;
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw invalidArgument(`--label ${kv}: expected key=value`);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

/** The address others reach this node at: explicit, else the listen IP, else the first non-loopback IPv4. */
export function defaultAdvertiseAddr(listenAddr: string): string {
  const i = listenAddr.lastIndexOf(':');
  const host = listenAddr.slice(0, i);
  const port = listenAddr.slice(i + 1);
  if (host && host !== '0.0.0.0' && host !== '[::]' && host !== '::') return listenAddr;
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return `${a.address}:${port}`;
  }
  return `127.0.0.1:${port}`;
}
