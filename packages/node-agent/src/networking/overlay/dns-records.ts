/**
 * The embedded resolver's answers (pure): an index built from the pushed NetworkStateSet, and a
 * query (who asks, on which network, for what) → an answer, NXDOMAIN, or "forward". The server
 * (dns-server.ts) does the wire format and the sockets; a new set is a new index, swapped at once.
 *
 * Names, looked up in the asking task's networks (the one the query came in on first):
 *   tasks.SERVICE          every ready task of the service (or of a service alias)
 *   SERVICE, service alias the VIP in VIP mode when one is set, else the ready tasks' addresses
 *   TASK-NAME, container hostname, task alias   that task's address, ready or not
 * Unknown names in the cluster's namespace (one label, or `tasks.` + one label) are NXDOMAIN;
 * anything else is forwarded to the host's resolvers (refused for a task whose networks are all
 * internal: nothing leaves an internal network). Known names of another type than A: no data.
 */
import { EndpointSpec_ResolutionMode, type NetworkStateSet } from '@swarmd/proto';
import { parseCidr } from './model.js';

/** Seconds: answers come from pushed state, and the next push is the invalidation. */
export const DNS_TTL_SECONDS = 1;

interface NetIndex {
  internal: boolean;
  /** tasks.NAME → ready addresses. */
  tasks: Map<string, string[]>;
  /** SERVICE or alias → VIP or ready addresses. */
  services: Map<string, string[]>;
  /** task name, hostname, task alias → addresses. */
  hosts: Map<string, string[]>;
  /** A task's address on this network → its id. */
  taskAt: Map<string, string>;
}

export interface DnsIndex {
  networks: Map<string, NetIndex>;
  /** Task id → the networks it is on, in set order. */
  networksOf: Map<string, string[]>;
}

export interface DnsQuery {
  name: string;
  /** 'A', 'AAAA', … */
  type: string;
}

export interface DnsRecord {
  name: string;
  type: 'A';
  ttl: number;
  data: string;
}

export type DnsAnswer =
  | { kind: 'answer'; rcode: 'NOERROR' | 'NXDOMAIN'; answers: DnsRecord[] }
  | { kind: 'forward' }
  | { kind: 'refused' };

const norm = (name: string) => name.toLowerCase().replace(/\.$/, '');

function add(m: Map<string, string[]>, key: string, ip: string): void {
  if (!key) return;
  const k = norm(key);
  const l = m.get(k) ?? [];
  if (!l.includes(ip)) l.push(ip);
  m.set(k, l);
}

const ipOf = (cidr: string): string | undefined => {
  try {
    return parseCidr(cidr).ip;
  } catch {
    return undefined;
  }
};

export function buildDnsIndex(set: NetworkStateSet): DnsIndex {
  const networks = new Map<string, NetIndex>();
  const networksOf = new Map<string, string[]>();
  for (const s of set.networks) {
    const id = s.network?.id;
    if (!id) continue;
    const n: NetIndex = { internal: s.network?.spec?.internal ?? false, tasks: new Map(), services: new Map(), hosts: new Map(), taskAt: new Map() };
    const ready = new Map<string, string[]>(); // service id → ready addresses
    const names = new Map<string, string[]>(); // service id → its names (name, aliases)
    for (const p of s.peers) {
      const ip = ipOf(p.address);
      if (!ip) continue;
      n.taskAt.set(ip, p.taskId);
      networksOf.set(p.taskId, [...(networksOf.get(p.taskId) ?? []), id]);
      for (const h of [p.taskName, p.hostname, ...p.aliases]) add(n.hosts, h, ip);
      if (p.ready && p.serviceId) ready.set(p.serviceId, [...(ready.get(p.serviceId) ?? []), ip]);
      if (p.serviceId && p.serviceName && !names.has(p.serviceId)) names.set(p.serviceId, [p.serviceName]);
    }
    const vips = new Map<string, string>();
    for (const svc of s.services) {
      names.set(svc.serviceId, [svc.name, ...svc.aliases].filter(Boolean));
      const vip = svc.vip ? ipOf(svc.vip) : undefined;
      if (svc.mode === EndpointSpec_ResolutionMode.VIP && vip) vips.set(svc.serviceId, vip);
    }
    for (const [svcId, ns] of names) {
      const addrs = ready.get(svcId) ?? [];
      const vip = vips.get(svcId);
      for (const name of ns) {
        n.tasks.set(norm(`tasks.${name}`), [...addrs]);
        n.services.set(norm(name), vip ? [vip] : [...addrs]);
      }
    }
    networks.set(id, n);
  }
  return { networks, networksOf };
}

/** One label, or `tasks.` and one label: names only the cluster can answer. */
export function inClusterNamespace(name: string): boolean {
  const labels = norm(name).split('.');
  return labels.length === 1 || (labels.length === 2 && labels[0] === 'tasks');
}

/**
 * Answers `q` for the task at `asker.address` on network `asker.networkId` (the network whose
 * gateway received the query). `rotate` turns multi-address answers (round robin by the caller).
 */
export function answerQuery(index: DnsIndex, asker: { networkId: string; address: string }, q: DnsQuery, rotate = 0): DnsAnswer {
  const name = norm(q.name);
  const taskId = index.networks.get(asker.networkId)?.taskAt.get(asker.address);
  const order = [asker.networkId, ...((taskId && index.networksOf.get(taskId)) || []).filter((id) => id !== asker.networkId)];
  const nets = order.map((id) => index.networks.get(id)).filter((n): n is NetIndex => n !== undefined);
  for (const n of nets) {
    const addrs = n.tasks.get(name) ?? n.services.get(name) ?? n.hosts.get(name);
    if (!addrs) continue;
    if (q.type !== 'A') return { kind: 'answer', rcode: 'NOERROR', answers: [] };
    const k = addrs.length ? rotate % addrs.length : 0;
    const turned = [...addrs.slice(k), ...addrs.slice(0, k)];
    return { kind: 'answer', rcode: 'NOERROR', answers: turned.map((data) => ({ name: q.name.replace(/\.$/, ''), type: 'A', ttl: DNS_TTL_SECONDS, data })) };
  }
  if (inClusterNamespace(name)) return { kind: 'answer', rcode: 'NXDOMAIN', answers: [] };
  if (nets.length && nets.every((n) => n.internal)) return { kind: 'refused' };
  return { kind: 'forward' };
}
