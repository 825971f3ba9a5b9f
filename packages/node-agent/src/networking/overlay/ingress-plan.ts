/**
 * The routing mesh on one host, as pure functions (the driver is overlay-networking.ts): which
 * published ports this node forwards where, and the nft table that does it.
 *
 * Every node answers every port published in ingress mode, with or without a task of the
 * service: a connection to any local address on the port is DNATed to one of the service's
 * ready endpoints on the ingress network (`numgen random mod N`, a chain per endpoint, as
 * kube-proxy's nftables mode), and SNATed to this node's own ingress address so the reply comes
 * back through this node (as Swarm does: the task sees the node's ingress address, not the
 * client's). A port with no ready endpoint has no rule: the host refuses the connection at once.
 * A service in a canary rollout sends its weight of new connections to its canaries, as its VIP
 * does (vip-rules.ts weightedSplit).
 */
import { PortConfig_Protocol, PortConfig_PublishMode, type NetworkState } from '@swarmd/proto';
import { spread, weightedSplit } from './vip-rules.js';

export const INGRESS_TABLE = 'swarmd_ingress';
/** Marks connections the mesh DNATed, so that only they are SNATed. */
export const MESH_MARK = '0x5357';

export interface MeshPort {
  protocol: 'tcp' | 'udp';
  published: number;
  target: number;
  service: string;
  /** Ready endpoints' addresses on the ingress network, sorted. */
  endpoints: string[];
  /** Those of `endpoints` that are canaries of a rollout. */
  canaries: string[];
  /** Percent of new connections for the canaries (0: every endpoint alike). */
  weight: number;
}

/** The ports published through the mesh, with the ready endpoints of each, from the pushed ingress state. */
export function meshPorts(state: NetworkState): MeshPort[] {
  const out: MeshPort[] = [];
  for (const s of state.services) {
    const ready = state.peers.filter((p) => p.serviceId === s.serviceId && p.ready && p.taskId);
    const endpoints = ready.map((p) => p.address.split('/')[0]).sort();
    const canaries = ready.filter((p) => p.canary).map((p) => p.address.split('/')[0]).sort();
    for (const p of s.ports) {
      if (p.publishMode !== PortConfig_PublishMode.INGRESS || !p.publishedPort || !p.targetPort) continue;
      if (p.protocol !== PortConfig_Protocol.TCP && p.protocol !== PortConfig_Protocol.UDP) continue;
      out.push({ protocol: p.protocol === PortConfig_Protocol.UDP ? 'udp' : 'tcp', published: p.publishedPort, target: p.targetPort, service: s.name, endpoints, canaries, weight: s.canaryWeight });
    }
  }
  return out.sort((a, b) => a.published - b.published || a.protocol.localeCompare(b.protocol));
}

/** The whole mesh table (loaded as one `nft -f` transaction); empty string when nothing is published. */
export function ingressRuleset(table: string, bridge: string, nodeAddr: string, ports: readonly MeshPort[]): string {
  const live = ports.filter((p) => p.endpoints.length > 0);
  if (!live.length || !nodeAddr) return '';
  const chains: string[] = [];
  const dispatch: string[] = [];
  for (const p of live) {
    const name = `p-${p.protocol}-${p.published}`;
    dispatch.push(`    ${p.protocol} dport ${p.published} jump ${name}`);
    const eps = p.endpoints.map((ip, i) => ({ ip, chain: `e-${p.protocol}-${p.published}-${i}` }));
    const chainOf = new Map(eps.map((e) => [e.ip, e.chain]));
    const jump = (ip: string) => `jump ${chainOf.get(ip)}`;
    const split = weightedSplit(p);
    if (split) {
      chains.push(`  chain ${name} {`, `    ${split.pick((part) => `jump ${name}-${part}`)}`, `  }`);
      chains.push(`  chain ${name}-s {`, `    ${spread(split.stable, jump)}`, `  }`);
      chains.push(`  chain ${name}-c {`, `    ${spread(split.canaries, jump)}`, `  }`);
    } else chains.push(`  chain ${name} {`, `    ${spread(p.endpoints, jump)}`, `  }`);
    for (const e of eps) chains.push(`  chain ${e.chain} {`, `    meta l4proto ${p.protocol} meta mark set ${MESH_MARK} dnat to ${e.ip}:${p.target}`, `  }`);
  }
  return [
    `table ip ${table} {`,
    `  chain mesh {`,
    ...dispatch,
    `  }`,
    ...chains,
    `  chain prerouting {`,
    `    type nat hook prerouting priority dstnat; policy accept;`,
    `    fib daddr type local jump mesh`,
    `  }`,
    `  chain output {`,
    `    type nat hook output priority -100; policy accept;`,
    `    fib daddr type local jump mesh`,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    `    oifname "${bridge}" meta mark ${MESH_MARK} snat to ${nodeAddr}`,
    `  }`,
    `}`,
    '',
  ].join('\n');
}
