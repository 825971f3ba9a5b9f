import { isIP } from 'node:net';
import type { Cluster, JoinTokens, RootCa } from '@swarmd/proto';
import { SwarmError, ErrorCode, invalidArgument, wrapError } from '@swarmd/common/errors';
import {
  x509,
  EC_ALG,
  type CryptoKey,
  type RandomBytes,
  caDigest,
  defaultRandomBytes,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  parseCertificate,
  serialNumber,
} from './x509.js';
import { CertRole } from './roles.js';
import { generateJoinTokens } from './tokens.js';

export const ROOT_CA_CN = 'swarm-ca';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Swarm's defaults: a 20-year root, 90-day node certificates. */
export const DEFAULT_CA_EXPIRY_MS = 20 * 365 * DAY;
export const DEFAULT_NODE_CERT_EXPIRY_MS = 90 * DAY;
export const MIN_NODE_CERT_EXPIRY_MS = HOUR;
/** Certificates start this far in the past, for clocks a little behind ours. */
export const BACKDATE_MS = 5 * 60_000;

/** The node certificate lifetime a cluster asks for (spec.caConfig.nodeCertExpiryMs), else the default. */
export function nodeCertExpiryOf(cluster: Readonly<Cluster> | undefined): number {
  const ms = cluster?.spec?.caConfig?.nodeCertExpiryMs ?? 0;
  return ms > 0 ? Math.max(ms, MIN_NODE_CERT_EXPIRY_MS) : DEFAULT_NODE_CERT_EXPIRY_MS;
}

export interface IssueOptions {
  /** Issue time (unix ms): notBefore = now - BACKDATE_MS, notAfter = now + expiryMs. */
  now: number;
  expiryMs?: number;
  /** Addresses the holder is reached at (advertise address; host[:port], IP or DNS name): SANs. */
  addresses?: readonly string[];
}

export interface IssuedCertificate {
  certPem: string;
  notBefore: number;
  notAfter: number;
  serial: string;
}

/**
 * The cluster's root CA: an ECDSA P-256 self-signed certificate and its key. Its key lives in the
 * replicated store (Cluster.rootCa) so any manager can sign; it never goes to workers.
 */
export class ClusterCa {
  private constructor(
    readonly clusterId: string,
    readonly cert: x509.X509Certificate,
    readonly certPem: string,
    private readonly key: CryptoKey,
    /** PKCS#8 PEM of the CA key (for the store); empty when loaded without it. */
    readonly keyPem: string,
    private readonly randomBytes: RandomBytes,
  ) {}

  /** sha256 of the CA certificate (base36, as in join tokens). */
  get digest(): string {
    return caDigest(this.cert);
  }

  static async create(opts: { clusterId: string; now: number; expiryMs?: number; randomBytes?: RandomBytes }): Promise<ClusterCa> {
    if (!opts.clusterId) throw invalidArgument('cluster CA: a cluster id is needed');
    const randomBytes = opts.randomBytes ?? defaultRandomBytes;
    const keys = await generateKeyPair();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(randomBytes),
      name: [{ CN: [ROOT_CA_CN] }, { O: [opts.clusterId] }],
      notBefore: new Date(opts.now - BACKDATE_MS),
      notAfter: new Date(opts.now + (opts.expiryMs ?? DEFAULT_CA_EXPIRY_MS)),
      signingAlgorithm: EC_ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const keyPem = await exportPrivateKeyPem(keys.privateKey);
    return new ClusterCa(opts.clusterId, cert, cert.toString('pem'), await importPrivateKeyPem(keyPem), keyPem, randomBytes);
  }

  /** A CA from its certificate and key (e.g. from Cluster.rootCa). */
  static async load(opts: { clusterId: string; certPem: string; keyPem: string; randomBytes?: RandomBytes }): Promise<ClusterCa> {
    let cert: x509.X509Certificate;
    let key: CryptoKey;
    try {
      cert = parseCertificate(opts.certPem);
      key = await importPrivateKeyPem(opts.keyPem);
    } catch (err) {
      throw wrapError(ErrorCode.INVALID_ARGUMENT, 'cluster CA: cannot load the root certificate and key', err);
    }
    return new ClusterCa(opts.clusterId, cert, cert.toString('pem'), key, opts.keyPem, opts.randomBytes ?? defaultRandomBytes);
  }

  static async fromCluster(cluster: Readonly<Cluster>, randomBytes?: RandomBytes): Promise<ClusterCa> {
    const rc = cluster.rootCa;
    if (!rc?.caCertPem || rc.caKeyPem.length === 0) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `cluster ${cluster.id} has no root CA`);
    return ClusterCa.load({ clusterId: cluster.id, certPem: rc.caCertPem, keyPem: Buffer.from(rc.caKeyPem).toString('utf8'), ...(randomBytes ? { randomBytes } : {}) });
  }

  /** Cluster.rootCa for the store, with join tokens (fresh ones unless given). */
  toRootCa(tokens?: JoinTokens): RootCa {
    return {
      caCertPem: this.certPem,
      caKeyPem: Buffer.from(this.keyPem, 'utf8'),
      caCertDigest: this.digest,
      joinTokens: tokens ?? generateJoinTokens(this.digest, this.randomBytes),
    };
  }

  /**
   * Signs a node certificate for the key in `csrPem`: CN = node id, OU = role, O = cluster id.
   * Only the CSR's public key is used (its subject is ignored: the manager decides who the node
   * is). Usable for TLS client and server auth; SANs: the role (the name peers verify managers
   * by), the node id, and the node's addresses.
   */
  async issueNodeCertificate(csrPem: string, role: CertRole, nodeId: string, opts: IssueOptions): Promise<IssuedCertificate> {
    if (!nodeId || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(nodeId)) throw invalidArgument(`certificate: bad node id "${nodeId}"`);
    const publicKey = await checkCsr(csrPem);
    const notBefore = opts.now - BACKDATE_MS;
    const notAfter = opts.now + (opts.expiryMs ?? DEFAULT_NODE_CERT_EXPIRY_MS);
    const names: x509.JsonGeneralName[] = [
      { type: 'dns', value: role },
      { type: 'dns', value: nodeId },
    ];
    for (const a of opts.addresses ?? []) {
      const host = hostOf(a);
      if (host && !names.some((n) => n.value === host)) names.push({ type: isIP(host) ? 'ip' : 'dns', value: host });
    }
    const serial = serialNumber(this.randomBytes);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: [{ CN: [nodeId] }, { OU: [role] }, { O: [this.clusterId] }],
      issuer: this.cert.subjectName,
      notBefore: new Date(notBefore),
      notAfter: new Date(notAfter),
      signingAlgorithm: EC_ALG,
      publicKey,
      signingKey: this.key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension(names),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert.publicKey),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
      ],
    });
    return { certPem: cert.toString('pem'), notBefore: cert.notBefore.getTime(), notAfter: cert.notAfter.getTime(), serial };
  }

  /** A client certificate for remote swarmctl: CN = admin id, OU = swarm-admin. */
  async issueAdminCertificate(csrPem: string, adminId: string, opts: Omit<IssueOptions, 'addresses'>): Promise<IssuedCertificate> {
    return this.issueNodeCertificate(csrPem, CertRole.ADMIN, adminId, opts);
  }
}

/** Verifies the CSR's own signature and that it carries an ECDSA P-256 key; returns the key. */
async function checkCsr(csrPem: string): Promise<x509.PublicKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw wrapError(ErrorCode.INVALID_ARGUMENT, 'certificate request: not a PEM PKCS#10 request', err);
  }
  if (!(await csr.verify())) throw invalidArgument('certificate request: its signature does not verify');
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    throw invalidArgument(`certificate request: the key must be ECDSA P-256 (got ${alg.name ?? '?'} ${alg.namedCurve ?? ''})`.trim());
  }
  return csr.publicKey;
}

/** "10.0.0.1:2377" → "10.0.0.1"; "[::1]:2377" → "::1"; "host" → "host". */
export function hostOf(addr: string): string {
  const a = addr.trim();
  if (a.startsWith('[')) return a.slice(1, a.indexOf(']') > 0 ? a.indexOf(']') : undefined);
  if (isIP(a)) return a;
  const i = a.lastIndexOf(':');
  return i > 0 && a.indexOf(':') === i ? a.slice(0, i) : a;
}
