/**
 * What a node needs to program its overlay networks (DESIGN.md "Networking": the managers push,
 * there is no gossip): the networks its tasks join and, for each, every task on it cluster-wide
 * (address, node and underlay address, whether it takes traffic) and the services attached to it
 * (name, VIP, mode). Pure: computed from a store read; the dispatcher sends it with the
 * assignments whenever it changes.
 */
import {
  EndpointSpec_ResolutionMode,
  HealthState,
  NetworkPeer,
  type NetworkService,
  type NetworkStateSet,
  type Node,
  type Service,
  type Task,
  TaskState,
} from '@swarmd/proto';
import type { ReadTx } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';

/** Running, wanted running, and healthy where a health check exists: DNS answers it, VIPs send to it. */
export function isReadyPeer(t: Readonly<Task>): boolean {
  const st = t.status?.state ?? TaskState.TASK_STATE_NEW;
  const health = t.status?.container?.health ?? HealthState.HEALTH_STATE_NONE;
  return st === TaskState.TASK_STATE_RUNNING && t.desiredState === TaskState.TASK_STATE_RUNNING && health !== HealthState.HEALTH_STATE_STARTING && health !== HealthState.HEALTH_STATE_UNHEALTHY;
}

/** A task that holds its address on a node: placed and not yet stopped. */
function isLivePeer(t: Readonly<Task>): boolean {
  const st = t.status?.state ?? TaskState.TASK_STATE_NEW;
  return !!t.nodeId && st >= TaskState.TASK_STATE_ASSIGNED && st <= TaskState.TASK_STATE_RUNNING;
}

/** SERVICE.SLOT.TASKID, or SERVICE.NODEID.TASKID for a global service (as Docker names containers). */
export function peerTaskName(t: Readonly<Task>, serviceName: string): string {
  return `${serviceName}.${t.slot > 0 ? t.slot : t.nodeId}.${t.id}`;
}

export function networkStateFor(tx: ReadTx, nodeId: string, isAssigned: (t: Readonly<Task>) => boolean): NetworkStateSet {
  const wanted = new Set<string>();
  for (const t of tx.find('task', { nodeId })) if (isAssigned(t)) for (const a of t.networks) wanted.add(a.networkId);
  // The routing mesh: every node takes part while a service publishes a port through it.
  const ingress = tx.find('network').find((n) => n.spec?.ingress);
  const self = tx.get('node', nodeId);
  const selfIngress = ingress && self?.attachments.find((a) => a.networkId === ingress.id)?.addresses[0];
  if (ingress && selfIngress && tx.find('service').some((s) => s.spec?.task?.networks.some((n) => n.target === ingress.id))) wanted.add(ingress.id);
  if (wanted.size === 0) return { networks: [] };
  const nodes = new Map<string, Readonly<Node>>();
  const services = new Map<string, Readonly<Service>>();
  const serviceOf = (id: string): Readonly<Service> | undefined => {
    if (!services.has(id)) {
      const s = tx.get('service', id);
      if (s) services.set(id, s);
    }
    return services.get(id);
  };
  const peers = new Map<string, NetworkPeer[]>([...wanted].map((id) => [id, []]));
  for (const t of tx.find('task')) {
    if (t.networks.length === 0 || !isLivePeer(t)) continue;
    for (const a of t.networks) {
      const list = peers.get(a.networkId);
      if (!list || a.addresses.length === 0) continue;
      if (!nodes.has(t.nodeId)) {
        const n = tx.get('node', t.nodeId);
        if (n) nodes.set(n.id, n);
      }
      const serviceName = serviceOf(t.serviceId)?.spec?.annotations?.name ?? t.serviceAnnotations?.name ?? t.serviceId;
      list.push({
        taskId: t.id,
        taskName: peerTaskName(t, serviceName),
        hostname: t.spec?.container?.hostname ?? '',
        serviceId: t.serviceId,
        serviceName,
        address: a.addresses[0],
        nodeId: t.nodeId,
        nodeAddr: nodes.get(t.nodeId)?.status?.addr ?? '',
        ready: isReadyPeer(t),
        aliases: [...a.aliases],
      });
    }
  }
  const out: NetworkStateSet = { networks: [] };
  for (const id of [...wanted].sort()) {
    const network = tx.get('network', id);
    if (!network) continue;
    const svcs: NetworkService[] = [];
    for (const s of tx.find('service')) {
      const att = s.spec?.task?.networks.find((n) => n.target === id);
      if (!att) continue;
      const mode = s.spec?.endpoint?.mode ?? EndpointSpec_ResolutionMode.VIP;
      svcs.push({
        serviceId: s.id,
        name: s.spec?.annotations?.name ?? s.id,
        mode,
        vip: mode === EndpointSpec_ResolutionMode.VIP ? (s.endpoint?.virtualIps.find((v) => v.networkId === id)?.addr ?? '') : '',
        ports: structuredClone(s.endpoint?.ports ?? s.spec?.endpoint?.ports ?? []),
        aliases: [...att.aliases],
      });
    }
    const list = peers.get(id)!;
    if (network.spec?.ingress) {
      // Every node's own address (the mesh's source address for what it forwards): remote
      // hosts need them in their FDB so that replies find their way back.
      for (const n of tx.find('node')) {
        const addr = n.attachments.find((a) => a.networkId === id)?.addresses[0];
        if (addr) list.push(NetworkPeer.fromPartial({ address: addr, nodeId: n.id, nodeAddr: n.status?.addr ?? '' }));
      }
    }
    list.sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : a.address < b.address ? -1 : 1));
    out.networks.push({
      network: cloneObject('network', network),
      peers: list,
      services: svcs.sort((a, b) => (a.serviceId < b.serviceId ? -1 : 1)),
      nodeAddress: network.spec?.ingress ? (selfIngress ?? '') : '',
    });
  }
  return out;
}
