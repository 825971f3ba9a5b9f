import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, describeError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import {
  CaClient,
  NodeCaClient,
  NodeCertificateStatusResponse_State,
  NodeRole,
  type IssueNodeCertificateResponse,
  type NodeCertificateStatusResponse,
} from '@swarmd/proto';
// Only the manager package's node-side TLS helpers (node:crypto and grpc-js): a worker loads
// neither the manager nor @peculiar/x509 until it joins, renews or is promoted (below).
import type { KeyAndCsr } from '@swarmd/manager/ca/csr';
import type { TlsMaterial } from '@swarmd/manager/ca/grpc-auth';
import { certificateFacts, insecureBootstrapCredentials, NodeTlsProvider } from '@swarmd/manager/manager/tls';

/** A fresh node key and CSR (@peculiar/x509, loaded on the first join or renewal). */
async function createKeyAndCsr(): Promise<KeyAndCsr> {
  return (await import('@swarmd/manager/ca/csr')).createKeyAndCsr();
}

const RPC_MS = 10_000;

function unary<Req, Res>(fn: (req: Req, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    fn(req, new grpc.Metadata(), { deadline: Date.now() + RPC_MS }, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

function callError(what: string, addr: string, err: unknown): SwarmError {
  const e = err as grpc.ServiceError;
  const code =
    e.code === grpc.status.UNAUTHENTICATED
      ? ErrorCode.UNAUTHENTICATED
      : e.code === grpc.status.PERMISSION_DENIED
        ? ErrorCode.PERMISSION_DENIED
        : e.code === grpc.status.INVALID_ARGUMENT
          ? ErrorCode.INVALID_ARGUMENT
          : e.code === grpc.status.NOT_FOUND
            ? ErrorCode.NOT_FOUND
            : ErrorCode.UNAVAILABLE;
  return new SwarmError(code, `${what} (manager ${addr}): ${e.details ?? describeError(err)}`, { cause: err });
}

/** The cluster's root CA from `addr`, fetched over TLS without trusting it, then pinned by the token's digest. */
export async function fetchPinnedRootCa(addr: string, token: string): Promise<string> {
  const { caDigestMatches, parseJoinToken } = await import('@swarmd/manager/ca/tokens');
  parseJoinToken(token); // a malformed token fails here, clearly, before any network
  const client = new CaClient(addr, insecureBootstrapCredentials());
  try {
    const r = await unary(client.getRootCaCertificate.bind(client), {});
    if (!caDigestMatches(token, r.certificatePem)) {
      throw new SwarmError(
        ErrorCode.UNAUTHENTICATED,
        `CA digest does not match the join token: the manager at ${addr} presents a different cluster CA (wrong token, or not the cluster you meant); refusing to trust it`,
      );
    }
    return r.certificatePem;
  } catch (err) {
    if (err instanceof SwarmError) throw err;
    throw callError('cannot fetch the root CA certificate', addr, err);
  } finally {
    client.close();
  }
}

/** Waits for NodeCertificateStatus = ISSUED (the leader writes the certificate with the Node). */
/** Whether a certificate is for the public half of this private key. */
export function certMatchesKey(certPem: string, keyPem: string): boolean {
  const a = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  const b = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  return Buffer.compare(a, b) === 0;
}

async function pollIssued(client: NodeCaClient, addr: string, nodeId: string, timeoutMs: number, keyPem: string): Promise<NodeCertificateStatusResponse> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    let r: NodeCertificateStatusResponse | undefined;
    try {
      r = await unary(client.nodeCertificateStatus.bind(client), { nodeId });
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.UNAVAILABLE || Date.now() > until) throw callError('certificate status', addr, err);
    }
    if (r?.state === NodeCertificateStatusResponse_State.ISSUED && r.certificatePem && certMatchesKey(r.certificatePem, keyPem)) return r;
    if (r?.state === NodeCertificateStatusResponse_State.FAILED) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `certificate issuance failed: ${r.error}`);
    if (Date.now() > until) throw new SwarmError(ErrorCode.DEADLINE_EXCEEDED, `the certificate of node ${nodeId} was not issued within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

export interface IssuedNodeTls {
  tls: TlsMaterial;
  nodeId: string;
  role: 'swarm-manager' | 'swarm-worker';
  managerAddrs: string[];
}

/**
 * Joins with a token: pins the CA by the token's digest, makes a key and CSR, asks NodeCa for a
 * certificate (the token decides the role) and waits until it is issued. The key never leaves.
 */
export async function joinWithToken(o: { managerAddr: string; token: string; advertiseAddr: string; logger: Logger; timeoutMs?: number }): Promise<IssuedNodeTls> {
  const caPem = await fetchPinnedRootCa(o.managerAddr, o.token);
  o.logger.info('root CA pinned by the join token', { manager: o.managerAddr });
  const client = pinnedNodeCaClient(o.managerAddr, caPem);
  try {
    return await requestNodeCertificate({ ...o, client, caPem });
  } finally {
    client.close();
  }
}

/** A NodeCa client that trusts only the pinned CA and presents no client certificate yet. */
export function pinnedNodeCaClient(managerAddr: string, caPem: string): NodeCaClient {
  const creds = grpc.credentials.createSsl(Buffer.from(caPem), null, null, { checkServerIdentity: () => undefined });
  return new NodeCaClient(managerAddr, creds);
}

/**
 * The join after the CA is pinned, over `client` (pinnedNodeCaClient; many joins may share one):
 * a fresh key and CSR, IssueNodeCertificate with the token, then NodeCertificateStatus until ISSUED.
 */
export async function requestNodeCertificate(o: { client: NodeCaClient; caPem: string; managerAddr: string; token: string; advertiseAddr: string; timeoutMs?: number }): Promise<IssuedNodeTls> {
  const { client, caPem } = o;
  const { keyPem, csrPem } = await createKeyAndCsr();
  let issued: IssueNodeCertificateResponse;
  try {
    issued = await unary(client.issueNodeCertificate.bind(client), {
      csrPem: Buffer.from(csrPem),
      token: o.token,
      role: NodeRole.NODE_ROLE_WORKER,
      advertiseAddr: o.advertiseAddr,
    });
  } catch (err) {
    throw callError('the join token was refused', o.managerAddr, err);
  }
  const st = await pollIssued(client, o.managerAddr, issued.nodeId, o.timeoutMs ?? 30_000, keyPem);
  const tls = { caCertPem: st.caCertPem || caPem, certPem: st.certificatePem, keyPem };
  const f = certificateFacts(tls.certPem);
  return { tls, nodeId: issued.nodeId, role: f.role as IssuedNodeTls['role'], managerAddrs: st.managerAddrs };
}

/** Renewal with the current (valid) certificate: a fresh key; the role is the cluster's decision. */
export async function renewCertificate(o: { managerAddr: string; tls: TlsMaterial; advertiseAddr: string; timeoutMs?: number }): Promise<IssuedNodeTls> {
  const { keyPem, csrPem } = await createKeyAndCsr();
  const client = new NodeCaClient(o.managerAddr, new NodeTlsProvider(o.tls).channelCredentials('swarm-manager'));
  try {
    let issued: IssueNodeCertificateResponse;
    try {
      issued = await unary(client.issueNodeCertificate.bind(client), { csrPem: Buffer.from(csrPem), token: '', role: NodeRole.NODE_ROLE_WORKER, advertiseAddr: o.advertiseAddr });
    } catch (err) {
      throw callError('certificate renewal refused', o.managerAddr, err);
    }
    const st = await pollIssued(client, o.managerAddr, issued.nodeId, o.timeoutMs ?? 30_000, keyPem);
    const tls = { caCertPem: st.caCertPem || o.tls.caCertPem, certPem: st.certificatePem, keyPem };
    // The status carries the Node's current certificate: make sure it is the one for our key.
    const f = certificateFacts(tls.certPem);
    return { tls, nodeId: issued.nodeId, role: f.role as IssuedNodeTls['role'], managerAddrs: st.managerAddrs };
  } finally {
    client.close();
  }
}
