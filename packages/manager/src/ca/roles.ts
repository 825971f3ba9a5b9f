import { NodeRole } from '@swarmd/proto';
import { invalidArgument } from '@swarmd/common/errors';

/**
 * The OU of a certificate says what its holder may do. Nodes are workers or managers, as in
 * Swarm; `swarm-admin` is ours: a client certificate for remote swarmctl (no node behind it),
 * accepted by the control API only.
 */
export const CertRole = {
  WORKER: 'swarm-worker',
  MANAGER: 'swarm-manager',
  ADMIN: 'swarm-admin',
} as const;
export type CertRole = (typeof CertRole)[keyof typeof CertRole];

export const CERT_ROLES: readonly CertRole[] = [CertRole.WORKER, CertRole.MANAGER, CertRole.ADMIN];

export function isCertRole(s: string): s is CertRole {
  return (CERT_ROLES as readonly string[]).includes(s);
}

export function certRoleOfNodeRole(r: NodeRole): CertRole {
  switch (r) {
    case NodeRole.NODE_ROLE_WORKER:
      return CertRole.WORKER;
    case NodeRole.NODE_ROLE_MANAGER:
      return CertRole.MANAGER;
    default:
      throw invalidArgument(`unknown node role ${String(r)}`);
  }
}

/** The node role of a certificate role (undefined for admin certificates). */
export function nodeRoleOfCertRole(r: CertRole): NodeRole | undefined {
  return r === CertRole.WORKER ? NodeRole.NODE_ROLE_WORKER : r === CertRole.MANAGER ? NodeRole.NODE_ROLE_MANAGER : undefined;
}
