/** The cluster object as the services read it: CA and removal facts, the manager list, its public form. */
import type { Clock } from '@swarmd/common/clock';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { type Cluster, type WeightedPeer, ManagerStatus_Reachability, NodeRole } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import type { VerifyOptions } from '../ca/verify.js';

/** The cluster object (there is one). UNAVAILABLE before the cluster was created. */
export function clusterOf(tx: ReadTx): Readonly<Cluster> {
  const c = tx.find('cluster')[0];
  if (!c?.rootCa?.caCertPem) throw new SwarmError(ErrorCode.UNAVAILABLE, 'the cluster is not initialised yet (no cluster object in the store)');
  return c;
}

/** Verification options from the current cluster object: its CA, its id, its removed nodes. */
export function verifyOptionsOf(store: Store, clock: Clock): () => VerifyOptions {
  return () => {
    const c = store.view(clusterOf);
    const removed = new Set(c.removedNodeIds);
    return { caCertPem: c.rootCa!.caCertPem, clusterId: c.id, now: clock.now(), isRemoved: (id) => removed.has(id) };
  };
}

/** The manager list agents get: managers with an address, leader first, then by id. */
export function managersOf(tx: ReadTx): WeightedPeer[] {
  const out: { p: WeightedPeer; leader: boolean }[] = [];
  for (const n of tx.find('node')) {
    const ms = n.managerStatus;
    if (!ms?.addr || n.role !== NodeRole.NODE_ROLE_MANAGER) continue;
    const weight = ms.reachability === ManagerStatus_Reachability.UNREACHABLE ? 1 : 10;
    out.push({ p: { nodeId: n.id, addr: ms.addr, weight }, leader: ms.leader });
  }
  out.sort((a, b) => Number(b.leader) - Number(a.leader) || (a.p.nodeId < b.p.nodeId ? -1 : a.p.nodeId > b.p.nodeId ? 1 : 0));
  return out.map((x) => x.p);
}

/** A copy of the cluster without the root CA key and the sealed unlock key: the only form that leaves the manager. */
export function publicCluster(c: Readonly<Cluster>): Cluster {
  const out = cloneObject('cluster', c);
  if (out.rootCa) out.rootCa.caKeyPem = Buffer.alloc(0);
  out.unlockKeySealed = Buffer.alloc(0);
  return out;
}
