import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, grpcStatusOf, isSwarmError, describeError, reasonOf, REASON_METADATA_KEY } from '@swarmd/common/errors';
import { type PeerIdentity, type VerifyOptions, verifyPeerCertificate } from './verify.js';
import type { CertRole } from './roles.js';

/** What a gRPC server call offers about its transport (grpc-js ≥ 1.13: getAuthContext). */
export interface CallWithAuth {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: { raw?: Buffer } } | null;
}

/** Verification options that may change while the server runs (the removed list, the clock). */
export type VerifyOptionsSource = VerifyOptions | (() => VerifyOptions);

/**
 * The peer's identity from its TLS client certificate (never from the request body).
 * UNAUTHENTICATED without mutual TLS or with a certificate the cluster does not accept.
 */
export async function peerIdentity(call: CallWithAuth, opts: VerifyOptionsSource): Promise<PeerIdentity> {
  const ctx = call.getAuthContext();
  const raw = ctx?.sslPeerCertificate?.raw;
  if (ctx?.transportSecurityType !== 'ssl' || !raw) {
    throw new SwarmError(ErrorCode.UNAUTHENTICATED, 'no verified client certificate on this connection (mutual TLS required)');
  }
  return verifyPeerCertificate(new Uint8Array(raw), typeof opts === 'function' ? opts() : opts);
}

/**
 * The peer's identity if its role is one of `roles`; PERMISSION_DENIED otherwise. E.g. the control
 * API: `authorize(call, ['swarm-manager', 'swarm-admin'], opts)`; the dispatcher: any node role.
 */
export async function authorize(call: CallWithAuth, roles: readonly CertRole[], opts: VerifyOptionsSource): Promise<PeerIdentity> {
  const id = await peerIdentity(call, opts);
  if (!roles.includes(id.role)) {
    throw new SwarmError(ErrorCode.PERMISSION_DENIED, `${id.role} ${id.nodeId} may not call this method (allowed: ${roles.join(', ')})`, {
      details: { nodeId: id.nodeId, role: id.role },
    });
  }
  return id;
}

/** A SwarmError (or anything) as a gRPC status for a unary callback or stream destroy. */
export function toGrpcError(err: unknown): Partial<grpc.StatusObject> & Error {
  const code = isSwarmError(err) ? grpcStatusOf[err.code] : grpc.status.INTERNAL;
  const reason = reasonOf(err);
  const metadata = new grpc.Metadata();
  if (reason) metadata.set(REASON_METADATA_KEY, reason);
  return Object.assign(new Error(describeError(err)), { code, details: describeError(err), metadata });
}

export interface TlsMaterial {
  caCertPem: string;
  certPem: string;
  keyPem: string;
}

/** Server credentials that require a client certificate signed by the cluster CA. */
export function serverCredentials(t: TlsMaterial): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(Buffer.from(t.caCertPem), [{ private_key: Buffer.from(t.keyPem), cert_chain: Buffer.from(t.certPem) }], true);
}

/** Client credentials presenting the node's certificate and trusting only the cluster CA. */
export function clientCredentials(t: TlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(Buffer.from(t.caCertPem), Buffer.from(t.keyPem), Buffer.from(t.certPem));
}

/**
 * Channel options making the client check that the server holds a certificate of `role`
 * (its SANs carry the role: swarm-manager), whatever address it was dialled at.
 */
export function expectServerRole(role: CertRole): grpc.ChannelOptions {
  return { 'grpc.ssl_target_name_override': role, 'grpc.default_authority': role };
}
