/** Who may call: the checks the control API (and other admin-facing services) make before anything else. */
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { peerIdentity, type CallWithAuth, type VerifyOptionsSource } from '../ca/grpc-auth.js';
import { CertRole } from '../ca/roles.js';
import type { PeerIdentity } from '../ca/verify.js';

/** A certificate's identity, or the root-only local socket. */
export type Caller = PeerIdentity | 'local';

/**
 * Over mutual TLS a swarm-admin or swarm-manager (a follower forwarding) certificate; a worker
 * certificate is PERMISSION_DENIED. With `local` (the root-only unix socket) every caller is
 * admitted, but a call that arrived with an IP peer is refused: those handlers never face the network.
 */
export async function admitControlCaller(call: CallWithAuth & { getPeer(): string }, local: boolean, verify: VerifyOptionsSource): Promise<Caller> {
  if (local) {
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
