import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '@swarmd/common/errors';

/** The node's TLS material, as PEM text (DIR/certs/{node-key,node,ca}.pem). */
export interface AgentTls {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** Who a certificate says its holder is: CN = node id, OU = role, O = cluster id. */
export interface CertIdentity {
  nodeId: string;
  role: string;
  clusterId: string;
}

export function certIdentity(certPem: string): CertIdentity {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw invalidArgument(`node certificate: not a PEM certificate: ${(err as Error).message}`, { cause: err });
  }
  const fields = new Map<string, string>();
  for (const line of cert.subject.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) fields.set(line.slice(0, i), line.slice(i + 1));
  }
  const nodeId = fields.get('CN');
  if (!nodeId) throw invalidArgument(`node certificate has no CN (subject ${cert.subject.replace(/\n/g, ', ')})`);
  return { nodeId, role: fields.get('OU') ?? '', clusterId: fields.get('O') ?? '' };
}

/** mTLS channel credentials: present the node certificate, trust only the cluster CA. */
export function channelCredentials(tls: AgentTls): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(Buffer.from(tls.caPem), Buffer.from(tls.keyPem), Buffer.from(tls.certPem));
}

/**
 * Managers are dialled by address, but their certificates name them by role and node id (the
 * address SANs may not match the one we dial, e.g. 0.0.0.0 listeners): check that the server holds
 * a cluster certificate of role swarm-manager, which is what matters.
 */
export const MANAGER_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.ssl_target_name_override': 'swarm-manager',
  'grpc.default_authority': 'swarm-manager',
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2_000,
};
