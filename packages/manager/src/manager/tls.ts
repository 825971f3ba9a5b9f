import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { TlsMaterial } from '../ca/grpc-auth.js';
import type { CertRole } from '../ca/roles.js';

type CaListener = (u: { caCertificate: Buffer } | null) => void;
type IdListener = (u: { certificate: Buffer; privateKey: Buffer } | null) => void;

/**
 * The node's TLS material as a grpc-js certificate provider, so a renewed certificate reaches
 * the server and every channel made from it without restarting anything (new connections use
 * it; open ones keep theirs until they close).
 */
export class NodeTlsProvider implements grpc.experimental.CertificateProvider {
  private ca = new Set<CaListener>();
  private id = new Set<IdListener>();
  private current: TlsMaterial;

  constructor(tls: TlsMaterial) {
    this.current = { ...tls };
  }

  get tls(): TlsMaterial {
    return { ...this.current };
  }

  update(tls: TlsMaterial): void {
    this.current = { ...tls };
    for (const l of this.ca) l(this.caUpdate());
    for (const l of this.id) l(this.idUpdate());
  }

  private caUpdate() {
    return { caCertificate: Buffer.from(this.current.caCertPem) };
  }

  private idUpdate() {
    return { certificate: Buffer.from(this.current.certPem), privateKey: Buffer.from(this.current.keyPem) };
  }

  addCaCertificateListener(l: CaListener): void {
    this.ca.add(l);
    // Asynchronously: grpc-js registers its own watcher only after adding the listener.
    queueMicrotask(() => this.ca.has(l) && l(this.caUpdate()));
  }
  removeCaCertificateListener(l: CaListener): void {
    this.ca.delete(l);
  }
  addIdentityCertificateListener(l: IdListener): void {
    this.id.add(l);
    queueMicrotask(() => this.id.has(l) && l(this.idUpdate()));
  }
  removeIdentityCertificateListener(l: IdListener): void {
    this.id.delete(l);
  }

  /**
   * Server credentials that request a client certificate but do not require one (grpc-js cannot
   * require it per service): the manager's auth interceptor decides per method, and only the
   * CA's bootstrap methods are open to callers without a cluster certificate.
   */
  serverCredentials(): grpc.ServerCredentials {
    return grpc.experimental.createCertificateProviderServerCredentials(this, this, false);
  }

  /**
   * Channel credentials presenting this node's certificate and trusting only the cluster CA; the
   * server must hold a certificate of `serverRole` (checked on its OU, whatever address was dialled).
   */
  channelCredentials(serverRole: CertRole = 'swarm-manager'): grpc.ChannelCredentials {
    return grpc.experimental.createCertificateProviderChannelCredentials(this, this, { checkServerIdentity: serverRoleCheck(serverRole) });
  }
}

/** A checkServerIdentity that accepts any address but requires the server's certificate OU. */
export function serverRoleCheck(role: CertRole): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const ou = cert.subject?.OU;
    const ous = Array.isArray(ou) ? ou : ou ? [ou] : [];
    if (ous.includes(role)) return undefined;
    return new Error(`the server's certificate is not a ${role} certificate (OU ${ous.join(',') || 'none'})`);
  };
}

/** TLS that does not verify the server: only to fetch the root CA, which the caller then pins. */
export function insecureBootstrapCredentials(): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false, checkServerIdentity: () => undefined });
}

/** The node id (CN), role (OU), cluster id (O) and expiry of a PEM certificate (no verification). */
export function certificateFacts(certPem: string): { nodeId: string; role: string; clusterId: string; notAfter: number; notBefore: number } {
  const c = new X509Certificate(certPem);
  const field = (k: string) => c.subject.split('\n').find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1) ?? '';
  return { nodeId: field('CN'), role: field('OU'), clusterId: field('O'), notAfter: Date.parse(c.validTo), notBefore: Date.parse(c.validFrom) };
}
