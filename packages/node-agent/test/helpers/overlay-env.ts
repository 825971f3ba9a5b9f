/** Test helpers for overlay networks: hand-built networks, peers, NetworkStateSets and tasks. */
import { EndpointSpec_ResolutionMode, Network, type NetworkPeer, type NetworkService, NetworkStateSet, type Task } from '@swarmd/proto';
import { makeTask } from './executor-env.js';

export function overlayNet(id: string, vni: number, subnet: string, o: { internal?: boolean; name?: string } = {}): Network {
  const [a, b, c] = subnet.split('.');
  return Network.fromPartial({
    id,
    spec: { annotations: { name: o.name ?? id }, driver: 'overlay', internal: o.internal ?? false },
    vni,
    ipam: [{ subnet, gateway: `${a}.${b}.${c}.1` }],
  });
}

export interface PeerInput {
  taskId: string;
  service: string;
  address: string;
  nodeId: string;
  nodeAddr: string;
  ready?: boolean;
  hostname?: string;
  aliases?: string[];
  slot?: number;
  canary?: boolean;
}

export function peer(p: PeerInput): NetworkPeer {
  return {
    taskId: p.taskId,
    taskName: `${p.service}.${p.slot ?? 1}.${p.taskId}`,
    hostname: p.hostname ?? '',
    serviceId: `svc-${p.service}`,
    serviceName: p.service,
    address: p.address,
    nodeId: p.nodeId,
    nodeAddr: p.nodeAddr,
    ready: p.ready ?? true,
    aliases: p.aliases ?? [],
    canary: p.canary ?? false,
  };
}

export function service(name: string, o: { vip?: string; dnsrr?: boolean; aliases?: string[]; canaryWeight?: number } = {}): NetworkService {
  return {
    serviceId: `svc-${name}`,
    name,
    mode: o.dnsrr ? EndpointSpec_ResolutionMode.DNSRR : EndpointSpec_ResolutionMode.VIP,
    vip: o.vip ?? '',
    ports: [],
    aliases: o.aliases ?? [],
    canaryWeight: o.canaryWeight ?? 0,
  };
}

export function stateSet(...nets: { network: Network; peers: NetworkPeer[]; services?: NetworkService[] }[]): NetworkStateSet {
  return NetworkStateSet.fromPartial({ networks: nets.map((n) => ({ network: n.network, peers: n.peers, services: n.services ?? [] })) });
}

/** A task attached to overlay networks (`addresses`: CIDR per network, in order). */
export function overlayTask(id: string, service: string, attachments: { networkId: string; address: string }[], container: Parameters<typeof makeTask>[1] = { image: 'none' }): Task {
  const t = makeTask(id, container);
  return {
    ...t,
    serviceId: `svc-${service}`,
    annotations: { name: `${service}.1.${id}`, labels: {} },
    spec: { ...t.spec!, networks: attachments.map((a) => ({ target: a.networkId, aliases: [] })) },
    networks: attachments.map((a) => ({ networkId: a.networkId, addresses: [a.address], aliases: [] })),
  };
}
