import * as grpc from '@grpc/grpc-js';
import { describeError, isSwarmError, grpcStatusOf } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { peerIdentity, type VerifyOptionsSource } from '../ca/grpc-auth.js';
import type { CertRole } from '../ca/roles.js';
import type { PeerIdentity } from '../ca/verify.js';

/**
 * Who may call what on a manager's one port (docs/cluster.md). `open`: no client certificate
 * needed (the handler checks a join token, or a certificate when renewing). Every other method
 * needs a client certificate of the cluster, of one of the listed roles. Unknown methods are
 * refused. Handlers still call authorize()/peerIdentity() themselves (the node id comes from the
 * certificate); this is the door, not the only lock.
 */
export type MethodPolicy = 'open' | readonly CertRole[];

export const METHOD_POLICY: Readonly<Record<string, MethodPolicy>> = {
  '/swarm.v1.Ca/': 'open',
  '/swarm.v1.NodeCa/': 'open',
  '/raftpb.RaftTransport/': ['swarm-manager'],
  '/swarm.v1.RaftMembership/': ['swarm-manager'],
  '/swarm.v1.Dispatcher/': ['swarm-worker', 'swarm-manager'],
  '/swarm.v1.Control/': ['swarm-admin', 'swarm-manager'],
};

export function policyOf(path: string, table: Readonly<Record<string, MethodPolicy>> = METHOD_POLICY): MethodPolicy | undefined {
  const exact = table[path];
  if (exact) return exact;
  const service = path.slice(0, path.lastIndexOf('/') + 1);
  return table[service];
}

/**
 * The role a verified certificate is honoured as, and why when it is less than its OU says. A
 * certificate stays valid until it expires: a manager demoted to worker keeps its old manager
 * certificate, which must no longer open Raft or the control API (start-manager.ts downgrades it
 * to a worker's from the store).
 */
export type HonouredRole = (id: PeerIdentity) => { role: CertRole; why?: string };

/**
 * A server interceptor enforcing METHOD_POLICY before the handler runs: UNAUTHENTICATED without
 * a valid cluster certificate, PERMISSION_DENIED for a role the method does not admit (the role
 * the certificate is honoured as, `honoured`, by default its OU).
 */
export function authInterceptor(verify: VerifyOptionsSource, logger: Logger, table = METHOD_POLICY, honoured?: HonouredRole): grpc.ServerInterceptor {
  return (method, call) => {
    const policy = policyOf(method.path, table);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (md, mdNext) => {
            if (policy === 'open') return mdNext(md);
            if (!policy) {
              call.sendStatus({ code: grpc.status.UNIMPLEMENTED, details: `unknown method ${method.path}`, metadata: new grpc.Metadata() });
              return;
            }
            peerIdentity(call, verify).then(
              (id) => {
                const h = honoured?.(id) ?? { role: id.role };
                if (policy.includes(h.role)) return mdNext(md);
                if (h.why) logger.warn('refused a call', { method: method.path, nodeId: id.nodeId, reason: h.why });
                call.sendStatus({
                  code: grpc.status.PERMISSION_DENIED,
                  details: `${id.role} ${id.nodeId} may not call ${method.path} (allowed: ${policy.join(', ')})${h.why ? `: ${h.why}` : ''}`,
                  metadata: new grpc.Metadata(),
                });
              },
              (err: unknown) => {
                logger.debug('refused a call', { method: method.path, error: describeError(err) });
                call.sendStatus({
                  code: isSwarmError(err) ? grpcStatusOf[err.code] : grpc.status.UNAUTHENTICATED,
                  details: `${method.path}: ${describeError(err)}`,
                  metadata: new grpc.Metadata(),
                });
              },
            );
          },
        });
      },
    });
  };
}
