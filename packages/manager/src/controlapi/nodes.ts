/**
 * Nodes of the control API (after SwarmKit's controlapi/node.go): GetNode, ListNodes, UpdateNode
 * (availability, role with a quorum check, labels), RemoveNode.
 */
import { SwarmError, ErrorCode, invalidArgument, notFound, failedPrecondition, isSwarmError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { type Node, NodeAvailability, NodeRole, NodeState, type NodeSpec, ManagerStatus_Reachability, type ListNodesRequest, type ListNodesResponse } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { cloneObject, nameOf } from '../store/kinds.js';
import { clusterOf } from '../rpc-kit/cluster.js';
import { sameLabels } from './labels.js';

export type QuorumVerdict = boolean | { ok: boolean; reason?: string };

export interface NodesDeps {
  store: Store;
  logger: Logger;
  /** Whether manager `nodeId` can leave without losing quorum. Checked on demotion. */
  canRemoveManager?(nodeId: string): QuorumVerdict;
  /** ManagerContext's form of the same check: throws FAILED_PRECONDITION when it cannot. */
  membership?: { assertCanRemove(nodeId: string): void };
}

/** Quorum from the store: managers (role MANAGER) left after `nodeId` goes, and how many are reachable. */
export function managerCounts(tx: ReadTx, nodeId: string): { total: number; remaining: number; reachable: number } {
  const managers = tx.find('node').filter((n) => n.role === NodeRole.NODE_ROLE_MANAGER);
  const rest = managers.filter((n) => n.id !== nodeId);
  const reachable = rest.filter((n) => n.managerStatus?.reachability !== ManagerStatus_Reachability.UNREACHABLE).length;
  return { total: managers.length, remaining: rest.length, reachable };
}

function validNodeSpec(spec: NodeSpec | undefined): NodeSpec {
  if (!spec) throw invalidArgument('spec is required');
  if (!Object.values(NodeAvailability).includes(spec.availability) || spec.availability === NodeAvailability.UNRECOGNIZED) {
    throw invalidArgument(`spec.availability: unknown value ${String(spec.availability)} (active, pause or drain)`);
  }
  if (spec.desiredRole !== NodeRole.NODE_ROLE_WORKER && spec.desiredRole !== NodeRole.NODE_ROLE_MANAGER) {
    throw invalidArgument(`spec.desired_role: unknown value ${String(spec.desiredRole)} (worker or manager)`);
  }
  for (const k of Object.keys(spec.annotations?.labels ?? {})) if (!k.trim()) throw invalidArgument('spec.annotations.labels: empty label key');
  return spec;
}

/** A node by id, unique id prefix, or unique name (hostname). */
function resolveNode(tx: ReadTx, ref: string): Readonly<Node> {
  if (!ref) throw invalidArgument('node_id is required');
  const exact = tx.get('node', ref);
  if (exact) return exact;
  const all = tx.find('node');
  const byPrefix = all.filter((n) => n.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  const byName = all.filter((n) => nameOf('node', n).toLowerCase() === ref.toLowerCase());
  if (byName.length === 1) return byName[0];
  if (byPrefix.length > 1 || byName.length > 1) throw invalidArgument(`node "${ref}" is ambiguous: ${[...byPrefix, ...byName].map((n) => n.id).join(', ')}`);
  throw notFound(`node ${ref} not found`);
}

export function createNodesImpl(deps: NodesDeps) {
  const { store, logger: log } = deps;

  async function getNode(req: { nodeId: string }): Promise<{ node: Node }> {
    return { node: cloneObject('node', store.view((tx) => resolveNode(tx, req.nodeId))) };
  }

  async function listNodes(req: ListNodesRequest): Promise<ListNodesResponse> {
    const f = req.filters;
    const nodes = store.view((tx) => tx.find('node')).filter((n) => {
      if (!f) return true;
      if (f.names.length && !f.names.some((x) => x.toLowerCase() === nameOf('node', n).toLowerCase())) return false;
      if (f.idPrefixes.length && !f.idPrefixes.some((p) => n.id.startsWith(p))) return false;
      if (Object.keys(f.labels).length && !sameLabels(f.labels, n.spec?.annotations?.labels)) return false;
      if (f.roles.length && !f.roles.includes(n.role)) return false;
      return true;
    });
    return { nodes: nodes.map((n) => cloneObject('node', n)) };
  }

  function quorumVerdict(nodeId: string): { ok: boolean; reason?: string } {
    if (deps.canRemoveManager) {
      const v = deps.canRemoveManager(nodeId);
      return typeof v === 'boolean' ? { ok: v } : v;
    }
    if (deps.membership) {
      try {
        deps.membership.assertCanRemove(nodeId);
        return { ok: true };
      } catch (err) {
        if (isSwarmError(err, ErrorCode.FAILED_PRECONDITION)) return { ok: false, reason: err.message };
        throw err;
      }
    }
    const c = store.view((tx) => managerCounts(tx, nodeId));
    return { ok: c.remaining > 0 && c.reachable >= Math.floor(c.remaining / 2) + 1 };
  }

  async function updateNode(req: { nodeId: string; nodeVersion: number; spec?: NodeSpec }): Promise<{ node: Node }> {
    const spec = validNodeSpec(req.spec);
    if (!req.nodeVersion) throw invalidArgument('node_version is required (the meta.version of the node you read)');
    const cur = store.view((tx) => resolveNode(tx, req.nodeId));
    const id = cur.id;
    const wasManager = cur.role === NodeRole.NODE_ROLE_MANAGER || cur.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER;
    if (wasManager && cur.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER && spec.desiredRole === NodeRole.NODE_ROLE_WORKER) {
      const v = quorumVerdict(id);
      if (!v.ok) {
        const c = store.view((tx) => managerCounts(tx, id));
        throw failedPrecondition(`demoting ${id} would leave ${c.reachable} of ${c.total} managers: quorum lost${v.reason ? ` (${v.reason})` : ''}`);
      }
    }
    const node = await store.update((tx) => {
      const n = tx.get('node', id);
      if (!n) throw notFound(`node ${id} not found`);
      const version = n.meta?.version ?? 0;
      if (version !== req.nodeVersion) {
        throw new SwarmError(
          ErrorCode.CONFLICT,
          `update out of sequence: node ${id} is at version ${version}, the update was made against version ${req.nodeVersion}: read the node again and retry`,
        );
      }
      const u = cloneObject('node', n);
      u.spec = spec;
      tx.update('node', u);
      return u.id;
    });
    log.info('node updated', { nodeId: id, availability: spec.availability, desiredRole: spec.desiredRole });
    return { node: cloneObject('node', store.view((tx) => tx.get('node', node))!) };
  }

  async function removeNode(req: { nodeId: string; force: boolean }): Promise<Record<string, never>> {
    const n = store.view((tx) => resolveNode(tx, req.nodeId));
    const id = n.id;
    if (n.spec?.desiredRole === NodeRole.NODE_ROLE_MANAGER) {
      throw failedPrecondition(`node ${id} is a manager: demote it first (swarmctl node demote ${id}), then remove it`);
    }
    if (n.role === NodeRole.NODE_ROLE_MANAGER) {
      throw failedPrecondition(`node ${id} is still leaving the managers (its demotion is in progress): retry once its role is worker`);
    }
    if (n.status?.state === NodeState.NODE_STATE_READY && !req.force) {
      throw failedPrecondition(`node ${id} is READY: stop it first, or remove it anyway with force (swarmctl node rm --force ${id})`);
    }
    await store.update((tx) => {
      if (!tx.get('node', id)) throw notFound(`node ${id} not found`);
      tx.delete('node', id);
      const c = cloneObject('cluster', clusterOf(tx));
      if (!c.removedNodeIds.includes(id)) c.removedNodeIds.push(id);
      tx.update('cluster', c);
    });
    log.info('node removed', { nodeId: id, force: req.force });
    return {};
  }

  return { getNode, listNodes, updateNode, removeNode };
}
