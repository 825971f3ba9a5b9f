/**
 * What a node needs to program its overlay networks (DESIGN.md "Networking": the managers push,
 * there is no gossip): the networks its tasks join and, for each, every task on it cluster-wide
 * (address, node and underlay address, whether it takes traffic) and the services attached to it
 * (name, VIP, mode). Pure: computed from a store read; the dispatcher sends it with the
 * assignments whenever it changes.
 */
import {
  EndpointSpec_ResolutionMode,
  NetworkPeer,
  type NetworkState,
  type NetworkStateSet,
  type Node,
  type Service,
  type Task,
  TaskState,
} from '@swarmd/proto';
import type { ReadTx } from '../store/memory-store.js';
import { canaryWeight, isCanaryTask, isReadyTask } from '../controller-kit/index.js';
import { cloneObject } from '../store/kinds.js';

/** A task that holds its address on a node: placed and not yet stopped. */
function isLivePeer(t: Readonly<Task>): boolean {
  const st = t.status?.state ?? TaskState.TASK_STATE_NEW;
  return !!t.nodeId && st >= TaskState.TASK_STATE_ASSIGNED && st <= TaskState.TASK_STATE_RUNNING;
}

/** SERVICE.SLOT.TASKID, or SERVICE.NODEID.TASKID for a global service (as Docker names containers). */
export function peerTaskName(t: Readonly<Task>, serviceName: string): string {
  return `${serviceName}.${t.slot > 0 ? t.slot : t.nodeId}.${t.id}`;
}

/**
 * Every network's state as the store holds it (peers, with the nodes' own addresses on ingress,
 * and services), in one pass over the tasks. The same for every node: the dispatcher computes it
 * once per store version and each node's stream picks its networks from it (networkStateFor).
 */
export function networkStates(tx: ReadTx): Map<string, NetworkState> {
  const out = new Map<string, NetworkState>();
  const networks = tx.find('network');
  for (const network of networks) out.set(network.id, { network: cloneObject('network', network), peers: [], services: [], nodeAddress: '' });
  if (out.size === 0) return out;
  const nodes = new Map<string, Readonly<Node>>(tx.find('node').map((n) => [n.id, n]));
  const services = new Map<string, Readonly<Service>>(tx.find('service').map((sv) => [sv.id, sv]));
  for (const t of tx.find('task')) {
    if (t.networks.length === 0 || !isLivePeer(t)) continue;
    const serviceName = services.get(t.serviceId)?.spec?.annotations?.name ?? t.serviceAnnotations?.name ?? t.serviceId;
    for (const a of t.networks) {
      const state = out.get(a.networkId);
      if (!state || a.addresses.length === 0) continue;
      state.peers.push({
        taskId: t.id,
        taskName: peerTaskName(t, serviceName),
        hostname: t.spec?.container?.hostname ?? '',
        serviceId: t.serviceId,
        serviceName,
        address: a.addresses[0],
        nodeId: t.nodeId,
        nodeAddr: nodes.get(t.nodeId)?.status?.addr ?? '',
        ready: isReadyTask(t),
        aliases: [...a.aliases],
        canary: isCanaryTask(t),
      });
    }
  }
  for (const sv of services.values()) {
    for (const att of sv.spec?.task?.networks ?? []) {
      const state = out.get(att.target);
      if (!state) continue;
      const mode = sv.spec?.endpoint?.mode ?? EndpointSpec_ResolutionMode.VIP;
      state.services.push({
        serviceId: sv.id,
        name: sv.spec?.annotations?.name ?? sv.id,
        mode,
        vip: mode === EndpointSpec_ResolutionMode.VIP ? (sv.endpoint?.virtualIps.find((v) => v.networkId === att.target)?.addr ?? '') : '',
        ports: structuredClone(sv.endpoint?.ports ?? sv.spec?.endpoint?.ports ?? []),
        aliases: [...att.aliases],
        canaryWeight: canaryWeight(sv),
      });
    }
  }
  for (const network of networks) {
    const state = out.get(network.id)!;
    if (network.spec?.ingress) {
      // Every node's own address (the mesh's source address for what it forwards): remote
      // hosts need them in their FDB so that replies find their way back.
      for (const n of nodes.values()) {
        const addr = n.attachments.find((a) => a.networkId === network.id)?.addresses[0];
        if (addr) state.peers.push(NetworkPeer.fromPartial({ address: addr, nodeId: n.id, nodeAddr: n.status?.addr ?? '' }));
      }
    }
    state.peers.sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : a.address < b.address ? -1 : 1));
    state.services.sort((a, b) => (a.serviceId < b.serviceId ? -1 : 1));
  }
  return out;
}

/**
 * The networks one node needs, from `states` (networkStates of the same read): those its tasks
 * join, and the ingress network while a service publishes a port through it (with this node's
 * own address on it).
 */
export function networkStateFor(
  tx: ReadTx,
  nodeId: string,
  isAssigned: (t: Readonly<Task>) => boolean,
  states: ReadonlyMap<string, NetworkState> = networkStates(tx),
): NetworkStateSet {
  const wanted = new Set<string>();
  for (const t of tx.find('task', { nodeId })) if (isAssigned(t)) for (const a of t.networks) wanted.add(a.networkId);
  const ingress = [...states.values()].find((st) => st.network?.spec?.ingress);
  const selfIngress = ingress && tx.get('node', nodeId)?.attachments.find((a) => a.networkId === ingress.network!.id)?.addresses[0];
  if (ingress && selfIngress && ingress.services.length > 0) wanted.add(ingress.network!.id);
  const out: NetworkStateSet = { networks: [] };
  for (const id of [...wanted].sort()) {
    const state = states.get(id);
    if (state) out.networks.push(state === ingress ? { ...state, nodeAddress: selfIngress ?? '' } : state);
  }
  return out;
}
