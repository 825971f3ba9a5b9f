/**
 * The CA services (after SwarmKit's ca/server.go): the root certificate for anyone, node
 * certificates for a joining node with a token, and renewals for a node with a valid
 * certificate. Any manager can sign (the CA key is in the replicated Cluster object), but the
 * Node object is written in the same step, so followers forward issuance to the leader.
 */
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, invalidArgument, notFound } from '@swarmd/common/errors';
import {
  type CaServer,
  type GetRootCaCertificateResponse,
  type IssueNodeCertificateRequest,
  type IssueNodeCertificateResponse,
  NodeAvailability,
  NodeCaClient,
  type NodeCaServer,
  NodeCaService,
  NodeCertificateStatusResponse_State,
  type NodeCertificateStatusRequest,
  type NodeCertificateStatusResponse,
  NodeRole,
  NodeState,
} from '@swarmd/proto';
import { cloneObject, makeObject } from '../store/kinds.js';
import { newId } from '../ids.js';
import { ClusterCa, nodeCertExpiryOf } from '../ca/cluster-ca.js';
import { CertRole, certRoleOfNodeRole } from '../ca/roles.js';
import { peerIdentity } from '../ca/grpc-auth.js';
import { validateJoinToken } from '../ca/tokens.js';
import { type MethodDef, type ServiceDeps, clockOf, clusterOf, loggerOf, managersOf, peerHost, reply, verifyOptionsOf, LeaderForwarder } from '../rpc-kit/index.js';

/** Set by a follower forwarding a renewal: the node id its caller's certificate proved. Trusted only from a manager. */
export const FORWARDED_NODE_HEADER = 'swarm-forwarded-node-id';

export interface CaServerDeps extends ServiceDeps {
  /** The cluster CA with its key. Default: loaded from the store's Cluster (cached per CA certificate). */
  ca?(): Promise<ClusterCa>;
  /** A NodeCa client to the leader (followers forward issuance and status through it). */
  forwardCa?(): NodeCaClient | undefined;
  /** Without `forwardCa`: credentials to dial leaderAddr() (a manager certificate). */
  managerCredentials?(): grpc.ChannelCredentials;
  /** New node ids (default: newId()). */
  newNodeId?(): string;
}

export interface CaServices {
  /** `Ca`: open to anyone (no client certificate needed). */
  readonly ca: CaServer;
  /** `NodeCa`: a join token, or a valid node certificate to renew. */
  readonly nodeCa: NodeCaServer;
  close(): void;
}

type Call = grpc.ServerUnaryCall<unknown, unknown>;

export function createCaServices(deps: CaServerDeps): CaServices {
  const store = deps.store;
  const clock = clockOf(deps);
  const log = loggerOf(deps, 'manager/ca');
  const verify = verifyOptionsOf(store, clock);
  let caCache: { pem: string; ca: Promise<ClusterCa> } | undefined;
  const leader = new LeaderForwarder(deps, () => deps.forwardCa?.());

  const loadCa = (): Promise<ClusterCa> => {
    if (deps.ca) return deps.ca();
    const c = store.view(clusterOf);
    if (caCache?.pem !== c.rootCa!.caCertPem) caCache = { pem: c.rootCa!.caCertPem, ca: ClusterCa.fromCluster(c) };
    return caCache.ca;
  };

  function forward<Req, Res>(def: MethodDef<Req, Res>, req: Req, call: Call, forwardedNode?: string): Promise<Res> {
    return leader.unary(def, req, call, forwardedNode ? { [FORWARDED_NODE_HEADER]: forwardedNode } : {});
  }

  async function getRootCaCertificate(): Promise<GetRootCaCertificateResponse> {
    return { certificatePem: store.view(clusterOf).rootCa!.caCertPem };
  }

  async function issueNodeCertificate(call: grpc.ServerUnaryCall<IssueNodeCertificateRequest, IssueNodeCertificateResponse>): Promise<IssueNodeCertificateResponse> {
    const req = call.request;
    if (!req.csrPem?.length) throw invalidArgument('csr_pem is required (a PEM PKCS#10 request for the node key)');
    const csrPem = Buffer.from(req.csrPem).toString('utf8');
    const addresses = [req.advertiseAddr, peerHost(call)].filter((a) => !!a);

    if (req.token) {
      if (!deps.isLeader()) return forward(NodeCaService.issueNodeCertificate, req, call as Call);
      const cluster = store.view(clusterOf);
      const rc = cluster.rootCa!;
      let role: NodeRole;
      try {
        role = validateJoinToken(req.token, rc.joinTokens ?? { worker: '', manager: '' }, rc.caCertDigest);
      } catch (err) {
        if (err instanceof SwarmError) throw new SwarmError(err.code, `invalid join token: ${err.message}`, { cause: err });
        throw err;
      }
      const nodeId = deps.newNodeId?.() ?? newId();
      const ca = await loadCa();
      const cert = await ca.issueNodeCertificate(csrPem, certRoleOfNodeRole(role), nodeId, { now: clock.now(), expiryMs: nodeCertExpiryOf(cluster), addresses });
      await store.update((tx) =>
        tx.create(
          'node',
          makeObject('node', {
            id: nodeId,
            role,
            spec: { annotations: { name: '', labels: {} }, desiredRole: role, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
            status: { state: NodeState.NODE_STATE_UNKNOWN, message: 'joined: waiting for its first session', addr: peerHost(call) },
            certificatePem: cert.certPem,
          }),
        ),
      );
      log.info('node joined', { nodeId, role: certRoleOfNodeRole(role), addr: peerHost(call) });
      return { nodeId, role };
    }

    // Renewal: the caller's certificate says who it is; the store says what it may be.
    let nodeId: string;
    const forwarded = call.metadata.get(FORWARDED_NODE_HEADER)[0];
    let id;
    try {
      id = await peerIdentity(call, verify);
    } catch (err) {
      if (err instanceof SwarmError && err.code === ErrorCode.UNAUTHENTICATED) {
        throw new SwarmError(ErrorCode.UNAUTHENTICATED, `a join token is needed (or a valid node certificate to renew): ${err.message}`, { cause: err });
      }
      throw err;
    }
    if (forwarded !== undefined && id.role === CertRole.MANAGER) nodeId = String(forwarded);
    else if (id.role === CertRole.ADMIN) throw new SwarmError(ErrorCode.PERMISSION_DENIED, `admin certificates are not renewed here (${id.nodeId}): ask for a new one with IssueAdminCertificate`);
    else nodeId = id.nodeId;
    if (!deps.isLeader()) return forward(NodeCaService.issueNodeCertificate, req, call as Call, nodeId);

    const cluster = store.view(clusterOf);
    if (cluster.removedNodeIds.includes(nodeId)) throw new SwarmError(ErrorCode.UNAUTHENTICATED, `node ${nodeId} was removed from the cluster`);
    const node = store.view((tx) => tx.get('node', nodeId));
    if (!node) throw notFound(`node ${nodeId} is not in the cluster: join again with a token`);
    // A promotion takes effect at renewal; a demotion once the node has left Raft (role = worker).
    const role = node.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER ? NodeRole.NODE_ROLE_MANAGER : node.role;
    const ca = await loadCa();
    const cert = await ca.issueNodeCertificate(csrPem, certRoleOfNodeRole(role), nodeId, { now: clock.now(), expiryMs: nodeCertExpiryOf(cluster), addresses });
    await store.update((tx) => {
      const cur = tx.get('node', nodeId);
      if (!cur) throw notFound(`node ${nodeId} was removed meanwhile`);
      const n = cloneObject('node', cur);
      n.certificatePem = cert.certPem;
      n.role = role;
      tx.update('node', n);
    });
    log.info('node certificate renewed', { nodeId, role: certRoleOfNodeRole(role), notAfter: new Date(cert.notAfter).toISOString() });
    return { nodeId, role };
  }

  async function nodeCertificateStatus(call: grpc.ServerUnaryCall<NodeCertificateStatusRequest, NodeCertificateStatusResponse>): Promise<NodeCertificateStatusResponse> {
    const req = call.request;
    if (!req.nodeId) throw invalidArgument('node_id is required');
    if (!deps.isLeader()) return forward(NodeCaService.nodeCertificateStatus, req, call as Call);
    const { node, cluster, managers } = store.view((tx) => ({ node: tx.get('node', req.nodeId), cluster: clusterOf(tx), managers: managersOf(tx) }));
    if (!node) throw notFound(`node ${req.nodeId} not found`);
    const mgrs = deps.managers?.() ?? managers;
    return {
      state: node.certificatePem ? NodeCertificateStatusResponse_State.ISSUED : NodeCertificateStatusResponse_State.PENDING,
      certificatePem: node.certificatePem,
      caCertPem: cluster.rootCa!.caCertPem,
      error: '',
      managerAddrs: mgrs.map((m) => m.addr),
    };
  }

  return {
    ca: { getRootCaCertificate: (_call, cb) => reply(getRootCaCertificate(), cb, log, 'GetRootCaCertificate') },
    nodeCa: {
      issueNodeCertificate: (call, cb) => reply(issueNodeCertificate(call), cb, log, 'IssueNodeCertificate'),
      nodeCertificateStatus: (call, cb) => reply(nodeCertificateStatus(call), cb, log, 'NodeCertificateStatus'),
    },
    close: () => {
      leader.close();
    },
  };
}
