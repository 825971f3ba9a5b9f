/**
 * Overlay networks as this host programs them (pure): what a pushed NetworkState means for the
 * data plane (names of the bridge and vxlan device, the gateway, the remote peers with their
 * derived MACs) and the names of a task's links. No I/O.
 */
import type { NetworkState, Task } from '@swarmd/proto';

/** IANA's VXLAN port (the kernel's default is 8472). */
export const VXLAN_PORT = 4789;
/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;

export interface Cidr {
  ip: string;
  bits: number;
}

export function parseCidr(cidr: string): Cidr {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(cidr.trim());
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255)) throw new Error(`invalid IPv4 address ${cidr}`);
  const bits = m[5] === undefined ? 32 : Number(m[5]);
  if (bits > 32) throw new Error(`invalid prefix length in ${cidr}`);
  return { ip: m.slice(1, 5).map(Number).join('.'), bits };
}

export const ipToInt = (ip: string): number => ip.split('.').reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);
export const intToIp = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The network address of a CIDR, e.g. 10.0.1.5/24 → 10.0.1.0/24. */
export function networkOf(cidr: string): string {
  const { ip, bits } = parseCidr(cidr);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return `${intToIp((ipToInt(ip) & mask) >>> 0)}/${bits}`;
}

/** The MAC of an overlay address, as Docker derives it: 02:42 and the four octets. */
export function macOf(ip: string): string {
  return ['02', '42', ...parseCidr(ip).ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
}

/** FNV-1a, 32 bits, as 8 hex digits: short stable link names. */
export function shortHash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** Link names of the overlay (≤ 15 characters; the VNI is unique in the cluster, so per host). */
export const LINK_PREFIX = { bridge: 'swob', vxlan: 'swox', veth: 'swov' } as const;
export const bridgeName = (vni: number): string => `${LINK_PREFIX.bridge}${vni}`;
export const vxlanName = (vni: number): string => `${LINK_PREFIX.vxlan}${vni}`;
/** The host end of a task's veth on one network. */
export const vethName = (taskId: string, networkId: string): string => `${LINK_PREFIX.veth}${shortHash(`${taskId}/${networkId}`)}`;
/** The nft table of the overlay networks (one per host: one swarmd per network namespace). */
export const OVERLAY_TABLE = 'swarmd_overlay';

/** One overlay network as this host needs it. */
export interface OverlayNetwork {
  id: string;
  name: string;
  vni: number;
  /** e.g. 10.0.1.0/24 */
  subnet: string;
  bits: number;
  /** The bridge's address (no prefix): containers' gateway and DNS server. */
  gateway: string;
  internal: boolean;
  /** The routing mesh's network: forwarded (DNATed) connections may enter its bridge. */
  ingress?: boolean;
  bridge: string;
  vxlan: string;
}

/** The network of a pushed NetworkState, or why it cannot be programmed. */
export function overlayNetworkOf(s: NetworkState): OverlayNetwork | { error: string } {
  const n = s.network;
  if (!n?.id) return { error: 'a network state without a network' };
  if (!(n.vni > 0 && n.vni < 1 << 24)) return { error: `network ${n.id} has no VNI` };
  const ipam = n.ipam.find((c) => c.subnet) ?? n.spec?.ipam.find((c) => c.subnet);
  if (!ipam) return { error: `network ${n.id} has no subnet` };
  let subnet: string;
  let gateway: string;
  try {
    subnet = networkOf(ipam.subnet);
    gateway = ipam.gateway ? parseCidr(ipam.gateway).ip : intToIp(ipToInt(parseCidr(subnet).ip) + 1);
  } catch (err) {
    return { error: `network ${n.id}: ${(err as Error).message}` };
  }
  return {
    id: n.id,
    name: n.spec?.annotations?.name ?? n.id,
    vni: n.vni,
    subnet,
    bits: parseCidr(subnet).bits,
    gateway,
    internal: n.spec?.internal ?? false,
    ...(n.spec?.ingress ? { ingress: true } : {}),
    bridge: bridgeName(n.vni),
    vxlan: vxlanName(n.vni),
  };
}

/** A peer on another host, as its FDB and neighbour entries. */
export interface RemotePeer {
  ip: string;
  mac: string;
  /** The underlay address of its host (the VXLAN endpoint). */
  vtep: string;
}

/** The peers of a network on other hosts, by address (ours and malformed ones left out). */
export function remotePeers(s: NetworkState, self: { nodeId: string; addr?: string }): Map<string, RemotePeer> {
  const out = new Map<string, RemotePeer>();
  for (const p of s.peers) {
    if (p.nodeId === self.nodeId || !p.nodeAddr || p.nodeAddr === self.addr) continue;
    let ip: string;
    try {
      ip = parseCidr(p.address).ip;
      parseCidr(p.nodeAddr);
    } catch {
      continue;
    }
    out.set(ip, { ip, mac: macOf(ip), vtep: p.nodeAddr });
  }
  return out;
}

/** This node's underlay address as the managers know it (a peer of ours names it), if any. */
export function ownUnderlayAddr(states: readonly NetworkState[], nodeId: string): string | undefined {
  for (const s of states) for (const p of s.peers) if (p.nodeId === nodeId && p.nodeAddr) return p.nodeAddr;
  return undefined;
}

/** A task's attachments to overlay networks: those with an address, in the task's order. */
export function overlayAttachments(t: Task): { networkId: string; address: string }[] {
  return t.networks.filter((a) => a.networkId && a.addresses.length).map((a) => ({ networkId: a.networkId, address: a.addresses[0] }));
}
