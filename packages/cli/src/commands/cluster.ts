import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { NodeRole } from '@swarmd/proto/gen/swarm/types';
import { ClusterSpec } from '@swarmd/proto/gen/swarm/specs';
import { type Cluster } from '@swarmd/proto/gen/swarm/objects';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { theCluster, type Control } from '../client/control-client.js';
import { retryOnConflict } from '../client/rpc.js';
import { clusterDetails, clusterJson, durationText, heartbeatPeriodText, json, parseDuration } from '../format.js';
import { out } from '../io.js';
import { UsageError } from '../errors.js';
import { createAdminKeyAndCsr } from '../admin-csr.js';

export interface ClusterChange {
  heartbeatPeriodMs?: number;
  certExpiryMs?: number;
  taskHistoryLimit?: number;
  autolock?: boolean;
}

/** The new spec of the cluster after a change (pure). */
export function applyClusterChange(c: Cluster, ch: ClusterChange): ClusterSpec {
  const s = c.spec;
  return ClusterSpec.fromPartial({
    annotations: s?.annotations ?? {},
    raft: s?.raft,
    dispatcher: { heartbeatPeriodMs: ch.heartbeatPeriodMs ?? s?.dispatcher?.heartbeatPeriodMs },
    caConfig: { nodeCertExpiryMs: ch.certExpiryMs ?? s?.caConfig?.nodeCertExpiryMs },
    orchestration: { taskHistoryRetentionLimit: ch.taskHistoryLimit ?? s?.orchestration?.taskHistoryRetentionLimit },
    autolockManagers: ch.autolock ?? s?.autolockManagers ?? false,
  });
}

const durationOption = (flag: string, auto = false) => (v: string | undefined) => {
  if (v === undefined) return undefined;
  if (auto && v === 'auto') return 0;
  const ms = parseDuration(v);
  if (ms === undefined || ms <= 0) throw new Error(`--${flag} ${v}: expected a duration such as 5s, 1m30s, 250ms, 90d${auto ? ', or auto' : ''}`);
  return ms;
};

/** Read, change, write; a write that raced another (ABORTED) is retried on fresh data. */
export async function updateCluster(c: Control, change: ClusterChange, rotate: { worker?: boolean; manager?: boolean; unlockKey?: boolean } = {}): Promise<Cluster> {
  return retryOnConflict(async () => {
    const cur = await theCluster(c);
    return c.updateCluster({
      clusterId: cur.id,
      version: cur.meta?.version ?? 0,
      spec: applyClusterChange(cur, change),
      rotateWorkerToken: rotate.worker,
      rotateManagerToken: rotate.manager,
      rotateUnlockKey: rotate.unlockKey,
    });
  });
}

/** What `cluster update --autolock=true` and `swarm unlock-key` print around the key (Docker's words). */
export function unlockKeyText(key: string): string {
  return [
    'To unlock a swarm manager after it restarts, run the `swarmctl swarm unlock`',
    'command and provide the following key:',
    '',
    `    ${key}`,
    '',
    'Remember to store this key in a password manager, since without it you',
    'will not be able to restart the manager.',
  ].join('\n');
}

/** Where new nodes join: the leader's address, else any manager's. */
async function joinAddress(c: Control): Promise<string> {
  const managers = (await c.listNodes()).filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER && n.managerStatus?.addr);
  const leader = managers.find((n) => n.managerStatus?.leader) ?? managers[0];
  return leader?.managerStatus?.addr ?? 'MANAGER_IP:PORT';
}

export function clusterCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      'inspect',
      'Show the cluster',
      (yy) => yy,
      env.action(async (a: GlobalArgs) => {
        await env.withControl(a, async (c) => {
          const cl = await theCluster(c);
          out(io, a.format === 'json' ? json(clusterJson(cl)) : clusterDetails(cl));
        });
      }),
    )
    .command(
      'update',
      'Change cluster settings',
      (yy) =>
        yy
          .option('heartbeat-period', { alias: 'dispatcher-heartbeat', type: 'string', coerce: durationOption('heartbeat-period', true), describe: 'Agent heartbeat period, e.g. 5s (a node is down after 3 missed), or auto (1s up to 200 nodes, then longer, at most 5s)' })
          .option('cert-expiry', { type: 'string', coerce: durationOption('cert-expiry'), describe: 'Node certificate validity, e.g. 90d' })
          .option('task-history-limit', { type: 'number', describe: 'Old tasks kept per slot' })
          .option('autolock', { type: 'boolean', describe: 'Lock managers after a restart: --autolock=true prints the unlock key; --autolock=false unwraps again' }),
      env.action(async (a: GlobalArgs & { 'heartbeat-period'?: number; 'cert-expiry'?: number; 'task-history-limit'?: number; autolock?: boolean }) => {
        const lim = a['task-history-limit'];
        if (lim !== undefined && (!Number.isInteger(lim) || lim < 0)) {
          throw new UsageError(`--task-history-limit ${String(lim)}: expected a whole number ≥ 0`, 'cluster update');
        }
        if (a['heartbeat-period'] === undefined && a['cert-expiry'] === undefined && lim === undefined && a.autolock === undefined) {
          throw new UsageError('cluster update: nothing to change (give --heartbeat-period, --cert-expiry, --task-history-limit or --autolock)', 'cluster update');
        }
        await env.withControl(a, async (c) => {
          const cl = await updateCluster(c, {
            heartbeatPeriodMs: a['heartbeat-period'],
            certExpiryMs: a['cert-expiry'],
            taskHistoryLimit: a['task-history-limit'],
            autolock: a.autolock,
          });
          // As `docker swarm update --autolock=true`: the key, once, with what it is for.
          const unlockKey = a.autolock ? await c.getUnlockKey() : '';
          if (a.format === 'json') out(io, json({ ...(clusterJson(cl) as object), ...(unlockKey ? { unlockKey } : {}) }));
          else if (unlockKey) out(io, `Cluster ${cl.id} updated: autolock on.\n${unlockKeyText(unlockKey)}`);
          else
            out(
              io,
              `Cluster ${cl.id} updated: heartbeat period ${heartbeatPeriodText(cl.spec?.dispatcher?.heartbeatPeriodMs)}, certificate expiry ${durationText(cl.spec?.caConfig?.nodeCertExpiryMs)}, task history limit ${cl.spec?.orchestration?.taskHistoryRetentionLimit ?? 0}.`,
            );
        });
      }),
    )
    .command(
      'rotate-token',
      'Replace join tokens (both unless --worker or --manager)',
      (yy) =>
        yy
          .option('worker', { type: 'boolean', default: false, describe: 'Rotate the worker token' })
          .option('manager', { type: 'boolean', default: false, describe: 'Rotate the manager token' }),
      env.action(async (a: GlobalArgs & { worker: boolean; manager: boolean }) => {
        const both = !a.worker && !a.manager;
        await env.withControl(a, async (c) => {
          const cl = await updateCluster(c, {}, { worker: both || a.worker, manager: both || a.manager });
          const rotated = [...(both || a.worker ? ['worker'] : []), ...(both || a.manager ? ['manager'] : [])];
          if (a.format === 'json') out(io, json({ rotated, joinTokens: cl.rootCa?.joinTokens }));
          else out(io, `Rotated the ${rotated.join(' and ')} join token${rotated.length > 1 ? 's' : ''}.`);
        });
      }),
    )
    .command(
      'join-token <role>',
      'Show the command that joins a new worker or manager',
      (yy) =>
        yy
          .positional('role', { type: 'string', choices: ['worker', 'manager'], demandOption: true })
          .option('rotate', { type: 'boolean', default: false, describe: 'Rotate the token first' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only the token' }),
      env.action(async (a: GlobalArgs & { role: string; rotate: boolean; quiet: boolean }) => {
        const worker = a.role === 'worker';
        await env.withControl(a, async (c) => {
          const cl = a.rotate ? await updateCluster(c, {}, { worker, manager: !worker }) : await theCluster(c);
          const token = (worker ? cl.rootCa?.joinTokens?.worker : cl.rootCa?.joinTokens?.manager) ?? '';
          if (!token) throw new Error(`the manager returned no ${a.role} join token`);
          const addr = await joinAddress(c);
          if (a.format === 'json') out(io, json({ role: a.role, token, managerAddr: addr }));
          else if (a.quiet) out(io, token);
          else out(io, `To add a ${a.role} to this cluster, run on the new host:\n\n    swarmd join --token ${token} ${addr}\n`);
        });
      }),
    )
    .command(
      'admin-cert',
      'Get an admin client certificate for remote swarmctl (--host IP:PORT)',
      (yy) => yy.option('out', { type: 'string', demandOption: true, describe: 'Directory for ca.pem, cert.pem, key.pem' }),
      env.action(async (a: GlobalArgs & { out: string }) => {
        const dir = resolve(a.out);
        const { keyPem, csrPem } = await createAdminKeyAndCsr();
        await env.withControl(a, async (c) => {
          const r = await c.issueAdminCertificate(csrPem);
          const addr = await joinAddress(c).catch(() => 'MANAGER_IP:PORT');
          await mkdir(dir, { recursive: true, mode: 0o700 });
          await writeFile(join(dir, 'key.pem'), keyPem, { mode: 0o600 });
          await chmod(join(dir, 'key.pem'), 0o600);
          await writeFile(join(dir, 'cert.pem'), r.certificatePem);
          await writeFile(join(dir, 'ca.pem'), r.caCertPem);
          const files = { tlscacert: join(dir, 'ca.pem'), tlscert: join(dir, 'cert.pem'), tlskey: join(dir, 'key.pem') };
          if (a.format === 'json') out(io, json({ ...files, managerAddr: addr }));
          else out(io, `Wrote ${dir}/{ca,cert,key}.pem. Use them with:\n\n    swarmctl --host ${addr} --tlscacert ${files.tlscacert} --tlscert ${files.tlscert} --tlskey ${files.tlskey} node ls\n`);
        });
      }),
    );
}
