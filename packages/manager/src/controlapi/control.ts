/**
 * The control API (after SwarmKit's manager/controlapi): user requests → validated store
 * transactions: nodes, the cluster, services and tasks (services.ts), logs (logs.ts); networks come
 * with their own issue (UNIMPLEMENTED until then).
 *
 * - Who may call: over mutual TLS a swarm-admin or a swarm-manager (a follower forwarding)
 *   certificate; a worker certificate is PERMISSION_DENIED. The `local` handlers serve the
 *   root-only unix socket (DIR/control.sock) and admit every caller.
 * - Followers forward every call to the leader (errors pass through unchanged).
 * - The root CA key never leaves: every Cluster in a response has root_ca.ca_key_pem emptied.
 */
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, invalidArgument, notFound, failedPrecondition, isSwarmError, noLeaderYet } from '@swarmd/common';
import {
  type Cluster,
  type ClusterSpec,
  ControlClient,
  type ControlServer,
  ControlService,
  type Node,
  NodeAvailability,
  NodeRole,
  NodeState,
  type NodeSpec,
  ManagerStatus_Reachability,
  type Task,
  type WatchEvent,
  WatchEvent_Action,
  type WatchRequest,
  type LogsRequest,
  type LogLine,
} from '@swarmd/proto';
import type { ReadTx } from '../store/memory-store.js';
import { type Kind, isKind, nameOf, cloneObject } from '../store/kinds.js';
import type { EventMatcher } from '../store/events.js';
import { newId } from '../ids.js';
import { ClusterCa, MIN_NODE_CERT_EXPIRY_MS } from '../ca/cluster-ca.js';
import { CertRole } from '../ca/roles.js';
import { expectServerRole, peerIdentity } from '../ca/grpc-auth.js';
import { rotateJoinTokens } from '../ca/tokens.js';
import { x509 } from '../ca/x509.js';
import type { PeerIdentity } from '../ca/verify.js';
import { createServicesImpl, publicService, publicTask, registryPinner, resolveService, type ImagePinner } from './services.js';
import { LogBroker } from './logs.js';
import { type ServiceClock, type ServiceDeps, clusterOf, loggerOf, publicCluster, reply, streamError, verifyOptionsOf, wallClock } from '../dispatcher/common.js';

/** Metadata a follower sets when it forwards a call, so a call is forwarded at most once. */
export const FORWARDED_HEADER = 'swarm-forwarded-by';

export type QuorumVerdict = boolean | { ok: boolean; reason?: string };

export interface ControlDeps extends ServiceDeps {
  /** The cluster CA with its key (admin certificates). Default: loaded from the store's Cluster. */
  ca?(): Promise<ClusterCa>;
  /** A Control client to the leader (followers forward through it). */
  forward?(): ControlClient | undefined;
  /** Without `forward`: credentials to dial leaderAddr() (a manager certificate). */
  managerCredentials?(): grpc.ChannelCredentials;
  /** Whether manager `nodeId` can leave without losing quorum. Checked on demotion. */
  canRemoveManager?(nodeId: string): QuorumVerdict;
  /** ManagerContext's form of the same check: throws FAILED_PRECONDITION when it cannot. */
  membership?: { assertCanRemove(nodeId: string): void };
  /** Pins service images to digests (default: the runtime's RegistryClient, see registryPinner). */
  imagePinner?: ImagePinner;
  /** Registries reached over plain HTTP when pinning, besides loopback (host, host:port or IPv4 CIDR). */
  insecureRegistries?: readonly string[];
  /** Time allowed to resolve one image tag (default 10 s). */
  imageResolveTimeoutMs?: number;
  /** The leader's log broker, fed by Dispatcher.PublishLogs (createManagerApi shares one). */
  logBroker?: LogBroker;
}

export interface ControlApi {
  /** For the mutual-TLS port: admin or manager certificates only. */
  readonly server: ControlServer;
  /** For the root-only unix socket: no certificate, every caller admitted. Never serve on TCP. */
  readonly local: ControlServer;
  /** Closes the forwarding client, if one was made. */
  close(): void;
}

type Methods = typeof ControlService;
type ReqOf<K extends keyof Methods> = ReturnType<Methods[K]['requestDeserialize']>;
type ResOf<K extends keyof Methods> = ReturnType<Methods[K]['responseDeserialize']>;
type UnaryKey = { [K in keyof Methods]: Methods[K]['responseStream'] extends false ? K : never }[keyof Methods];
type Caller = PeerIdentity | 'local';

const unimplemented = (what: string) =>
  Object.assign(new Error(what), { code: grpc.status.UNIMPLEMENTED, details: `${what} is not implemented yet (it comes with the services issue)` });

/** Quorum from the store: managers (role MANAGER) left after `nodeId` goes, and how many are reachable. */
export function managerCounts(tx: ReadTx, nodeId: string): { total: number; remaining: number; reachable: number } {
  const managers = tx.find('node').filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER);
  const rest = managers.filter((n) => n.id !== nodeId);
  const reachable = rest.filter((n) => n.managerStatus?.reachability !== ManagerStatus_Reachability.UNREACHABLE).length;
  return { total: managers.length, remaining: rest.length, reachable };
}

function sameLabels(want: Readonly<Record<string, string>>, have: Readonly<Record<string, string>> | undefined): boolean {
  for (const [k, v] of Object.entries(want)) {
    if (!have || !(k in have)) return false;
    if (v !== '' && have[k] !== v) return false;
  }
  return true;
}

function validNodeSpec(spec: NodeSpec | undefined): NodeSpec {
  if (!spec) throw invalidArgument('spec is required');
  if (!Object.values(NodeAvailability).includes(spec.availability) || spec.availability === NodeAvailability.UNRECOGNIZED) {
    throw invalidArgument(`spec.availability: unknown value ${String(spec.availability)} (active, pause or drain)`);
  }
  if (spec.desiredRole !== NodeRole.NODE_ROLE_WORKER && spec.desiredRole !== NodeRole.NODE_ROLE_MANAGER) {
    throw invalidArgument(`spec.desired_role: unknown value ${String(spec.desiredRole)} (worker or manager)`);
  }
  for (const k of Object.keys(spec.annotations?.labels ?? {})) if (!k.trim()) throw invalidArgument('spec.annotations.labels: empty label key');
  return spec;
}

function validClusterSpec(cur: Readonly<Cluster>, spec: ClusterSpec | undefined): ClusterSpec {
  if (!spec) throw invalidArgument('spec is required');
  const name = spec.annotations?.name ?? '';
  const curName = cur.spec?.annotations?.name ?? '';
  if (name !== curName) throw invalidArgument(`spec.annotations.name: the cluster cannot be renamed ("${curName}" → "${name}")`);
  const hb = spec.dispatcher?.heartbeatPeriodMs ?? 0;
  if (hb < 0 || (hb > 0 && hb < 100)) throw invalidArgument(`spec.dispatcher.heartbeat_period_ms: ${hb} is too short (0 for the default, else at least 100 ms)`);
  const exp = spec.caConfig?.nodeCertExpiryMs ?? 0;
  if (exp < 0 || (exp > 0 && exp < MIN_NODE_CERT_EXPIRY_MS)) {
    throw invalidArgument(`spec.ca_config.node_cert_expiry_ms: ${exp} is too short (0 for the default, else at least ${MIN_NODE_CERT_EXPIRY_MS} ms)`);
  }
  const r = spec.raft;
  if (r && r.electionTick > 0 && r.heartbeatTick > 0 && r.electionTick <= r.heartbeatTick) {
    throw invalidArgument(`spec.raft: election_tick (${r.electionTick}) must be greater than heartbeat_tick (${r.heartbeatTick})`);
  }
  if ((spec.orchestration?.taskHistoryRetentionLimit ?? 0) < 0) throw invalidArgument('spec.orchestration.task_history_retention_limit must not be negative');
  return spec;
}

/** A node by id, unique id prefix, or unique name (hostname). */
function resolveNode(tx: ReadTx, ref: string): Readonly<Node> {
  if (!ref) throw invalidArgument('node_id is required');
  const exact = tx.get('node', ref);
  if (exact) return exact;
  const all = tx.find('node');
  const byPrefix = all.filter((n) => n.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  const byName = all.filter((n) => nameOf('node', n).toLowerCase() === ref.toLowerCase());
  if (byName.length === 1) return byName[0];
  if (byPrefix.length > 1 || byName.length > 1) throw invalidArgument(`node "${ref}" is ambiguous: ${[...byPrefix, ...byName].map((n) => n.id).join(', ')}`);
  throw notFound(`node ${ref} not found`);
}

function resolveCluster(tx: ReadTx, ref: string): Readonly<Cluster> {
  const all = tx.find('cluster');
  if (!ref) {
    if (all[0]) return all[0];
    throw notFound('there is no cluster yet');
  }
  const c = tx.get('cluster', ref) ?? all.find((x) => nameOf('cluster', x).toLowerCase() === ref.toLowerCase());
  if (!c) throw notFound(`cluster ${ref} not found`);
  return c;
}

const ADMIN_ID = /^admin-[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function createControlService(deps: ControlDeps): ControlApi {
  const store = deps.store;
  const clock: ServiceClock = deps.clock ?? wallClock;
  const log = loggerOf(deps, 'manager/controlapi');
  const verify = verifyOptionsOf(store, clock);
  let fwd: { addr: string; client: ControlClient } | undefined;
  let caCache: { pem: string; ca: Promise<ClusterCa> } | undefined;
  let pinner: ImagePinner | undefined;
  const logBroker = deps.logBroker ?? new LogBroker();
  const services = createServicesImpl({
    store,
    logger: log,
    now: () => clock.now(),
    pinner: () => (pinner ??= deps.imagePinner ?? registryPinner({ insecureRegistries: deps.insecureRegistries, timeoutMs: deps.imageResolveTimeoutMs, logger: log })),
  });

  const loadCa = (): Promise<ClusterCa> => {
    if (deps.ca) return deps.ca();
    const c = store.view(clusterOf);
    if (caCache?.pem !== c.rootCa!.caCertPem) caCache = { pem: c.rootCa!.caCertPem, ca: ClusterCa.fromCluster(c) };
    return caCache.ca;
  };

  function leaderClient(): ControlClient {
    const given = deps.forward?.();
    if (given) return given;
    const addr = deps.leaderAddr();
    if (!addr) throw noLeaderYet('this manager is not the leader and no leader is known yet: retry in a moment');
    if (!deps.managerCredentials) throw new SwarmError(ErrorCode.UNAVAILABLE, `this manager is not the leader (the leader is ${addr}) and cannot forward`);
    if (fwd?.addr !== addr) {
      fwd?.client.close();
      fwd = { addr, client: new ControlClient(addr, deps.managerCredentials(), expectServerRole(CertRole.MANAGER)) };
    }
    return fwd.client;
  }

  function forwardMetadata(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): grpc.Metadata {
    if (call.metadata.get(FORWARDED_HEADER).length > 0) {
      throw noLeaderYet('this manager is not the leader either (the leader is changing): retry in a moment');
    }
    const md = new grpc.Metadata();
    md.set(FORWARDED_HEADER, '1');
    return md;
  }

  async function admit(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, local: boolean): Promise<Caller> {
    if (local) {
      // The socket handlers must never face the network: refuse anything with an IP peer.
      const peer = call.getPeer();
      if (/^(\[.*\]|[\d.]+|[0-9a-f:]+):\d+$/i.test(peer) && !peer.startsWith('unix')) {
        throw new SwarmError(ErrorCode.PERMISSION_DENIED, `the local control handlers are for the unix socket only (called from ${peer})`);
      }
      return 'local';
    }
    const id = await peerIdentity(call, verify);
    if (id.role === CertRole.WORKER) {
      throw new SwarmError(ErrorCode.PERMISSION_DENIED, `worker certificates cannot use the control API (${id.nodeId} holds a swarm-worker certificate)`);
    }
    return id;
  }

  function forwardUnary<K extends UnaryKey>(method: K, req: ReqOf<K>, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<ResOf<K>> {
    const md = forwardMetadata(call);
    const client = leaderClient();
    const def = ControlService[method] as unknown as {
      path: string;
      requestSerialize: (v: ReqOf<K>) => Buffer;
      responseDeserialize: (b: Buffer) => ResOf<K>;
    };
    return new Promise((resolve, reject) => {
      client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, { deadline: call.getDeadline() }, (err, res) =>
        err ? reject(err) : resolve(res!),
      );
    });
  }

  function unary<K extends UnaryKey>(method: K, local: boolean, impl: (req: ReqOf<K>, who: Caller) => Promise<ResOf<K>>): grpc.handleUnaryCall<ReqOf<K>, ResOf<K>> {
    return (call, cb) => {
      const run = async (): Promise<ResOf<K>> => {
        const who = await admit(call, local);
        if (!deps.isLeader()) return forwardUnary(method, call.request, call as grpc.ServerUnaryCall<unknown, unknown>);
        return impl(call.request, who);
      };
      reply(run(), cb, log, method);
    };
  }

  // ---- nodes ----------------------------------------------------------------------------------

  async function getNode(req: ReqOf<'getNode'>): Promise<ResOf<'getNode'>> {
    return { node: cloneObject('node', store.view((tx) => resolveNode(tx, req.nodeId))) };
  }

  async function listNodes(req: ReqOf<'listNodes'>): Promise<ResOf<'listNodes'>> {
    const f = req.filters;
    const nodes = store.view((tx) => tx.find('node')).filter((n) => {
      if (!f) return true;
      if (f.names.length && !f.names.some((x) => x.toLowerCase() === nameOf('node', n).toLowerCase())) return false;
      if (f.idPrefixes.length && !f.idPrefixes.some((p) => n.id.startsWith(p))) return false;
      if (Object.keys(f.labels).length && !sameLabels(f.labels, n.spec?.annotations?.labels)) return false;
      if (f.roles.length && !f.roles.includes(n.role)) return false;
      return true;
    });
    return { nodes: nodes.map((n) => cloneObject('node', n)) };
  }

  function quorumVerdict(nodeId: string): { ok: boolean; reason?: string } {
    if (deps.canRemoveManager) {
      const v = deps.canRemoveManager(nodeId);
      return typeof v === 'boolean' ? { ok: v } : v;
    }
    if (deps.membership) {
      try {
        deps.membership.assertCanRemove(nodeId);
        return { ok: true };
      } catch (err) {
        if (isSwarmError(err, ErrorCode.FAILED_PRECONDITION)) return { ok: false, reason: err.message };
        throw err;
      }
    }
    const c = store.view((tx) => managerCounts(tx, nodeId));
    return { ok: c.remaining > 0 && c.reachable >= Math.floor(c.remaining / 2) + 1 };
  }

  async function updateNode(req: ReqOf<'updateNode'>): Promise<ResOf<'updateNode'>> {
    const spec = validNodeSpec(req.spec);
    if (!req.nodeVersion) throw invalidArgument('node_version is required (the meta.version of the node you read)');
    const cur = store.view((tx) => resolveNode(tx, req.nodeId));
    const id = cur.id;
    const wasManager = cur.role === NodeRole.NODE_ROLE_MANAGER || cur.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER;
    if (wasManager && cur.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER && spec.desiredRole === NodeRole.NODE_ROLE_WORKER) {
      const v = quorumVerdict(id);
      if (!v.ok) {
        const c = store.view((tx) => managerCounts(tx, id));
        throw failedPrecondition(`demoting ${id} would leave ${c.reachable} of ${c.total} managers: quorum lost${v.reason ? ` (${v.reason})` : ''}`);
      }
    }
    const node = await store.update((tx) => {
      const n = tx.get('node', id);
      if (!n) throw notFound(`node ${id} not found`);
      const version = n.meta?.version ?? 0;
      if (version !== req.nodeVersion) {
        throw new SwarmError(
          ErrorCode.CONFLICT,
          `update out of sequence: node ${id} is at version ${version}, the update was made against version ${req.nodeVersion}: read the node again and retry`,
        );
      }
      const u = cloneObject('node', n);
      u.spec = spec;
      tx.update('node', u);
      return u.id;
    });
    log.info('node updated', { nodeId: id, availability: spec.availability, desiredRole: spec.desiredRole });
    return { node: cloneObject('node', store.view((tx) => tx.get('node', node))!) };
  }

  async function removeNode(req: ReqOf<'removeNode'>): Promise<ResOf<'removeNode'>> {
    const n = store.view((tx) => resolveNode(tx, req.nodeId));
    const id = n.id;
    if (n.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER) {
      throw failedPrecondition(`node ${id} is a manager: demote it first (swarmctl node demote ${id}), then remove it`);
    }
    if (n.role === NodeRole.NODE_ROLE_MANAGER) {
      throw failedPrecondition(`node ${id} is still leaving the managers (its demotion is in progress): retry once its role is worker`);
    }
    if (n.status?.state === NodeState.NODE_STATE_READY && !req.force) {
      throw failedPrecondition(`node ${id} is READY: stop it first, or remove it anyway with force (swarmctl node rm --force ${id})`);
    }
    await store.update((tx) => {
      if (!tx.get('node', id)) throw notFound(`node ${id} not found`);
      tx.delete('node', id);
      const c = cloneObject('cluster', clusterOf(tx));
      if (!c.removedNodeIds.includes(id)) c.removedNodeIds.push(id);
      tx.update('cluster', c);
    });
    log.info('node removed', { nodeId: id, force: req.force });
    return {};
  }

  // ---- cluster --------------------------------------------------------------------------------

  async function getCluster(req: ReqOf<'getCluster'>): Promise<ResOf<'getCluster'>> {
    return { cluster: publicCluster(store.view((tx) => resolveCluster(tx, req.clusterId))) };
  }

  async function listClusters(): Promise<ResOf<'listClusters'>> {
    return { clusters: store.view((tx) => tx.find('cluster')).map(publicCluster) };
  }

  async function updateCluster(req: ReqOf<'updateCluster'>): Promise<ResOf<'updateCluster'>> {
    if (!req.clusterVersion) throw invalidArgument('cluster_version is required (the meta.version of the cluster you read)');
    const id = await store.update((tx) => {
      const cur = resolveCluster(tx, req.clusterId);
      const version = cur.meta?.version ?? 0;
      if (version !== req.clusterVersion) {
        throw new SwarmError(
          ErrorCode.CONFLICT,
          `update out of sequence: cluster ${cur.id} is at version ${version}, the update was made against version ${req.clusterVersion}: read it again and retry`,
        );
      }
      const c = cloneObject('cluster', cur);
      c.spec = validClusterSpec(cur, req.spec);
      if ((req.rotateWorkerToken || req.rotateManagerToken) && c.rootCa) {
        c.rootCa.joinTokens = rotateJoinTokens(c.rootCa.joinTokens ?? { worker: '', manager: '' }, c.rootCa.caCertDigest, {
          worker: req.rotateWorkerToken,
          manager: req.rotateManagerToken,
        });
      }
      tx.update('cluster', c);
      return c.id;
    });
    log.info('cluster updated', { clusterId: id, rotateWorkerToken: req.rotateWorkerToken, rotateManagerToken: req.rotateManagerToken });
    return { cluster: publicCluster(store.view((tx) => tx.get('cluster', id))!) };
  }

  async function issueAdminCertificate(req: ReqOf<'issueAdminCertificate'>): Promise<ResOf<'issueAdminCertificate'>> {
    if (!req.csrPem?.length) throw invalidArgument('csr_pem is required');
    const csrPem = Buffer.from(req.csrPem).toString('utf8');
    let cn = '';
    try {
      cn = new x509.Pkcs10CertificateRequest(csrPem).subjectName.getField('CN')[0] ?? '';
    } catch {
      /* issueAdminCertificate reports a bad CSR */
    }
    const adminId = ADMIN_ID.test(cn) ? cn : `admin-${newId()}`;
    const ca = await loadCa();
    const cert = await ca.issueAdminCertificate(csrPem, adminId, { now: clock.now() });
    log.info('admin certificate issued', { adminId, notAfter: new Date(cert.notAfter).toISOString() });
    return { certificatePem: cert.certPem, caCertPem: ca.certPem };
  }

  // ---- watch ----------------------------------------------------------------------------------

  function watchEventOf(e: { type: 'create' | 'update' | 'delete'; kind: Kind; object: unknown; version: number }): WatchEvent {
    const ev: WatchEvent = {
      action: e.type === 'create' ? WatchEvent_Action.CREATE : e.type === 'update' ? WatchEvent_Action.UPDATE : WatchEvent_Action.REMOVE,
      node: undefined,
      service: undefined,
      task: undefined,
      network: undefined,
      cluster: undefined,
      version: e.version,
    };
    switch (e.kind) {
      case 'node':
        ev.node = cloneObject('node', e.object as Node);
        break;
      case 'service':
        ev.service = publicService(e.object as never);
        break;
      case 'task':
        ev.task = publicTask(e.object as Task);
        break;
      case 'network':
        ev.network = cloneObject('network', e.object as never);
        break;
      case 'cluster':
        ev.cluster = publicCluster(e.object as Cluster);
        break;
    }
    return ev;
  }

  function watch(local: boolean): grpc.handleServerStreamingCall<WatchRequest, WatchEvent> {
    return (call) => {
      let close = (): void => undefined;
      let ended = false;
      const finish = (err?: unknown) => {
        if (ended) return;
        ended = true;
        close();
        if (err === undefined) call.end();
        else call.emit('error', streamError(err));
      };
      call.on('cancelled', () => finish());
      const run = async (): Promise<void> => {
        await admit(call, local);
        const req = call.request;
        for (const k of req.kinds) if (!isKind(k)) throw invalidArgument(`watch: unknown kind "${k}" (node, service, task, network, cluster)`);
        if (!deps.isLeader()) {
          const md = forwardMetadata(call);
          const def = ControlService.watch;
          const up = leaderClient().makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, {});
          close = () => up.cancel();
          up.on('data', (ev: WatchEvent) => call.write(ev));
          up.on('error', (err) => finish(err));
          up.on('end', () => finish());
          return;
        }
        const kinds = new Set(req.kinds as Kind[]);
        const matcher: EventMatcher = (e) =>
          e.type !== 'commit' &&
          (kinds.size === 0 || kinds.has(e.kind)) &&
          (!req.serviceId || (e.kind === 'task' ? e.object.serviceId === req.serviceId : e.kind === 'service' ? e.object.id === req.serviceId : kinds.has(e.kind)));
        const events = store.watch(matcher);
        close = () => void events.return?.();
        for await (const e of events) {
          if (ended) break;
          if (e.type === 'commit') continue;
          call.write(watchEventOf(e));
        }
      };
      run().then(
        () => undefined,
        (err: unknown) => finish(err),
      );
    };
  }

  // ---- logs -----------------------------------------------------------------------------------

  function logs(local: boolean): grpc.handleServerStreamingCall<LogsRequest, LogLine> {
    return (call) => {
      let close = (): void => undefined;
      let ended = false;
      const finish = (err?: unknown) => {
        if (ended) return;
        ended = true;
        close();
        if (err === undefined) call.end();
        else call.emit('error', streamError(err));
      };
      call.on('cancelled', () => finish());
      const run = async (): Promise<void> => {
        await admit(call, local);
        const req = call.request;
        if (!deps.isLeader()) {
          const md = forwardMetadata(call);
          const def = ControlService.logs;
          const up = leaderClient().makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, req, md, {});
          close = () => up.cancel();
          up.on('data', (l: LogLine) => call.write(l));
          up.on('error', (err) => finish(err));
          up.on('end', () => finish());
          return;
        }
        if (req.serviceIds.length === 0 && req.taskIds.length === 0) throw invalidArgument('logs: name at least one service or task');
        const serviceIds = store.view((tx) => req.serviceIds.map((ref) => resolveService(tx, ref).id));
        const taskIds = store.view((tx) => req.taskIds.map((ref) => tx.get('task', ref)?.id ?? ref));
        const sub = logBroker.open(req, { serviceIds, taskIds, nodeIds: req.nodeIds }, (l) => {
          if (!ended) call.write(l);
        });
        close = () => sub.close();
        for (const l of sub.backlog) call.write(l);
        if (!req.follow) finish();
      };
      run().then(
        () => undefined,
        (err: unknown) => finish(err),
      );
    };
  }

  function handlers(local: boolean): ControlServer {
    return {
      getNode: unary('getNode', local, getNode),
      listNodes: unary('listNodes', local, listNodes),
      updateNode: unary('updateNode', local, updateNode),
      removeNode: unary('removeNode', local, removeNode),
      getService: unary('getService', local, services.getService),
      listServices: unary('listServices', local, services.listServices),
      createService: unary('createService', local, services.createService),
      updateService: unary('updateService', local, services.updateService),
      removeService: unary('removeService', local, services.removeService),
      getTask: unary('getTask', local, services.getTask),
      listTasks: unary('listTasks', local, services.listTasks),
      getNetwork: unary('getNetwork', local, () => Promise.reject(unimplemented('GetNetwork'))),
      listNetworks: unary('listNetworks', local, () => Promise.reject(unimplemented('ListNetworks'))),
      createNetwork: unary('createNetwork', local, () => Promise.reject(unimplemented('CreateNetwork'))),
      removeNetwork: unary('removeNetwork', local, () => Promise.reject(unimplemented('RemoveNetwork'))),
      getCluster: unary('getCluster', local, getCluster),
      listClusters: unary('listClusters', local, listClusters),
      updateCluster: unary('updateCluster', local, updateCluster),
      issueAdminCertificate: unary('issueAdminCertificate', local, issueAdminCertificate),
      watch: watch(local),
      logs: logs(local),
    };
  }

  return {
    server: handlers(false),
    local: handlers(true),
    close: () => {
      fwd?.client.close();
      fwd = undefined;
      pinner?.close?.();
      pinner = undefined;
    },
  };
}
