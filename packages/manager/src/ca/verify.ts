import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { x509, parseCertificate } from './x509.js';
import { type CertRole, isCertRole } from './roles.js';

/** Who a peer is, as its certificate says (never as its requests say). */
export interface PeerIdentity {
  /** CN: the node id (or the admin id of an admin certificate). */
  nodeId: string;
  /** OU. */
  role: CertRole;
  /** O. */
  clusterId: string;
  notBefore: number;
  notAfter: number;
}

export interface VerifyOptions {
  /** The cluster's root CA certificate: only certificates it signed are accepted. */
  caCertPem: string;
  /** The time to check validity at (unix ms); an input, so tests can move it. */
  now: number;
  /** When given, the certificate must name this cluster. */
  clusterId?: string;
  /** Removed nodes (Cluster.removedNodeIds): their certificates are refused though still valid. */
  isRemoved?: (nodeId: string) => boolean;
}

const refuse = (why: string, details?: Record<string, unknown>) =>
  new SwarmError(ErrorCode.UNAUTHENTICATED, `peer certificate refused: ${why}`, details ? { details } : {});

const caCache = new Map<string, x509.X509Certificate>();
function caOf(pem: string): x509.X509Certificate {
  let ca = caCache.get(pem);
  if (!ca) {
    ca = parseCertificate(pem);
    if (caCache.size > 16) caCache.clear();
    caCache.set(pem, ca);
  }
  return ca;
}

/**
 * Checks a peer's certificate against the cluster CA and returns its identity. Refuses
 * (UNAUTHENTICATED, with the reason) a certificate from another CA, outside its validity at
 * `now`, of an unknown role, of another cluster, or of a removed node.
 */
export async function verifyPeerCertificate(cert: string | Uint8Array | x509.X509Certificate, opts: VerifyOptions): Promise<PeerIdentity> {
  const id = cert instanceof Uint8Array ? await signedFactsCached(cert, opts.caCertPem) : await signedFacts(cert, opts.caCertPem);
  if (opts.now < id.notBefore) throw refuse(`it is not valid before ${new Date(id.notBefore).toISOString()}`, { notBefore: id.notBefore });
  if (opts.now > id.notAfter) throw refuse(`it expired at ${new Date(id.notAfter).toISOString()}`, { notAfter: id.notAfter });
  if (opts.clusterId !== undefined && id.clusterId !== opts.clusterId) throw refuse(`it is for cluster ${id.clusterId}, not ${opts.clusterId}`);
  if (opts.isRemoved?.(id.nodeId)) throw refuse(`node ${id.nodeId} was removed from the cluster`, { nodeId: id.nodeId });
  return { ...id };
}

/**
 * The node id (CN) of a certificate that was already verified (e.g. by the port's auth
 * interceptor), or undefined when it does not parse.
 */
export function certificateNodeId(der: Uint8Array): string | undefined {
  try {
    return parseCertificate(der).subjectName.getField('CN')[0] || undefined;
  } catch {
    return undefined;
  }
}

/** What never changes for a certificate and a CA: it parses, the CA signed it, and its fields. */
async function signedFacts(cert: string | Uint8Array | x509.X509Certificate, caCertPem: string): Promise<PeerIdentity> {
  let c: x509.X509Certificate;
  try {
    c = parseCertificate(cert);
  } catch (err) {
    throw new SwarmError(ErrorCode.UNAUTHENTICATED, 'peer certificate refused: it cannot be parsed', { cause: err });
  }
  const ca = caOf(caCertPem);
  if (c.issuer !== ca.subject) throw refuse(`it was issued by "${c.issuer}", not by this cluster's CA`);
  let signed = false;
  try {
    signed = await c.verify({ publicKey: ca.publicKey, signatureOnly: true });
  } catch {
    signed = false;
  }
  if (!signed) throw refuse("its signature is not the cluster CA's (a foreign CA with the same name?)");
  const nodeId = c.subjectName.getField('CN')[0] ?? '';
  const role = c.subjectName.getField('OU')[0] ?? '';
  const clusterId = c.subjectName.getField('O')[0] ?? '';
  if (!nodeId) throw refuse('it has no CN (node id)');
  if (!isCertRole(role)) throw refuse(`unknown role (OU) "${role}"`);
  if (!clusterId) throw refuse('it has no O (cluster id)');
  return { nodeId, role, clusterId, notBefore: c.notBefore.getTime(), notAfter: c.notAfter.getTime() };
}

/**
 * Certificates (DER) whose signature by a CA was checked, with their facts: every RPC of an agent
 * presents the same certificate, and parsing and verifying it again costs ~1-2 ms of CPU per
 * call (at 5,000 nodes, heartbeats alone would take more than a core). Only successes are kept;
 * the validity window, cluster and removal are checked on every call. Bounded: the oldest go first.
 */
const signedCache = new Map<string, PeerIdentity>();
const SIGNED_CACHE_MAX = 20_000;

async function signedFactsCached(der: Uint8Array, caCertPem: string): Promise<PeerIdentity> {
  const key = `${caCertPem}\n${Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64')}`;
  const hit = signedCache.get(key);
  if (hit) return hit;
  const facts = await signedFacts(der, caCertPem);
  if (signedCache.size >= SIGNED_CACHE_MAX) signedCache.delete(signedCache.keys().next().value!);
  signedCache.set(key, facts);
  return facts;
}
