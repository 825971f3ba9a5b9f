/**
 * Who may send Raft messages as which member: the node named by the caller's TLS certificate
 * (CN, already verified by the port's auth interceptor as a cluster manager's) must be the node
 * the store records as that member (Node.managerStatus.raftId). Without this, any current manager
 * could speak for another (forge its votes or its log); the security probes found it.
 */
import type { SenderCheck } from 'raft-ts';
import type { CallWithAuth } from '../ca/grpc-auth.js';
import { certificateNodeId } from '../ca/verify.js';
import type { ReadTx } from '../store/memory-store.js';

/** What the check reads of the store. */
export interface NodeReader {
  view<T>(fn: (tx: ReadTx) => T): T;
}

/**
 * `yes` when the certificate's node is recorded as member `from`; refused when member `from` is
 * recorded as another node; `unknown` while no node is recorded as member `from` (a member whose
 * record this manager has not applied yet: a new learner's first answers to the leader, a
 * manager that joined again with a new id, a restarted member catching up), asked again on the
 * stream's next batch.
 */
export function raftSenderCheck(store: NodeReader): SenderCheck {
  return (call, from) => {
    const raw = (call as unknown as CallWithAuth).getAuthContext?.()?.sslPeerCertificate?.raw;
    if (!raw) return { refused: 'no client certificate on this connection' };
    const nodeId = certificateNodeId(new Uint8Array(raw));
    if (!nodeId) return { refused: 'the client certificate names no node' };
    return store.view((tx) => {
      if (tx.get('node', nodeId)?.managerStatus?.raftId === from) return 'yes';
      const holder = tx.find('node').find((n) => n.managerStatus?.raftId === from);
      return holder ? { refused: `member ${from} is node ${holder.id}, the certificate node ${nodeId}` } : 'unknown';
    });
  };
}
