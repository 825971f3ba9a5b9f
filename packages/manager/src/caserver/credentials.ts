import * as grpc from '@grpc/grpc-js';
import type { TlsMaterial } from '../ca/grpc-auth.js';

/**
 * The TLS material of a server, changeable while it runs (certificate renewal): a grpc-js
 * certificate provider for both the CA bundle and the identity.
 */
export class TlsProvider implements grpc.experimental.CertificateProvider {
  private caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private idListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  constructor(private tls: TlsMaterial) {}

  get current(): TlsMaterial {
    return this.tls;
  }

  update(tls: TlsMaterial): void {
    this.tls = tls;
    for (const l of this.caListeners) l({ caCertificate: Buffer.from(tls.caCertPem) });
    for (const l of this.idListeners) l({ certificate: Buffer.from(tls.certPem), privateKey: Buffer.from(tls.keyPem) });
  }

  addCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(l);
    // Asynchronously: grpc-js registers its own watcher only after adding this listener.
    queueMicrotask(() => this.caListeners.has(l) && l({ caCertificate: Buffer.from(this.tls.caCertPem) }));
  }
  removeCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.idListeners.add(l);
    queueMicrotask(() => this.idListeners.has(l) && l({ certificate: Buffer.from(this.tls.certPem), privateKey: Buffer.from(this.tls.keyPem) }));
  }
  removeIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.idListeners.delete(l);
  }
}

/**
 * Server credentials for a manager's one port (docs/cluster.md): TLS always; a client certificate
 * is asked for and verified against the cluster CA but not required, because joining nodes have
 * none yet (Ca.GetRootCaCertificate, NodeCa.IssueNodeCertificate with a token). A connection
 * whose certificate fails verification carries no identity, so every other handler refuses it
 * (peerIdentity → UNAUTHENTICATED).
 */
export function nodeServerCredentials(tls: TlsMaterial | TlsProvider): grpc.ServerCredentials {
  const p = tls instanceof TlsProvider ? tls : new TlsProvider(tls);
  // The same provider serves both roles (grpc-js swaps the two arguments internally in 1.14).
  return grpc.experimental.createCertificateProviderServerCredentials(p, p, false);
}
