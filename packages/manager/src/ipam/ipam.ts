/**
 * IPv4 address management as pure functions (a neutral kit: the control API picks subnets with it,
 * the allocator picks addresses and VIPs). Everything allocated lives in the store, so the state
 * passed in is always recomputed from it: a leader change changes no address.
 */
import { invalidArgument } from '@swarmd/common/errors';

export interface Cidr {
  /** The network address as an unsigned 32-bit number. */
  base: number;
  bits: number;
}

/** Docker's default address pool: 10.0.0.0/8 cut into /24s. */
export const DEFAULT_POOL = ['10.0.0.0/8'];
export const DEFAULT_SUBNET_SIZE = 24;

export function parseIp(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s.trim());
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) return undefined;
  return ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const maskOf = (bits: number): number => (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);

/** "10.0.1.0/24" → its network; `what` names the field in the error. Host bits must be zero. */
export function parseCidr(s: string, what: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s.trim());
  const ip = m ? parseIp(m[1]) : undefined;
  const bits = m ? Number(m[2]) : NaN;
  if (!m || ip === undefined || !(bits >= 0 && bits <= 32)) throw invalidArgument(`${what}: "${s}" is not an IPv4 CIDR (e.g. 10.0.1.0/24)`);
  if ((ip & ~maskOf(bits)) >>> 0 !== 0) throw invalidArgument(`${what}: "${s}" has host bits set (did you mean ${formatIp((ip & maskOf(bits)) >>> 0)}/${bits}?)`);
  return { base: ip, bits };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.base)}/${c.bits}`;
}

export function size(c: Cidr): number {
  return 2 ** (32 - c.bits);
}

export function contains(c: Cidr, ip: number): boolean {
  return (ip & maskOf(c.bits)) >>> 0 === c.base;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  return a.bits <= b.bits ? contains(a, b.base) : contains(b, a.base);
}

/** The first host address (Docker's default gateway). */
export function firstHost(c: Cidr): number {
  return c.base + 1;
}

/**
 * The first /`subnetSize` of the pools that overlaps none of `taken`; undefined when every one is.
 * Stepping over a taken range jumps to its end, so a pool of 65,536 /24s costs little.
 */
export function pickSubnet(pools: readonly Cidr[], subnetSize: number, taken: readonly Cidr[]): Cidr | undefined {
  for (const pool of pools) {
    if (subnetSize < pool.bits) continue;
    const step = 2 ** (32 - subnetSize);
    const end = pool.base + size(pool);
    for (let base = pool.base; base < end; ) {
      const cand: Cidr = { base, bits: subnetSize };
      const hit = taken.find((t) => overlaps(t, cand));
      if (!hit) return cand;
      base = Math.max(base + step, hit.base + size(hit));
      base = Math.ceil((base - pool.base) / step) * step + pool.base;
    }
  }
  return undefined;
}

/**
 * The lowest free host address of `subnet` (not the network or broadcast address, not in `used`),
 * or undefined when the subnet is exhausted.
 */
export function pickAddress(subnet: Cidr, used: ReadonlySet<number>): number | undefined {
  const last = subnet.base + size(subnet) - 1;
  const first = subnet.bits >= 31 ? subnet.base : subnet.base + 1;
  const stop = subnet.bits >= 31 ? last : last - 1;
  for (let ip = first; ip <= stop; ip++) if (!used.has(ip)) return ip;
  return undefined;
}

/** "10.0.1.5/24" → 10.0.1.5 as a number (the address part of a CIDR-form address). */
export function addressOf(cidrAddr: string): number | undefined {
  return parseIp(cidrAddr.split('/')[0]);
}
