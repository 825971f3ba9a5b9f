/**
 * Host-local IPAM for the per-host bridge (pure part + a JSON file). Addresses and published
 * ports are persisted before any link is made, so a restarted agent never hands out an address
 * or port a live container still holds.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface PublishedPort {
  protocol: 'tcp' | 'udp';
  published: number;
  target: number;
}

export interface Allocation {
  /** overlay: a task the overlay layer attaches, here only for the ports it publishes in mode=host. */
  mode: 'bridge' | 'none' | 'overlay';
  /** Bridge mode: the container's address (no prefix); overlay: the address its ports go to. */
  ip?: string;
  /** Overlay: the bridge that address is on. */
  dev?: string;
  ports: PublishedPort[];
}

export interface IpamState {
  version: 1;
  subnet: string;
  tasks: Record<string, Allocation>;
}

export function parseSubnet(cidr: string): { base: number; bits: number } {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
  if (!m) throw new Error(`invalid subnet ${cidr}`);
  const oct = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (oct.some((o) => o > 255) || bits < 16 || bits > 29) throw new Error(`invalid subnet ${cidr} (prefix 16..29)`);
  const base = ((oct[0] << 24) | (oct[1] << 16) | (oct[2] << 8) | oct[3]) >>> 0;
  const mask = (0xffffffff << (32 - bits)) >>> 0;
  return { base: (base & mask) >>> 0, bits };
}

export const ipString = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The bridge's own address (first host address). */
export function gatewayOf(cidr: string): string {
  return ipString(parseSubnet(cidr).base + 1);
}

/** The lowest free address of the subnet (after the gateway). */
export function allocateIp(state: IpamState): string {
  const { base, bits } = parseSubnet(state.subnet);
  const used = new Set(Object.values(state.tasks).map((a) => a.ip));
  const size = 2 ** (32 - bits);
  for (let i = 2; i < size - 1; i++) {
    const ip = ipString(base + i);
    if (!used.has(ip)) return ip;
  }
  throw new Error(`subnet ${state.subnet} is full`);
}

/** Ports published by other tasks (to refuse a conflict instead of shadowing a rule). */
export function portConflict(state: IpamState, taskId: string, p: PublishedPort): string | undefined {
  for (const [id, a] of Object.entries(state.tasks)) {
    if (id !== taskId && a.ports.some((q) => q.protocol === p.protocol && q.published === p.published)) return id;
  }
  return undefined;
}

export class IpamFile {
  constructor(private readonly path: string) {}

  async load(subnet: string): Promise<IpamState> {
    const raw = await readFile(this.path, 'utf8').catch(() => undefined);
    if (!raw) return { version: 1, subnet, tasks: {} };
    const s = JSON.parse(raw) as IpamState;
    return { version: 1, subnet: s.subnet || subnet, tasks: s.tasks ?? {} };
  }

  async save(s: IpamState): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    await writeFile(tmp, JSON.stringify(s, null, 2));
    await rename(tmp, this.path);
  }
}
