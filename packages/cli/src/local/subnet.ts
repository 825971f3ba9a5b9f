import { invalidArgument } from '@swarmd/common/errors';

/** An IPv4 subnet in CIDR form and the addresses a local cluster takes from it. */
export interface Subnet {
  cidr: string;
  prefixLen: number;
  /** The bridge's address in the root namespace (network + 1). */
  gateway: string;
  /** Host i (0-based) gets network + 2 + i. */
  hostAddr(i: number): string;
  /** How many hosts fit. */
  capacity: number;
}

const toInt = (ip: string) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');

export function parseSubnet(s: string): Subnet {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255)) throw invalidArgument(`--subnet ${s}: expected an IPv4 CIDR such as 10.250.0.0/24`);
  const prefixLen = Number(m[5]);
  if (prefixLen < 8 || prefixLen > 29) throw invalidArgument(`--subnet ${s}: prefix length must be 8..29`);
  const size = 2 ** (32 - prefixLen);
  const base = toInt(m.slice(1, 5).join('.'));
  const network = base - (base % size);
  if (network !== base) throw invalidArgument(`--subnet ${s}: not a network address (did you mean ${toIp(network)}/${prefixLen}?)`);
  return {
    cidr: `${toIp(network)}/${prefixLen}`,
    prefixLen,
    gateway: toIp(network + 1),
    hostAddr: (i) => toIp(network + 2 + i),
    capacity: size - 3, // network, gateway, broadcast
  };
}

/** True when `addr` lies in `cidr`. */
export function inSubnet(addr: string, cidr: string): boolean {
  const [net, len] = cidr.split('/');
  const size = 2 ** (32 - Number(len));
  return Math.floor(toInt(addr) / size) === Math.floor(toInt(net) / size);
}
