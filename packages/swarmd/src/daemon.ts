import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { SwarmError, ErrorCode, describeError } from '@swarmd/common/errors';
import { startProgramsThroughShell } from '@swarmd/common/exec';
import type { Logger } from '@swarmd/common/logger';
import { NodeRole } from '@swarmd/proto';
// A worker loads only the manager package's node-side helpers (its certificates and state files);
// the manager itself (Raft, the store, the control API, etcd3...) is imported when this node
// starts one: at init, join or run as a manager, or when promoted (managerModule below).
import type { Manager, ManagerOptions } from '@swarmd/manager';
import type { TlsMaterial } from '@swarmd/manager/ca/grpc-auth';
import { writeFileAtomic } from '@swarmd/manager/ca/files';
import { renewalTime } from '@swarmd/manager/ca/renewal';
import { certificateFacts } from '@swarmd/manager/manager/tls';
import { loadStateDirCerts, saveStateDirCerts } from '@swarmd/manager/manager/node-certs';
import { isEncryptedKeyPem } from '@swarmd/manager/secrets/tls-key';
import { startAgent, type Agent } from '@swarmd/node-agent';
import type { SwarmdConfig } from './config.js';
import { defaultAdvertiseAddr } from './config.js';
import { joinWithToken, renewCertificate } from './certs.js';
import { startNodeWorker } from './worker.js';
import { storeOptionsOf, type SavedEtcdFlags } from './store.js';

export type SwarmdCommand = 'init' | 'join' | 'run';

/** DIR/swarmd.json: how this node was set up, so `swarmd run` needs no flags. */
export interface NodeStateFile {
  listenAddr: string;
  advertiseAddr: string;
  /** Managers to reach first (the one joined through, and those it named). */
  managers: string[];
  hostname?: string;
  labels?: Record<string, string>;
  insecureRegistries?: string[];
  /** The etcd flags of an etcd-backed manager (file paths, never their contents). */
  etcd?: SavedEtcdFlags;
}

export interface DaemonOptions {
  command: SwarmdCommand;
  config: SwarmdConfig;
  /** join: the manager to join through (IP:PORT). */
  joinAddr?: string;
  logger: Logger;
  /** Where init prints the join commands (stdout). */
  print?: (line: string) => void;
  /** Extra manager options (tests). */
  managerOptions?: Partial<ManagerOptions>;
}

export interface Daemon {
  readonly nodeId: string;
  manager(): Manager | undefined;
  agent(): Agent | undefined;
  tls(): TlsMaterial;
  /** Renews the certificate now (also what a role change triggers). */
  renewNow(): Promise<void>;
  stop(): Promise<void>;
}

const STATE_FILE = 'swarmd.json';

/**
 * V8's optimizing (TurboFan) and baseline (Sparkplug) compilers, which the swarmd command turns
 * off at start (src/swarmd.cts: an idle worker holds less memory without them) and a manager's
 * work (Raft, the store, the scheduler) needs: back on from here on, for functions hot from now.
 */
function fullJit(): void {
  setFlagsFromString('--opt');
  setFlagsFromString('--sparkplug');
  if (idleGc) clearInterval(idleGc);
  idleGc = undefined;
}

/** How often a worker's process collects its whole heap (SWARMD_IDLE_GC_MS; 0: never). */
const IDLE_GC_MS = Number(process.env.SWARMD_IDLE_GC_MS ?? 120_000);
let idleGc: NodeJS.Timeout | undefined;

/**
 * A worker's periodic full GC (stopped once the process runs a manager). An idle agent allocates
 * a little garbage per heartbeat; scavenges promote it, and V8 starts no full collection until
 * the old generation reaches its limit (none in 20 minutes of an idle worker), so the RSS crept
 * up by ~5 MiB in 25 minutes. A full collection of a worker's ~15 MiB heap takes a few ms.
 */
function startIdleGc(): void {
  if (idleGc || !(IDLE_GC_MS > 0) || process.env.SWARMD_LEAN_JIT === '0') return;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  idleGc = setInterval(gc, IDLE_GC_MS).unref();
}

/** The manager package, loaded the first time this process runs a manager (with the full JIT). */
const managerModule = () => {
  fullJit();
  return import('@swarmd/manager');
};
type ManagerModule = Awaited<ReturnType<typeof managerModule>>;

async function readNodeState(dir: string): Promise<NodeStateFile | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as NodeStateFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SwarmError(ErrorCode.DATA_LOSS, `cannot read ${join(dir, STATE_FILE)}: ${describeError(err)}`);
  }
}

async function writeNodeState(dir: string, s: NodeStateFile): Promise<void> {
  await writeFileAtomic(join(dir, STATE_FILE), JSON.stringify(s, null, 2) + '\n', 0o600);
}

/**
 * The composition root of a node: the manager (on manager nodes) and the node agent, the
 * certificate renewal loop, and role changes (a worker whose renewed certificate says manager
 * starts a manager and joins, into Raft or onto the etcd store; a demoted manager stops its manager and stays a worker).
 */
export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  const cfg = o.config;
  const log = o.logger;
  const dir = cfg.stateDir;
  // Every program swarmd runs (mount, ip, nft, runc...) is started by a small shell: a fork of
  // this 100-200 MB process costs 7-17 ms of its main thread's CPU each (common/shell-spawner.ts).
  // SWARMD_DIRECT_SPAWN=1 forks them from swarmd as before.
  startProgramsThroughShell(process.env.SWARMD_DIRECT_SPAWN !== '1');
  const dirExisted = existsSync(dir);
  // Bad store flags are refused before anything is written.
  const store = await storeOptionsOf(o.command, cfg, existsSync(join(dir, STATE_FILE)) ? (await readNodeState(dir))?.etcd : undefined);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing = await loadStateDirCerts(dir);
  const saved = await readNodeState(dir);
  const listenAddr = cfg.listenAddr ?? saved?.listenAddr ?? '0.0.0.0:4242';
  const advertiseAddr = cfg.advertiseAddr ?? saved?.advertiseAddr ?? defaultAdvertiseAddr(listenAddr);
  const hostname = cfg.hostname ?? saved?.hostname;
  const labels = Object.keys(cfg.labels).length ? cfg.labels : (saved?.labels ?? {});
  const insecureRegistries = cfg.insecureRegistries.length ? cfg.insecureRegistries : (saved?.insecureRegistries ?? []);
  let command = o.command;
  if (command === 'init' && existing && cfg.forceNewCluster) command = 'run';
  if (command !== 'run' && existing) {
    throw new SwarmError(ErrorCode.ALREADY_EXISTS, `${dir} already belongs to a cluster (it has certificates): use "swarmd run" to resume it`);
  }
  const managerBase = (m: ManagerModule) =>
    ({
      stateDir: dir,
      listenAddr,
      advertiseAddr,
      logger: log,
      ...(hostname ? { hostname } : {}),
      labels,
      raft: cfg.raft,
      ...(store.options ? { store: store.options } : {}),
      // The control API pins images by digest; the local cluster's registry is plain HTTP.
      services: [(ctx) => m.createManagerApi({ ...ctx, insecureRegistries })],
      ...o.managerOptions,
    }) satisfies Partial<ManagerOptions>;
  /** Starts this node's manager (the manager package is loaded here, the first time). */
  const launchManager = async (how: Pick<ManagerOptions, 'bootstrap'> & Partial<ManagerOptions>): Promise<Manager> => {
    const m = await managerModule();
    return m.startManager({ ...managerBase(m), ...how });
  };

  let tls: TlsMaterial;
  let manager: Manager | undefined;
  let managers: string[];
  if (command === 'init') {
    try {
      manager = await launchManager({
        bootstrap: 'init',
        clusterSpec: {
          ...(cfg.nodeCertExpiryMs ? { nodeCertExpiryMs: cfg.nodeCertExpiryMs } : {}),
          ...(cfg.heartbeatPeriodMs ? { heartbeatPeriodMs: cfg.heartbeatPeriodMs } : {}),
        },
        addressPool: { pools: cfg.defaultAddrPool ?? [], subnetSize: cfg.defaultAddrPoolMaskLength ?? 0 },
      });
    } catch (err) {
      // A refused init leaves no state dir behind when it made one (and wrote nothing in it).
      if (!dirExisted) await rmdirIfEmpty(dir);
      throw err;
    }
    tls = manager.tls();
    managers = [advertiseAddr];
    const tokens = manager.joinTokens();
    const print = o.print ?? ((l: string) => process.stdout.write(l + '\n'));
    print(`Swarm initialized: this node (${manager.nodeId}) is now a manager of cluster ${manager.clusterId}.`);
    print('');
    print('To add a worker to this cluster, run:');
    print(`    swarmd join --token ${tokens?.worker ?? '?'} ${advertiseAddr}`);
    print('');
    print('To add a manager to this cluster, run:');
    print(`    swarmd join --token ${tokens?.manager ?? '?'} ${advertiseAddr}`);
  } else if (command === 'join') {
    if (!o.joinAddr) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'swarmd join: the address of a manager (IP:PORT) is required');
    if (!cfg.token) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'swarmd join: --token is required');
    const issued = await joinWithToken({ managerAddr: o.joinAddr, token: cfg.token, advertiseAddr, logger: log });
    tls = issued.tls;
    await saveStateDirCerts(dir, tls);
    managers = [o.joinAddr, ...issued.managerAddrs.filter((a) => a !== o.joinAddr)];
    log.info('joined the cluster', { nodeId: issued.nodeId, role: issued.role });
    if (issued.role === 'swarm-manager') {
      manager = await launchManager({ bootstrap: 'join', join: { leaderAddr: o.joinAddr }, tls });
    }
  } else {
    if (!existing) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${dir}/certs holds no certificates: run "swarmd init" or "swarmd join" first`);
    tls = existing;
    managers = saved?.managers ?? [];
    if (certificateFacts(tls.certPem).role === 'swarm-manager') {
      // With its TLS key encrypted (autolock) the manager waits for its unlock key first, and so
      // does everything below (the agent too: the node's whole identity is locked).
      const member = await (await managerModule()).readMemberFile(join(dir, 'raft'));
      manager = member
        ? await launchManager({ bootstrap: 'resume', tls, forceNewCluster: cfg.forceNewCluster })
        : await launchManager({ bootstrap: 'join', join: { leaderAddr: managers[0] ?? advertiseAddr }, tls });
      tls = manager.tls();
    } else if (isEncryptedKeyPem(tls.keyPem)) {
      throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${dir}/certs/node-key.pem is encrypted (autolock) but the certificate is a worker's: a worker's key is never encrypted; rejoin the node (swarmd join)`);
    }
  }
  await writeNodeState(dir, { listenAddr, advertiseAddr, managers, ...(hostname ? { hostname } : {}), labels, insecureRegistries, ...(store.save ? { etcd: store.save } : {}) });
  await writeFile(join(dir, 'swarmd.pid'), `${process.pid}\n`);

  const nodeId = certificateFacts(tls.certPem).nodeId;
  const agentTls = (t: TlsMaterial) => ({ keyPem: t.keyPem, certPem: t.certPem, caPem: t.caCertPem });
  const agent = await startAgent({
    stateDir: dir,
    managers: manager ? [advertiseAddr, ...managers.filter((a) => a !== advertiseAddr)] : managers,
    tls: agentTls(tls),
    ...(hostname ? { hostname } : {}),
    labels,
    logger: log.child({ component: 'agent' }),
  });
  // What the Raft peers of this host's manager cannot tell (its state disk refusing writes):
  // heartbeats carry it to the leader, which shows it in `node ls`.
  agent.reportManagerProblem(() => manager?.problem());
  if (!manager) startIdleGc();
  // The worker side: assignments → a task manager per task over the runtime (runc + conmon).
  const worker = cfg.runTasks ? await startNodeWorker({ stateDir: dir, agent, insecureRegistries, advertiseAddr, ...(hostname ? { hostname } : {}), logger: log }) : undefined;

  // Prometheus metrics (--metrics-addr): off unless asked for.
  let metricsServer: Awaited<ReturnType<typeof import('./metrics.js').serveMetrics>> | undefined;
  if (cfg.metricsAddr) {
    // prom-client and the gauges are loaded only when metrics are asked for.
    const { registerStateMetrics, serveMetrics } = await import('./metrics.js');
    registerStateMetrics({ manager: () => manager, containers: () => (worker ? worker.containers.list() : undefined), hostname: hostname ?? osHostname() });
    try {
      metricsServer = await serveMetrics(cfg.metricsAddr, log);
    } catch (err) {
      await worker?.stop();
      await agent.stop();
      await manager?.stop();
      throw err;
    }
  }

  const stop = new AbortController();
  let renewing: Promise<void> | undefined;
  let wake: (() => void) | undefined;

  // Joins as a manager: into Raft, or (etcd-backed cluster) onto the store the join answer names,
  // with this node's own etcd client certificate if etcd asks for one (--etcd-cert/--etcd-key at
  // join or run, kept in swarmd.json).
  const startManagerAfterPromotion = async (): Promise<void> => {
    const leader = [...agent.managers(), ...managers].find((a) => a !== advertiseAddr);
    if (!leader) throw new SwarmError(ErrorCode.UNAVAILABLE, 'promoted, but no manager address is known to join through');
    log.info('promoted to manager: starting the manager and joining', { through: leader });
    await rm(join(dir, 'raft'), { recursive: true, force: true });
    manager = await launchManager({ bootstrap: 'join', join: { leaderAddr: leader }, tls });
    watchRemoval(manager);
  };
  // A manager certificate but no manager (its start failed): tried again at each renewal and each
  // renewal check, with the reason logged each time.
  const promotionPending = (): boolean => !manager && !stop.signal.aborted && certificateFacts(tls.certPem).role === 'swarm-manager';
  const retryPromotion = async (): Promise<void> => {
    if (!promotionPending()) return;
    await startManagerAfterPromotion().catch((err: unknown) =>
      log.error('promoted to manager, but the manager cannot start (tried again at the next renewal check or restart)', { error: describeError(err) }),
    );
  };

  const stopManagerAfterDemotion = async (m: Manager): Promise<void> => {
    if (manager !== m) return;
    manager = undefined;
    log.warn('demoted: stopping the manager (this node stays a worker)');
    await m.stop();
    // A worker's key is never encrypted (autolock is for managers).
    await saveStateDirCerts(dir, tls);
    const to = await (await managerModule()).retireRaftDir(join(dir, 'raft'), Date.now()).catch(() => undefined);
    await rm(join(dir, 'control.sock'), { force: true });
    log.info('raft state retired', { to });
  };

  // A voter learns its demotion from its own store (Manager.removed) and must stay until the leader
  // has removed it from Raft (with two voters, the removal needs it); a learner is not counted, and
  // one that never received the store would never learn it: the session tells it instead.
  const demotionUnseen = (): boolean => {
    const r = manager?.raft;
    return !!manager && !!r && !r.status().confState.voters.includes(manager.raftId);
  };

  const watchRemoval = (m: Manager): void => {
    void m.removed.then(async () => {
      if (stop.signal.aborted) return;
      await stopManagerAfterDemotion(m);
      await renewNow().catch((err: unknown) => log.warn('renewal after demotion failed', { error: describeError(err) }));
    });
  };
  if (manager) watchRemoval(manager);

  async function renewOnce(): Promise<void> {
    const candidates = [...new Set([...(manager ? [advertiseAddr] : []), ...agent.managers(), ...managers])];
    let lastErr: Error | undefined;
    for (const addr of candidates) {
      try {
        const r = await renewCertificate({ managerAddr: addr, tls, advertiseAddr });
        const before = certificateFacts(tls.certPem).role;
        tls = r.tls;
        // A manager writes it encrypted while autolocked.
        if (manager) await manager.saveTls(tls);
        else await saveStateDirCerts(dir, tls);
        const roleChanged = before !== r.role;
        agent.updateTls(agentTls(tls), { reconnect: roleChanged });
        log.info('certificate renewed', { role: r.role, notAfter: new Date(certificateFacts(tls.certPem).notAfter).toISOString() });
        if (r.role === 'swarm-manager' && !manager) await retryPromotion();
        if (roleChanged && r.role === 'swarm-worker' && manager) await stopManagerAfterDemotion(manager);
        return;
      } catch (err) {
        lastErr = err instanceof Error ? err : new Error(describeError(err));
        log.warn('certificate renewal failed at one manager', { manager: addr, error: describeError(err) });
      }
    }
    throw lastErr ?? new SwarmError(ErrorCode.UNAVAILABLE, 'no manager to renew the certificate with');
  }

  function renewNow(): Promise<void> {
    renewing ??= renewOnce().finally(() => (renewing = undefined));
    return renewing;
  }

  // A role change shows up on the Node the session sends (the leader's store, whatever this node's
  // own manager holds): renew at once to get the new role, as SwarmKit's role manager does.
  agent.events.on('node', (n) => {
    const want = n.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER ? 'swarm-manager' : 'swarm-worker';
    const have = certificateFacts(tls.certPem).role;
    if (want === 'swarm-manager' && have !== want) {
      log.info('the cluster wants this node to be a manager: renewing the certificate');
      void renewNow().catch((err: unknown) => log.warn('renewal for a promotion failed', { error: describeError(err) }));
    } else if (have === 'swarm-manager' && n.role === NodeRole.NODE_ROLE_WORKER && want === 'swarm-worker' && demotionUnseen()) {
      // Demoted (role = worker) while this manager cannot see it: a learner that never received the
      // store learns nothing from it, and the leader stops talking to it once it leaves Raft. The
      // renewal gives a worker certificate, which stops the manager (renewOnce).
      log.warn('the cluster has demoted this node, which its own manager cannot see (not a voter): renewing the certificate');
      void renewNow().catch((err: unknown) => log.warn('renewal for a demotion failed', { error: describeError(err) }));
    }
  });

  // Renewal: at a random point between 50% and 80% of the certificate's life.
  const loop = (async () => {
    while (!stop.signal.aborted) {
      const due = renewalTime(tls.certPem, Math.random);
      const wait = Math.max(0, Math.min(due - Date.now(), cfg.renewalCheckMs));
      await new Promise<void>((r) => {
        const timer = setTimeout(r, wait);
        wake = () => {
          clearTimeout(timer);
          r();
        };
      });
      wake = undefined;
      if (stop.signal.aborted) break;
      await retryPromotion();
      if (Date.now() >= due) {
        await renewNow().catch(async (err: unknown) => {
          log.warn('certificate renewal failed; retrying', { error: describeError(err) });
          await new Promise((r) => setTimeout(r, 5000));
        });
      }
    }
  })();

  log.info('swarmd running', { nodeId, role: certificateFacts(tls.certPem).role, advertise: advertiseAddr, stateDir: dir });
  return {
    nodeId,
    manager: () => manager,
    agent: () => agent,
    tls: () => tls,
    renewNow,
    async stop() {
      if (stop.signal.aborted) return;
      stop.abort();
      wake?.();
      await loop;
      await renewing?.catch(() => undefined);
      metricsServer?.close();
      await worker?.stop();
      await agent.stop();
      await manager?.stop();
      await rm(join(dir, 'swarmd.pid'), { force: true });
      log.info('swarmd stopped');
    },
  };
}

async function rmdirIfEmpty(dir: string): Promise<void> {
  const left = await readdir(dir).catch(() => ['?']);
  if (left.length === 0) await rmdir(dir).catch(() => undefined);
}
