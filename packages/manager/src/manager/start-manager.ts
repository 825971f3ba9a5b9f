import { EventEmitter } from 'node:events';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { hostname as osHostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { RaftNode, RAFT_GRPC_OPTIONS, bindServer } from 'raft-ts';
import { SwarmError, ErrorCode, describeError, invalidArgument } from '@swarmd/common/errors';
import { systemClock, type Clock } from '@swarmd/common/clock';
import type { Logger } from '@swarmd/common/logger';
import { DEFAULT_SUBNET_SIZE, formatCidr, parseCidr } from '../ipam/index.js';
import { ingressNetworkSpec } from '../specs/networks.js';
import { NodeRole, RaftMembershipService, type Cluster, type ClusterSpec, type JoinTokens, type Node, type RaftMember, type StoreBackend } from '@swarmd/proto';
import { ClusterCa, DEFAULT_NODE_CERT_EXPIRY_MS } from '../ca/cluster-ca.js';
import { createKeyAndCsr } from '../ca/csr.js';
import type { TlsMaterial } from '../ca/grpc-auth.js';
import type { PeerIdentity, VerifyOptions } from '../ca/verify.js';
import { CertRole } from '../ca/roles.js';
import { newId } from '../ids.js';
import { ControllerHost } from '../leadership/controller-host.js';
import type { Controller } from '../controller-kit/controller.js';
import { Membership, isDemoted } from '../membership/membership.js';
import { promoterController, roleReconcilerController } from '../membership/controllers.js';
import { joinRaftGroup } from '../membership/join-client.js';
import { KeyFileKeeper, decryptKeyPem, isEncryptedKeyPem, keyringOf, newSecretsKey, readSecretsKeyFile, unwrapKey, writeSecretsKey, SECRETS_KEY_FILE } from '../secrets/index.js';
import { waitForUnlock } from './locked.js';
import { forceNewClusterInDir, newRaftId, readMemberFile, transportClusterIdOf, writeMemberFile, type RaftMemberFile } from '../raft/raft-dir.js';
import { raftSenderCheck } from '../raft/sender-check.js';
import { RaftLog, stateDiskProblem } from '../replication/raft-log.js';
import { EtcdLog } from '../replication/etcd-log.js';
import type { ReplicatedLog } from '../replication/replicated-log.js';
import { EtcdMembership, etcdLeaderStatusController, etcdRoleReconcilerController } from '../membership/etcd-membership.js';
import { assertSameBackend, checkEtcdPrefix, openEtcd, openEtcdForInit, readEtcdCa, storeBackendOf, ETCD_CA_FILE, type ManagerStoreOptions } from './store-backend.js';
import { writeFileAtomic } from '../ca/files.js';
import type { Etcd3 } from 'etcd3';
import { makeObject } from '../store/kinds.js';
import { createStore, type MemoryStore } from '../store/memory-store.js';
import { EventHistory } from '../events/history.js';
import { createManagerApi } from './api.js';
import { serviceControllers } from './controllers.js';
import { authInterceptor, METHOD_POLICY } from './auth.js';
import { strictService } from '../rpc-kit/wire.js';
import { saveNodeKey, saveStateDirCerts } from './node-certs.js';
import type { ManagerContext, ManagerServices, ManagerServicesFactory } from './services.js';
import { NodeTlsProvider, certificateFacts } from './tls.js';

export type ManagerBootstrap = 'init' | 'join' | 'resume';

export interface ManagerOptions {
  stateDir: string;
  /** Where the one port listens, e.g. "0.0.0.0:4242" ("127.0.0.1:0" picks a free port). */
  listenAddr: string;
  /** How other nodes reach it (IP:PORT); it goes into the certificate's SANs and Raft's member list. */
  advertiseAddr: string;
  /** The node's certificate (a manager one). Required for join and resume; init makes its own. */
  tls?: TlsMaterial;
  bootstrap: ManagerBootstrap;
  join?: { leaderAddr: string };
  /** Restart from local state as the only voter (etcd's --force-new-cluster). */
  forceNewCluster?: boolean;
  logger: Logger;
  clock?: Clock;
  /** init: the first node's hostname and labels. */
  hostname?: string;
  labels?: Record<string, string>;
  /** init: changes to the default cluster spec (e.g. a short node certificate expiry in tests). */
  clusterSpec?: { nodeCertExpiryMs?: number; heartbeatPeriodMs?: number; taskHistoryRetentionLimit?: number };
  /** init: the default address pool of overlay networks (empty: 10.0.0.0/8) and the subnet size (0: 24). */
  addressPool?: { pools: string[]; subnetSize: number };
  /** Raft timing (defaults: 100 ms ticks, election after 10, heartbeat every tick). */
  raft?: { tickMs?: number; electionTicks?: number; heartbeatTicks?: number; snapshotEvery?: number; fsync?: boolean };
  /** DIR/control.sock unless given; false: none. */
  controlSocket?: string | false;
  /** The services and controllers hosted (default: createManagerApi: dispatcher, control API, CA server). */
  services?: ManagerServicesFactory[];
  /** Leader-only controllers besides membership's and the services' (default: serviceControllers(): orchestrators, task reaper, scheduler). */
  controllers?: Controller[];
  /** Join: how long to keep trying to reach a leader (default 60 s). */
  joinTimeoutMs?: number;
  /** Aborting gives up a locked manager's wait for its unlock key (startManager then rejects). */
  signal?: AbortSignal;
  /**
   * Where the store lives (default: the built-in Raft). init: the backend of the new cluster.
   * join: taken from the join answer; `etcd` here brings this manager's client certificate (and
   * endpoints to use instead of the answer's). resume: must match the state dir's (refused otherwise).
   */
  store?: ManagerStoreOptions;
}

export interface Manager {
  readonly nodeId: string;
  readonly clusterId: string;
  readonly raftId: number;
  readonly store: MemoryStore;
  /** The Raft node (undefined when the store is an external etcd). */
  readonly raft: RaftNode | undefined;
  /** The etcd log (only when the store is an external etcd). */
  readonly etcd: EtcdLog | undefined;
  /** Where the store lives: raft, or etcd with its endpoints and prefix. */
  readonly backend: StoreBackend;
  readonly controllers: ControllerHost;
  /** Raft membership (undefined when the store is an external etcd). */
  readonly membership: Membership | undefined;
  /** The bound TCP port of the one port. */
  readonly port: number;
  readonly controlSocketPath: string | undefined;
  isLeader(): boolean;
  leaderAddr(): string | undefined;
  members(): RaftMember[];
  tls(): TlsMaterial;
  /** New certificate (renewal): new connections use it. */
  updateTls(tls: TlsMaterial): void;
  /** Saves a new certificate in DIR/certs (its key encrypted while autolocked) and uses it (updateTls). */
  saveTls(tls: TlsMaterial): Promise<void>;
  joinTokens(): JoinTokens | undefined;
  cluster(): Readonly<Cluster> | undefined;
  /**
   * What is wrong with this manager that its peers cannot tell, for ManagerStatus.problem (its
   * host's agent reports it in heartbeats): "state disk full" while its Raft member's disk
   * refuses writes; undefined when nothing is.
   */
  problem(): string | undefined;
  /** Resolves when this member has been removed from the Raft group (demoted, or removed); on etcd, once the store says it was demoted. */
  removed: Promise<void>;
  stop(): Promise<void>;
}

/** 0: automatic, sized by the cluster (the dispatcher's autoHeartbeatPeriod: 1 s up to 200 nodes, at most 5 s). */
export const DEFAULT_CLUSTER_HEARTBEAT_MS = 0;
export const DEFAULT_TASK_HISTORY_LIMIT = 5;

/** The spec of a new cluster (Swarm's defaults). */
/** The default address pool given at init, checked: each an IPv4 CIDR no smaller than the subnets cut from it. */
export function checkAddressPool(p: ManagerOptions['addressPool']): { pools: string[]; subnetSize: number } {
  const subnetSize = p?.subnetSize || DEFAULT_SUBNET_SIZE;
  if (subnetSize < 8 || subnetSize > 29) throw invalidArgument(`default address pool mask length: ${subnetSize} is out of range (8 to 29)`);
  const pools = (p?.pools ?? []).map((s) => formatCidr(parseCidr(s, 'default address pool')));
  for (const s of pools) if (parseCidr(s, 'default address pool').bits > subnetSize) throw invalidArgument(`default address pool: ${s} is smaller than one /${subnetSize} subnet`);
  return { pools, subnetSize: p?.subnetSize ?? 0 };
}

export function defaultClusterSpec(o: ManagerOptions['clusterSpec'] = {}): ClusterSpec {
  return {
    annotations: { name: 'default', labels: {} },
    raft: { electionTick: 10, heartbeatTick: 1, snapshotInterval: 10_000, keepOldSnapshots: 0 },
    dispatcher: { heartbeatPeriodMs: o.heartbeatPeriodMs ?? DEFAULT_CLUSTER_HEARTBEAT_MS },
    caConfig: { nodeCertExpiryMs: o.nodeCertExpiryMs ?? DEFAULT_NODE_CERT_EXPIRY_MS },
    autolockManagers: false, orchestration: { taskHistoryRetentionLimit: o.taskHistoryRetentionLimit ?? DEFAULT_TASK_HISTORY_LIMIT },
  };
}

interface InitMaterial {
  ca: ClusterCa;
  cluster: Cluster;
  node: Node;
}

/**
 * Starts a manager (docs/cluster.md): Raft (WAL + snapshots under DIR/raft) with the store on
 * it, one mTLS gRPC server on listenAddr (Raft transport, RaftMembership, and the hosted
 * services), DIR/control.sock for the Control service, and the leader-only controllers.
 */
export async function startManager(o: ManagerOptions): Promise<Manager> {
  const clock = o.clock ?? systemClock;
  const logger = o.logger.child({ component: 'manager' });
  const raftDir = join(o.stateDir, 'raft');
  await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
  let member = await readMemberFile(raftDir);
  let tls = o.tls;
  let init: InitMaterial | undefined;
  let joinPeers: Map<number, string> | undefined;

  if (o.bootstrap === 'init' && member) {
    throw new SwarmError(ErrorCode.ALREADY_EXISTS, `${o.stateDir} already holds a manager (of cluster ${member.clusterId}); use "swarmd run" to resume it`);
  }
  if (o.bootstrap === 'resume' && !member) {
    throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${o.stateDir} holds no manager state (no raft/member.json); use "swarmd init" or "swarmd join"`);
  }
  if (o.forceNewCluster && !member) {
    throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `--force-new-cluster needs the state of a former manager in ${o.stateDir}`);
  }
  if (member) assertSameBackend(member, o.stateDir, o.store);
  if (o.forceNewCluster && member?.store === 'etcd') {
    throw new SwarmError(ErrorCode.FAILED_PRECONDITION, '--force-new-cluster is for the built-in raft: an etcd-backed cluster has no manager quorum to force (etcd keeps its own)');
  }
  // The etcd client of an etcd-backed manager, opened (and checked) before anything is written.
  let etcd: { client: Etcd3; prefix: string; backend: StoreBackend } | undefined;
  if (o.bootstrap === 'resume' && member?.store === 'etcd') {
    const own = o.store?.kind === 'etcd' ? o.store.connection : { endpoints: [] };
    const cacert = own.cacert ?? (await readEtcdCa(o.stateDir));
    const connection = { ...own, endpoints: own.endpoints.length ? own.endpoints : (member.endpoints ?? []), ...(cacert ? { cacert } : {}) };
    if (!connection.endpoints.length) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `${o.stateDir} holds a manager of an etcd-backed cluster but no etcd endpoints: give --etcd-endpoints`);
    const prefix = member.prefix ?? '';
    etcd = { client: await openEtcd(connection, prefix, 'resume'), prefix, backend: storeBackendOf({ kind: 'etcd', connection }, prefix) };
    member = { ...member, endpoints: connection.endpoints };
  }

  if (o.bootstrap === 'init') {
    const pool = checkAddressPool(o.addressPool); // bad input: refused before anything is written
    const clusterId = newId();
    if (o.store?.kind === 'etcd') {
      const prefix = checkEtcdPrefix(o.store.prefix ?? `/swarmd/${clusterId}`);
      etcd = { client: await openEtcdForInit(o.store.connection, prefix), prefix, backend: storeBackendOf(o.store, prefix) };
    }
    const nodeId = newId();
    const ca = await ClusterCa.create({ clusterId, now: clock.now() });
    const spec = defaultClusterSpec(o.clusterSpec);
    const { keyPem, csrPem } = await createKeyAndCsr(nodeId);
    const issued = await ca.issueNodeCertificate(csrPem, CertRole.MANAGER, nodeId, {
      now: clock.now(),
      expiryMs: spec.caConfig!.nodeCertExpiryMs,
      addresses: [o.advertiseAddr],
    });
    tls = { caCertPem: ca.certPem, certPem: issued.certPem, keyPem };
    member = etcd
      ? { raftId: 0, nodeId, clusterId, transportClusterId: transportClusterIdOf(clusterId), store: 'etcd', prefix: etcd.prefix, endpoints: etcd.backend.endpoints }
      : { raftId: newRaftId(), nodeId, clusterId, transportClusterId: transportClusterIdOf(clusterId) };
    const backend = etcd?.backend ?? storeBackendOf(undefined, '');
    const cluster = makeObject('cluster', { id: clusterId, spec, rootCa: ca.toRootCa(), removedNodeIds: [], defaultAddressPool: pool.pools, subnetSize: pool.subnetSize, store: backend });
    const node = makeObject('node', {
      id: nodeId,
      role: NodeRole.NODE_ROLE_MANAGER,
      spec: { annotations: { name: '', labels: { ...(o.labels ?? {}) } }, desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: 0 },
      description: { hostname: o.hostname ?? osHostname(), platform: { os: process.platform, architecture: process.arch }, resources: undefined, engineVersion: '', volumes: [], engineLabels: {} },
      managerStatus: { raftId: member.raftId, addr: o.advertiseAddr, leader: true, reachability: 2, problem: '', learner: false },
      certificatePem: issued.certPem,
    });
    init = { ca, cluster, node };
    await writeSecretsKey(o.stateDir, newSecretsKey());
  }
  if (!tls) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'startManager: the node certificate (tls) is needed to join or resume');
  const facts = certificateFacts(tls.certPem);
  if (facts.role !== CertRole.MANAGER) {
    throw new SwarmError(ErrorCode.PERMISSION_DENIED, `this node's certificate is a ${facts.role} certificate; a manager needs a swarm-manager certificate`);
  }
  const sockPath = o.controlSocket === false ? undefined : (o.controlSocket ?? join(o.stateDir, 'control.sock'));
  // Autolock with the TLS key encrypted on disk: the node has no identity (no TLS, no port) until
  // the unlock key arrives on the control socket; it opens the TLS key and the secrets key.
  let unlocked: { unlockKey: string; secretsKey: Buffer | undefined } | undefined;
  if (isEncryptedKeyPem(tls.keyPem)) {
    const lockedPem = tls.keyPem;
    const wrappedFile = await readSecretsKeyFile(o.stateDir);
    const u = await waitForUnlock({
      open: (k) => ({ keyPem: decryptKeyPem(lockedPem, k), secretsKey: wrappedFile?.locked ? unwrapKey(k, wrappedFile.wrapped) : undefined }),
      ...(sockPath ? { controlSocket: sockPath } : {}),
      logger,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    tls = { ...tls, keyPem: u.opened.keyPem };
    unlocked = { unlockKey: u.unlockKey, secretsKey: u.opened.secretsKey };
  }
  const provider = new NodeTlsProvider(tls);

  if (o.bootstrap === 'join' && !member) {
    if (!o.join?.leaderAddr) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'startManager: join needs the address of a manager');
    const r = await joinRaftGroup({
      addr: o.join.leaderAddr,
      advertiseAddr: o.advertiseAddr,
      credentials: provider.channelCredentials(),
      clock,
      logger,
      timeoutMs: o.joinTimeoutMs ?? 60_000,
    });
    if (r.store?.kind === 'etcd') {
      const own = o.store?.kind === 'etcd' ? o.store.connection : undefined;
      const connection = {
        ...own,
        endpoints: own?.endpoints.length ? own.endpoints : r.store.endpoints,
        ...(own?.cacert ? {} : r.store.caCert.length ? { cacert: Buffer.from(r.store.caCert) } : {}),
      };
      etcd = { client: await openEtcd(connection, r.store.prefix, 'join'), prefix: r.store.prefix, backend: { ...r.store, endpoints: connection.endpoints } };
      member = { raftId: 0, nodeId: facts.nodeId, clusterId: facts.clusterId, transportClusterId: transportClusterIdOf(facts.clusterId), store: 'etcd', prefix: r.store.prefix, endpoints: connection.endpoints };
      if (connection.cacert) await writeFileAtomic(join(o.stateDir, ETCD_CA_FILE), connection.cacert, 0o600);
      logger.info('joined an etcd-backed cluster', { endpoints: connection.endpoints, prefix: r.store.prefix });
    } else {
      if (o.store?.kind === 'etcd') {
        throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `join: the cluster keeps its store in the built-in raft, not etcd: join without --store etcd (this manager was added to the raft group as a learner; "swarmctl node demote" removes it)`);
      }
      member = { raftId: r.raftId, nodeId: facts.nodeId, clusterId: facts.clusterId, transportClusterId: r.clusterRaftId || transportClusterIdOf(facts.clusterId) };
      joinPeers = new Map(r.members.filter((m) => m.addr).map((m) => [m.raftId, m.addr]));
      joinPeers.set(r.raftId, o.advertiseAddr);
      logger.info('joined the raft group as a learner', { raftId: r.raftId, members: Object.fromEntries(joinPeers) });
    }
    if (r.secretsKey.length) await writeSecretsKey(o.stateDir, Buffer.from(r.secretsKey));
  }
  if (!member) throw new SwarmError(ErrorCode.INTERNAL, 'startManager: no raft membership');
  if (member.nodeId !== facts.nodeId || member.clusterId !== facts.clusterId) {
    throw new SwarmError(
      ErrorCode.FAILED_PRECONDITION,
      `the certificate (node ${facts.nodeId}, cluster ${facts.clusterId}) is not the one of this state dir (node ${member.nodeId}, cluster ${member.clusterId})`,
    );
  }
  const me: RaftMemberFile = member;
  const keyFile = await readSecretsKeyFile(o.stateDir);
  let secretsKey = keyFile && !keyFile.locked ? keyFile.key : unlocked?.secretsKey;
  // The unlock keys DIR/secrets.key and the TLS key are wrapped with ('' when plain).
  let unlockKey = unlocked?.secretsKey ? unlocked.unlockKey : '';
  const nodeKeyUnlockKey = unlocked?.unlockKey ?? '';
  if (keyFile?.locked && !secretsKey) {
    // Autolock, TLS key still plain: nothing opens until the unlock key arrives (Control.Unlock on the port or socket).
    const wrapped = keyFile.wrapped;
    const u = await waitForUnlock({
      open: (k) => unwrapKey(k, wrapped),
      tcp: {
        listenAddr: o.listenAddr,
        serverCredentials: provider.serverCredentials(),
        verify: () => ({ caCertPem: provider.tls.caCertPem, now: clock.now(), clusterId: me.clusterId, isRemoved: () => false }),
      },
      ...(sockPath ? { controlSocket: sockPath } : {}),
      logger,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    secretsKey = u.opened;
    unlockKey = u.unlockKey;
  }
  if (!secretsKey) logger.warn('no secrets key in the state dir: this manager cannot seal or open secrets', { file: join(o.stateDir, SECRETS_KEY_FILE) });
  const secrets = keyringOf(secretsKey);

  if (o.forceNewCluster) {
    const removed = await forceNewClusterInDir(raftDir, me.raftId, logger);
    logger.warn('force-new-cluster: restarting as the only manager', { removedRaftIds: removed });
  }

  // Live view of the cluster object for verification (removed nodes) and tokens.
  const storeRef: { s?: MemoryStore } = {};
  const clusterObj = (): Readonly<Cluster> | undefined => storeRef.s?.view((tx) => tx.get('cluster', me.clusterId));
  const verify = (): VerifyOptions => {
    const c = clusterObj();
    const removed = new Set(c?.removedNodeIds ?? []);
    return { caCertPem: provider.tls.caCertPem, now: clock.now(), clusterId: me.clusterId, isRemoved: (id) => removed.has(id) };
  };

  // A demoted manager's old certificate (valid until it expires) counts as a worker's: it keeps its
  // dispatcher session and renews, but opens neither Raft nor the control API.
  const honoured = (id: PeerIdentity) =>
    id.role === CertRole.MANAGER && isDemoted(storeRef.s?.view((tx) => tx.get('node', id.nodeId)))
      ? { role: CertRole.WORKER, why: `node ${id.nodeId} was demoted to worker; its manager certificate is honoured as a worker's` }
      : { role: id.role };
  const server = new grpc.Server({ ...RAFT_GRPC_OPTIONS, interceptors: [authInterceptor(verify, logger, METHOD_POLICY, honoured)] });
  const etcdLog = etcd
    ? new EtcdLog({
        client: etcd.client,
        prefix: etcd.prefix,
        leaderValue: o.advertiseAddr,
        ...(o.store?.kind === 'etcd' && o.store.leaseTtl ? { leaseTtl: o.store.leaseTtl } : {}),
        endpoints: etcd.backend.endpoints,
        logger: logger.child({ component: 'etcd-log' }),
      })
    : undefined;
  const raftLog = etcdLog ? undefined : new RaftLog();
  const log: ReplicatedLog = etcdLog ?? raftLog!;
  const store = createStore({ log, clock, logger });
  storeRef.s = store;
  // Before the log opens: the entries it replays feed the history too.
  const eventHistory = new EventHistory(store, { logger });
  await mkdir(raftDir, { recursive: true, mode: 0o700 });
  const peers = init ? new Map([[me.raftId, o.advertiseAddr]]) : (joinPeers ?? new Map<number, string>());
  const raft = raftLog ? await RaftNode.open({
    id: me.raftId,
    clusterId: me.transportClusterId,
    dataDir: raftDir,
    stateMachine: raftLog.stateMachine,
    peers,
    join: o.bootstrap === 'join' && !!joinPeers,
    server,
    channelCredentials: provider.channelCredentials(CertRole.MANAGER),
    authorizeSender: raftSenderCheck(store),
    tickMs: o.raft?.tickMs ?? 100,
    electionTicks: o.raft?.electionTicks ?? 10,
    heartbeatTicks: o.raft?.heartbeatTicks ?? 1,
    snapshotEvery: o.raft?.snapshotEvery ?? 10_000,
    fsync: o.raft?.fsync ?? true,
    logger: logger.child({ component: 'raft' }),
  }) : undefined;
  if (etcdLog) await startEtcdLog(etcdLog, logger, o.signal);
  if (init || joinPeers || etcdLog) await writeMemberFile(raftDir, me);
  if (init && etcd?.backend.caCert.length) await writeFileAtomic(join(o.stateDir, ETCD_CA_FILE), etcd.backend.caCert, 0o600);
  if (raft) raftLog!.connect(raft);

  const electionMs = etcdLog ? 1000 * (o.store?.kind === 'etcd' ? (o.store.leaseTtl ?? 5) : 5) : (o.raft?.tickMs ?? 100) * (o.raft?.electionTicks ?? 10);
  const membership = raft ? new Membership({
    raft,
    store,
    logger,
    verify,
    transportClusterId: me.transportClusterId,
    now: () => clock.now(),
    reachableWithinMs: 2 * electionMs,
    secretsKey: () => secrets.key(),
    autolocked: () => !!clusterObj()?.unlockKeySealed.length,
  }) : undefined;
  const etcdMembership = etcdLog
    ? new EtcdMembership({
        store,
        logger,
        verify,
        isLeader: () => etcdLog.isLeader(),
        leaderAddr: () => etcdLog.leaderValue() || undefined,
        backend: etcd!.backend,
        secretsKey: () => secrets.key(),
        autolocked: () => !!clusterObj()?.unlockKeySealed.length,
      })
    : undefined;
  const leaderAddr = (): string | undefined => (etcdMembership ? etcdLog!.leaderValue() || undefined : membership!.leaderAddr());
  const isLeader = (): boolean => log.isLeader();
  // Since when this manager has known no leader (undefined while it knows one).
  let noLeaderSince: number | undefined = leaderAddr() ? undefined : clock.now();
  raft?.on('leader-change', (c: { leaderId: number }) => {
    if (c.leaderId) noLeaderSince = undefined;
    else noLeaderSince ??= clock.now();
  });
  const leaderlessForMs = (): number => (noLeaderSince === undefined ? 0 : Math.max(0, clock.now() - noLeaderSince));
  const sampler = setInterval(() => {
    membership?.sample();
    if (etcdLog) noLeaderSince = etcdLog.leaderValue() ? undefined : (noLeaderSince ?? clock.now());
  }, o.raft?.tickMs ?? 100);
  sampler.unref();
  server.addService(...strictService(RaftMembershipService, (etcdMembership ?? membership!).service()));
  const members = (): RaftMember[] => (etcdMembership ?? membership!).members();

  const st = store;
  let caCache: { pem: string; ca: Promise<ClusterCa> } | undefined;
  const ctx: ManagerContext = {
    store: st,
    eventHistory,
    clusterId: me.clusterId,
    nodeId: me.nodeId,
    advertiseAddr: o.advertiseAddr,
    logger,
    clock,
    isLeader,
    leaderAddr,
    leaderlessForMs,
    minorityAfterMs: 2 * electionMs,
    ...(etcdLog ? { storeUnavailable: () => etcdLog.storeUnavailable() } : {}),
    ca: async () => {
      const c = clusterObj();
      if (!c) throw new SwarmError(ErrorCode.UNAVAILABLE, 'the cluster object is not in the store yet');
      // Parsed once per CA certificate (a fleet joining at once paid the key import per join).
      const pem = c.rootCa?.caCertPem ?? '';
      if (caCache?.pem !== pem) caCache = { pem, ca: ClusterCa.fromCluster(c) };
      const cached = caCache;
      return cached.ca.catch((err: unknown) => {
        if (caCache === cached) caCache = undefined;
        throw err;
      });
    },
    verify,
    tls: () => provider.tls,
    managerCredentials: () => provider.channelCredentials(CertRole.MANAGER),
    membership: {
      assertCanRemove: (nodeId) => (membership ?? etcdMembership)?.assertCanRemove(nodeId),
      removeManager: async (nodeId) => membership?.removeManager(nodeId),
      members,
    },
    secrets,
  };
  const hosted: ManagerServices[] = [];
  for (const f of o.services ?? [createManagerApi]) hosted.push(await f(ctx));
  const socketServices = hosted.flatMap((h) => h.services.filter((s) => s.controlSocket));
  // Malformed requests are refused before any handler sees them (the decoders are lenient).
  for (const h of hosted) for (const s of h.services) if (s.tcp !== false) server.addService(...strictService(s.definition, s.implementation));

  let port: number;
  try {
    port = await bindServer(server, o.listenAddr, provider.serverCredentials());
  } catch (err) {
    await raft?.stop();
    await etcdLog?.stop();
    etcd?.client.close();
    throw new SwarmError(ErrorCode.UNAVAILABLE, `cannot listen on ${o.listenAddr}: ${describeError(err)}`, { cause: err });
  }
  raft?.run();
  logger.info('manager listening', { addr: o.listenAddr, port, advertise: o.advertiseAddr, nodeId: me.nodeId, raftId: me.raftId, clusterId: me.clusterId, store: etcd ? `etcd ${etcd.prefix}` : 'raft' });

  // The local control socket: Control without TLS, root only (0600).
  let sockServer: grpc.Server | undefined;
  if (sockPath && socketServices.length) {
    await rm(sockPath, { force: true });
    sockServer = new grpc.Server();
    for (const s of socketServices) sockServer.addService(s.definition, s.implementation);
    await bindServer(sockServer, `unix://${sockPath}`, grpc.ServerCredentials.createInsecure());
    await chmod(sockPath, 0o600);
  }

  // Every manager keeps its secrets key file as the cluster's autolock setting says.
  const keeper = new KeyFileKeeper({
    stateDir: o.stateDir,
    keyring: secrets,
    cluster: clusterObj,
    current: unlockKey,
    nodeKey: { current: nodeKeyUnlockKey, write: (k) => saveNodeKey(o.stateDir, provider.tls.keyPem, k) },
    logger,
  });
  keeper.start();

  const host = new ControllerHost({ log, deps: { store: st, clock, logger } });
  if (raft && membership) {
    host.register(promoterController(raft, membership));
    host.register(roleReconcilerController(raft, membership));
  } else {
    host.register(etcdLeaderStatusController(o.advertiseAddr));
    host.register(etcdRoleReconcilerController());
  }
  for (const h of hosted) for (const c of h.controllers ?? []) host.register(c);
  for (const c of o.controllers ?? serviceControllers()) host.register(c);
  host.start();

  const events = new EventEmitter();
  let stopped = false;
  let removedResolve!: () => void;
  const removed = new Promise<void>((r) => (removedResolve = r));
  // Membership watch: a removed member learns it when it applies its own removal, but the leader
  // stops talking to it once the removal commits, so it may never apply it. A demotion is first
  // written into the store (role = worker) while the member still replicates; after that, losing
  // the leader for two election timeouts means it was cut off: removed.
  let wasMember = false;
  let leaderlessSince = 0;
  const memberWatch = setInterval(() => {
    if (!raft) {
      // etcd: no group to leave; demoted once the store says so (the leader's etcd role reconciler).
      if (isDemoted(st.view((tx) => tx.get('node', me.nodeId)))) {
        clearInterval(memberWatch);
        logger.warn('this manager was demoted (etcd-backed cluster)');
        removedResolve();
      }
      return;
    }
    const cs = raft.status().confState;
    const inGroup = cs.voters.includes(me.raftId) || cs.learners.includes(me.raftId);
    if (inGroup) wasMember = true;
    const self = st.view((tx) => tx.get('node', me.nodeId));
    const demoted = isDemoted(self);
    const now = clock.now();
    if (raft.leader === 0 || !inGroup) leaderlessSince ||= now;
    else leaderlessSince = 0;
    const cutOff = demoted && leaderlessSince > 0 && now - leaderlessSince > 2 * electionMs;
    if ((wasMember && !inGroup) || cutOff) {
      clearInterval(memberWatch);
      logger.warn('this manager was removed from the raft group (demoted)');
      removedResolve();
    }
  }, 200);
  memberWatch.unref();

  if (init) {
    const { cluster, node } = init;
    // A single voter elects itself within an election timeout.
    const until = clock.now() + 30_000;
    while (!log.isLeader()) {
      if (clock.now() > until) throw new SwarmError(ErrorCode.UNAVAILABLE, 'init: this manager did not become the leader of its own cluster');
      await clock.sleep(50);
    }
    await st.update((tx) => {
      tx.create('cluster', cluster);
      tx.create('node', node);
      tx.create('network', makeObject('network', { id: newId(), spec: ingressNetworkSpec() }));
    });
    await saveStateDirCerts(o.stateDir, tls);
    logger.info('initialized a new cluster', { clusterId: me.clusterId, nodeId: me.nodeId });
  }

  const m: Manager = {
    nodeId: me.nodeId,
    clusterId: me.clusterId,
    raftId: me.raftId,
    store: st,
    raft,
    etcd: etcdLog,
    backend: etcd?.backend ?? storeBackendOf(undefined, ''),
    controllers: host,
    membership,
    port,
    controlSocketPath: sockServer ? sockPath : undefined,
    isLeader,
    leaderAddr,
    members,
    tls: () => provider.tls,
    updateTls: (t) => provider.update(t),
    saveTls: (t) =>
      keeper.run(async (k) => {
        await saveStateDirCerts(o.stateDir, t, k || undefined);
        provider.update(t);
      }),
    joinTokens: () => clusterObj()?.rootCa?.joinTokens,
    cluster: clusterObj,
    problem: () => (raft?.diskError ? stateDiskProblem(raft.diskError) : undefined),
    removed,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(memberWatch);
      clearInterval(sampler);
      await keeper.stop();
      events.removeAllListeners();
      await host.stop();
      for (const h of hosted) await h.stop?.();
      eventHistory.stop();
      raftLog?.disconnect();
      await raft?.stop();
      await etcdLog?.stop();
      etcd?.client.close();
      server.forceShutdown();
      if (sockServer) {
        sockServer.forceShutdown();
        await rm(sockPath!, { force: true });
      }
      logger.info('manager stopped', { nodeId: me.nodeId });
    },
  };
  return m;
}

/**
 * Opens the etcd log (the snapshot and the entries after it), retrying while etcd does not answer:
 * a manager restarted during an etcd outage waits for it instead of serving an empty store.
 */
async function startEtcdLog(log: EtcdLog, logger: Logger, signal?: AbortSignal): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await log.start();
      return;
    } catch (err) {
      if (signal?.aborted) throw err;
      logger.warn('cannot load the store from etcd yet; retrying', { attempt, error: describeError(err) });
      await new Promise((r) => setTimeout(r, Math.min(5_000, 500 * attempt)));
    }
  }
}
