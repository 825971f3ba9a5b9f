/**
 * What the overlay data plane runs (pure): `ip -batch` / `bridge -batch` lines for a network's
 * devices, a task's veths and the peers' FDB and neighbour entries (as a diff), and the nft
 * table. The driver (overlay-networking.ts) only runs them. Every word in a line is a name,
 * address or keyword of ours (no quoting needed).
 */
import { macOf, VXLAN_PORT, type OverlayNetwork, type RemotePeer } from './model.js';

/** `ip -batch` lines creating a network's bridge (with the gateway) and its vxlan device on it. */
export function networkCreateLines(n: OverlayNetwork, o: { local?: string; mtu: number }): string[] {
  return [
    `link add ${n.bridge} type bridge`,
    // A fixed MAC: a bridge takes its lowest port's otherwise, which changes as veths join.
    `link set ${n.bridge} address ${macOf(n.gateway)} mtu ${o.mtu}`,
    `addr replace ${n.gateway}/${n.bits} dev ${n.bridge}`,
    `link add ${n.vxlan} mtu ${o.mtu} type vxlan id ${n.vni} dstport ${VXLAN_PORT}${o.local ? ` local ${o.local}` : ''} nolearning proxy`,
    `link set ${n.vxlan} master ${n.bridge} up`,
    `link set ${n.bridge} up`,
  ];
}

/** `ip -batch -force` lines removing a network's devices (the vxlan first: it is a bridge port). */
export function networkDeleteLines(n: { bridge: string; vxlan: string }): string[] {
  return [`link del ${n.vxlan}`, `link del ${n.bridge}`];
}

export interface PeerChanges {
  /** `bridge -batch -force` lines. */
  fdb: string[];
  /** `ip -batch -force` lines. */
  neigh: string[];
}

/**
 * The FDB and neighbour changes from `prev` to `next` on a vxlan device: entries of peers gone or
 * moved are deleted, new ones added; peers unchanged are not touched.
 */
export function peerChanges(vxlan: string, prev: ReadonlyMap<string, RemotePeer>, next: ReadonlyMap<string, RemotePeer>): PeerChanges {
  const fdb: string[] = [];
  const neigh: string[] = [];
  for (const [ip, p] of prev) {
    const q = next.get(ip);
    if (q && q.vtep === p.vtep && q.mac === p.mac) continue;
    fdb.push(`fdb del ${p.mac} dev ${vxlan} dst ${p.vtep} self`);
    if (!q) neigh.push(`neigh del ${ip} dev ${vxlan}`);
  }
  for (const [ip, q] of next) {
    const p = prev.get(ip);
    if (p && p.vtep === q.vtep && p.mac === q.mac) continue;
    fdb.push(`fdb append ${q.mac} dev ${vxlan} dst ${q.vtep} self permanent`);
    if (!p || p.mac !== q.mac) neigh.push(`neigh replace ${ip} lladdr ${q.mac} dev ${vxlan} nud permanent`);
  }
  return { fdb, neigh };
}

/**
 * The peers programmed on a vxlan device, from `bridge -j fdb show dev X` and `ip -j neigh show
 * dev X` (an agent restarted over a live network diffs against what the kernel holds).
 */
export function peersFromKernel(fdbJson: string, neighJson: string): Map<string, RemotePeer> {
  const parse = (s: string): unknown[] => {
    try {
      const v = JSON.parse(s || '[]') as unknown;
      return Array.isArray(v) ? v : [];
    } catch {
      return [];
    }
  };
  const vtepOf = new Map<string, string>();
  for (const e of parse(fdbJson) as { mac?: string; dst?: string }[]) if (e.mac && e.dst && e.mac !== '00:00:00:00:00:00') vtepOf.set(e.mac, e.dst);
  const out = new Map<string, RemotePeer>();
  for (const e of parse(neighJson) as { dst?: string; lladdr?: string }[]) {
    const vtep = e.lladdr ? vtepOf.get(e.lladdr) : undefined;
    if (e.dst && e.lladdr && vtep) out.set(e.dst, { ip: e.dst, mac: e.lladdr, vtep });
  }
  return out;
}

/** One of a task's overlay attachments, in the task's order (eth0, eth1, …). */
export interface TaskLink {
  network: OverlayNetwork;
  /** The task's address on it (no prefix). */
  ip: string;
  /** The host end of the veth. */
  veth: string;
}

/**
 * A task's links: host side (veth pairs onto the bridges, created unless `existing` has them) and
 * inside its netns (addresses, MACs, the default route via the first network that is not
 * internal: an internal network gives no route out).
 */
export function taskLinkLines(netns: string, links: readonly TaskLink[], mtu: number, existing: ReadonlySet<string> = new Set()): { host: string[]; inside: string[] } {
  const host: string[] = [];
  const inside: string[] = ['link set lo up'];
  links.forEach((l, i) => {
    const dev = `eth${i}`;
    if (!existing.has(l.veth)) host.push(`link add ${l.veth} mtu ${mtu} type veth peer name ${dev} mtu ${mtu} address ${macOf(l.ip)} netns ${netns}`);
    host.push(`link set ${l.veth} master ${l.network.bridge} up`);
    inside.push(`addr replace ${l.ip}/${l.network.bits} dev ${dev}`, `link set ${dev} up`);
  });
  const out = links.findIndex((l) => !l.network.internal);
  if (out >= 0) inside.push(`route replace default via ${links[out].network.gateway} dev eth${out}`);
  return { host, inside };
}

/**
 * The overlay table: nothing enters an overlay network from elsewhere but replies and
 * connections the host DNATed (published ports; no traffic
 * between two overlay networks, nor from the host's other bridges); an internal network has no
 * way out either; the others are masqueraded on the way out. Traffic within a network (bridged
 * between veths and the vxlan port, or routed back onto the same bridge) passes.
 */
export function overlayRuleset(table: string, networks: readonly Pick<OverlayNetwork, 'bridge' | 'subnet' | 'internal' | 'ingress'>[]): string {
  const sorted = [...networks].sort((a, b) => (a.bridge < b.bridge ? -1 : a.bridge > b.bridge ? 1 : 0));
  const forward: string[] = [];
  const nat: string[] = [];
  for (const n of sorted) {
    const b = `"${n.bridge}"`;
    forward.push(`    iifname ${b} oifname ${b} accept`);
    if (n.internal) {
      forward.push(`    iifname ${b} drop`, `    oifname ${b} drop`);
    } else {
      // Connections DNATed in the host's netns: the routing mesh's into the ingress network
      // (ingress-plan.ts), ports published in mode=host by a task (bridge-network.ts).
      forward.push(`    oifname ${b} ct status dnat accept`);
      forward.push(`    oifname ${b} ct state established,related accept`, `    oifname ${b} drop`);
      nat.push(`    ip saddr ${n.subnet} oifname != ${b} masquerade`);
    }
  }
  return [
    `table ip ${table} {`,
    `  chain forward {`,
    `    type filter hook forward priority filter; policy accept;`,
    ...forward,
    `  }`,
    `  chain postrouting {`,
    `    type nat hook postrouting priority srcnat; policy accept;`,
    ...nat,
    `  }`,
    `}`,
    '',
  ].join('\n');
}
