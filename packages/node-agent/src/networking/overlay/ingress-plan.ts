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
 */
import { PortConfig_Protocol, PortConfig_PublishMode, type NetworkState } from '@swarmd/proto';

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
}

/** The ports published through the mesh, with the ready endpoints of each, from the pushed ingress state. */
export function meshPorts(state: NetworkState): MeshPort[] {
  const out: MeshPort[] = [];
  for (const s of state.services) {
    const endpoints = state.peers
      .filter((p) => p.serviceId === s.serviceId && p.ready && p.taskId)
      .map((p) => p.address.split('/')[0])
      .sort();
    for (const p of s.ports) {
      if (p.publishMode !== PortConfig_PublishMode.INGRESS || !p.publishedPort || !p.targetPort) continue;
      if (p.protocol !== PortConfig_Protocol.TCP && p.protocol !== PortConfig_Protocol.UDP) continue;
      out.push({ protocol: p.protocol === PortConfig_Protocol.UDP ? 'udp' : 'tcp', published: p.publishedPort, target: p.targetPort, service: s.name, endpoints });
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
    chains.push(
      `  chain ${name} {`,
      eps.length === 1 ? `    jump ${eps[0].chain}` : `    numgen random mod ${eps.length} vmap { ${eps.map((e, i) => `${i} : jump ${e.chain}`).join(', ')} }`,
      `  }`,
    );
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
