/**
 * VIP load balancing (pure): which services a task reaches by virtual IP, with their ready
 * endpoints, and the nft table that spreads its connections over them. The table lives in the
 * task's own netns (output hook, nat): the client's netns DNATs, so replies come back to it and
 * conntrack un-DNATs them; no bridge netfilter, no SNAT; a connection to the task itself through
 * the VIP is local delivery. kube-proxy's nftables mode is the model:
 *
 *   table ip swarmd_vip {
 *     map service-ips { type ipv4_addr : verdict; elements = { VIP : goto svc-NAME-HASH, … } }
 *     chain output { type nat hook output priority -100; ip daddr vmap @service-ips }
 *     chain svc-NAME-HASH { numgen random mod N vmap { 0 : goto ep-10-0-1-5, … } }
 *     chain ep-10-0-1-5 { dnat to 10.0.1.5 }            (the port is kept)
 *     chain no-endpoints { reject with tcp reset; reject }   (VIPs with no ready endpoint)
 *   }
 *
 * A service in a canary rollout sends its weight W of new connections to its canary endpoints
 * and the rest to the others, exactly, through an interval verdict map:
 *
 *     chain svc-NAME-HASH { numgen random mod 100 vmap { 0-79 : goto svc-NAME-HASH-s, 80-99 : goto svc-NAME-HASH-c } }
 *     chain svc-NAME-HASH-s { numgen random mod N vmap { … the old endpoints … } }
 *     chain svc-NAME-HASH-c { … the canary endpoints … }
 *
 * The NAT chains see only the first packet of a connection: an established one stays on its
 * backend whatever the next set says. The whole table is replaced as one transaction.
 */
import { EndpointSpec_ResolutionMode, type NetworkState } from '@swarmd/proto';
import { ipToInt, parseCidr, shortHash } from './model.js';

/** The table in each task's netns (the netns is the task's own: one name fits all). */
export const VIP_TABLE = 'swarmd_vip';

/** A service reached by VIP on one network. */
export interface VipService {
  serviceId: string;
  name: string;
  networkId: string;
  vip: string;
  /** Ready endpoints' addresses on the network, in address order. */
  endpoints: string[];
  /** Those of `endpoints` that are canaries of a rollout, in address order. */
  canaries: string[];
  /** Percent of new connections for the canaries (0: every endpoint alike). */
  weight: number;
}

const ipOf = (cidr: string): string | undefined => {
  try {
    return parseCidr(cidr).ip;
  } catch {
    return undefined;
  }
};

const byAddress = (a: string, b: string) => ipToInt(a) - ipToInt(b);

/**
 * The services of a network in VIP mode with a VIP, each with its ready endpoints there
 * (running, healthy where checked, not draining: the managers' `ready`). dnsrr services and
 * services without a VIP have none. In VIP order.
 */
export function vipServices(s: NetworkState): VipService[] {
  const networkId = s.network?.id;
  if (!networkId) return [];
  const ready = new Map<string, Set<string>>();
  const canaries = new Set<string>();
  for (const p of s.peers) {
    const ip = p.ready && p.serviceId ? ipOf(p.address) : undefined;
    if (!ip) continue;
    const l = ready.get(p.serviceId) ?? new Set<string>();
    l.add(ip);
    ready.set(p.serviceId, l);
    if (p.canary) canaries.add(ip);
  }
  const out: VipService[] = [];
  for (const svc of s.services) {
    const vip = svc.mode === EndpointSpec_ResolutionMode.VIP && svc.vip ? ipOf(svc.vip) : undefined;
    if (!vip || !svc.serviceId) continue;
    const endpoints = [...(ready.get(svc.serviceId) ?? [])].sort(byAddress);
    out.push({ serviceId: svc.serviceId, name: svc.name, networkId, vip, endpoints, canaries: endpoints.filter((ip) => canaries.has(ip)), weight: svc.canaryWeight });
  }
  return out.sort((a, b) => byAddress(a.vip, b.vip));
}

/**
 * The services a task on `networkIds` reaches by VIP: those of each of its networks in the pushed
 * set (a network missing from it gives none). A VIP twice (overlapping subnets): the first wins.
 */
export function taskVipServices(networkIds: readonly string[], states: ReadonlyMap<string, NetworkState>): VipService[] {
  const seen = new Set<string>();
  const out: VipService[] = [];
  for (const id of networkIds) {
    const s = states.get(id);
    if (!s) continue;
    for (const svc of vipServices(s)) {
      if (seen.has(svc.vip)) continue;
      seen.add(svc.vip);
      out.push(svc);
    }
  }
  return out;
}

/** nft identifiers of ours: a letter first, then letters, digits, `-` and `_` only. */
const safe = (s: string, max: number) => s.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, max);

/** The chain of a service on a network: its name for the reader, a hash for uniqueness. */
export const serviceChain = (s: Pick<VipService, 'name' | 'serviceId' | 'networkId'>): string => `svc-${safe(s.name, 32)}${s.name ? '-' : ''}${shortHash(`${s.networkId}/${s.serviceId}`)}`;
/** The chain DNATing to one endpoint (an address is one backend whichever service names it). */
export const endpointChain = (ip: string): string => `ep-${ip.replace(/\./g, '-')}`;
export const NO_ENDPOINTS_CHAIN = 'no-endpoints';

/** One verdict, or `numgen random mod N` over one per item. */
export function spread<T>(items: readonly T[], verdict: (x: T) => string): string {
  return items.length === 1 ? verdict(items[0]) : `numgen random mod ${items.length} vmap { ${items.map((x, i) => `${i} : ${verdict(x)}`).join(', ')} }`;
}

/**
 * A canary weight as nft sees it: when the service has both canary and other endpoints and a
 * weight between 1 and 99, the two parts and the statement picking one (`numgen random mod 100`
 * over the intervals 0..99-W and 100-W..99, so W% of new connections go to the canaries).
 */
export function weightedSplit(s: { endpoints: readonly string[]; canaries: readonly string[]; weight: number }):
  | { stable: string[]; canaries: string[]; pick: (verdict: (part: 's' | 'c') => string) => string }
  | undefined {
  const canaries = new Set(s.canaries);
  const stable = s.endpoints.filter((ip) => !canaries.has(ip));
  const w = Math.round(s.weight);
  if (w <= 0 || w >= 100 || canaries.size === 0 || stable.length === 0) return undefined;
  return {
    stable,
    canaries: s.endpoints.filter((ip) => canaries.has(ip)),
    pick: (verdict) => `numgen random mod 100 vmap { 0-${99 - w} : ${verdict('s')}, ${100 - w}-99 : ${verdict('c')} }`,
  };
}

/** The comment of a map element: the service's name (printable ASCII but quotes and backslashes). */
const comment = (name: string) => {
  const text = name.replace(/[^\x20-\x7e]|["\\]/g, '').slice(0, 64);
  return text ? ` comment "${text}"` : '';
};

/**
 * The VIP table of one task, or '' when it reaches no service by VIP (no table then). Equal
 * inputs give equal text: the driver loads a task's table only when its text changed.
 */
export function vipRuleset(services: readonly VipService[], table = VIP_TABLE): string {
  if (!services.length) return '';
  const elements: string[] = [];
  const chains: string[] = [];
  const endpoints = new Set<string>();
  let rejects = false;
  for (const s of services) {
    if (!s.endpoints.length) {
      rejects = true;
      elements.push(`${s.vip}${comment(s.name)} : goto ${NO_ENDPOINTS_CHAIN}`);
      continue;
    }
    const chain = serviceChain(s);
    elements.push(`${s.vip}${comment(s.name)} : goto ${chain}`);
    const split = weightedSplit(s);
    if (split) {
      chains.push(`  chain ${chain} {`, `    ${split.pick((part) => `goto ${chain}-${part}`)}`, `  }`);
      chains.push(`  chain ${chain}-s {`, `    ${spread(split.stable, (ip) => `goto ${endpointChain(ip)}`)}`, `  }`);
      chains.push(`  chain ${chain}-c {`, `    ${spread(split.canaries, (ip) => `goto ${endpointChain(ip)}`)}`, `  }`);
    } else chains.push(`  chain ${chain} {`, `    ${spread(s.endpoints, (ip) => `goto ${endpointChain(ip)}`)}`, `  }`);
    for (const ip of s.endpoints) endpoints.add(ip);
  }
  for (const ip of [...endpoints].sort(byAddress)) chains.push(`  chain ${endpointChain(ip)} {`, `    dnat to ${ip}`, `  }`);
  // Refused at once (not left to time out): a TCP reset, ICMP port unreachable for the rest.
  if (rejects) chains.push(`  chain ${NO_ENDPOINTS_CHAIN} {`, `    meta l4proto tcp reject with tcp reset`, `    reject`, `  }`);
  return [
    `table ip ${table} {`,
    `  map service-ips {`,
    `    type ipv4_addr : verdict`,
    `    elements = { ${elements.join(', ')} }`,
    `  }`,
    `  chain output {`,
    `    type nat hook output priority -100; policy accept;`,
    `    ip daddr vmap @service-ips`,
    `  }`,
    ...chains,
    `}`,
    '',
  ].join('\n');
}

/**
 * One `nft -f` transaction replacing the table with `rules` (`add` so the `delete` finds it; an
 * empty `rules` only deletes it): all or nothing, no moment without rules. `fresh`: the netns has
 * no table yet (just made), so the rules alone (a commit that replaces nothing is ~3× faster).
 */
export function vipTransaction(rules: string, o: { fresh?: boolean; table?: string } = {}): string[] {
  const table = o.table ?? VIP_TABLE;
  const lines = rules ? rules.trimEnd().split('\n') : [];
  return o.fresh ? lines : [`add table ip ${table}`, `delete table ip ${table}`, ...lines];
}
