import type * as grpc from '@grpc/grpc-js';
import { ErrorCode, describeError, isSwarmError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { NodeRole, type ManagerStatus, type Node, type RaftJoinRequest, type RaftJoinResponse } from '@swarmd/proto';
import { peerIdentity, toGrpcError, type VerifyOptionsSource } from '../ca/grpc-auth.js';
import { cloneObject, makeObject } from '../store/kinds.js';
import type { MemoryStore } from '../store/memory-store.js';

/**
 * Writes a manager's Node.managerStatus (and creates the Node when the CA service has not yet).
 * `ms` without its problem: that one only the manager's own agent reports (it is kept).
 */
export async function recordManagerNode(store: MemoryStore, nodeId: string, ms: Omit<ManagerStatus, 'problem'>, hostname?: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await store.update((tx) => {
        const cur = tx.get('node', nodeId);
        if (!cur) {
          const n: Node = makeObject('node', {
            id: nodeId,
            role: NodeRole.NODE_ROLE_MANAGER,
            spec: { annotations: { name: '', labels: {} }, desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: 0 },
            managerStatus: { ...ms, problem: '' },
            ...(hostname ? { description: { hostname, platform: undefined, resources: undefined, engineVersion: '', engineLabels: {}, volumes: [] } } : {}),
          });
          tx.create('node', n);
          return;
        }
        const c = cloneObject('node', cur);
        c.managerStatus = { ...ms, problem: cur.managerStatus?.problem ?? '' };
        c.role = NodeRole.NODE_ROLE_MANAGER;
        tx.update('node', c);
      });
      return;
    } catch (err) {
      if (attempt < 5 && isSwarmError(err) && (err.code === ErrorCode.CONFLICT || err.code === ErrorCode.ALREADY_EXISTS)) continue;
      throw err;
    }
  }
}

/** RaftMembership.Join's handler: the caller's node id from its certificate, then `join`; `mapErr` turns a failure into the status sent. */
export function serveJoin(
  o: { verify: VerifyOptionsSource; logger: Logger },
  join: (nodeId: string, addr: string) => Promise<RaftJoinResponse>,
  mapErr: (err: unknown) => unknown = (e) => e,
): grpc.handleUnaryCall<RaftJoinRequest, RaftJoinResponse> {
  return (call, cb) => {
    peerIdentity(call, o.verify)
      .then((id) => join(id.nodeId, call.request.addr))
      .then(
        (r) => cb(null, r),
        (err: unknown) => {
          o.logger.warn('RaftMembership.Join failed', { error: describeError(err) });
          cb(toGrpcError(mapErr(err)));
        },
      );
  };
}
