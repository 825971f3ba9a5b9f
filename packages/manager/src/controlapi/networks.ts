/**
 * Networks of the control API (after SwarmKit's controlapi/network.go): CreateNetwork, GetNetwork,
 * ListNetworks, RemoveNetwork. Overlay networks only (`host`, `none` and `bridge` are task modes,
 * not stored networks). A subnet not given comes from the cluster's default address pool; the
 * gateway defaults to the subnet's first address. Refused, storing nothing: a malformed or
 * overlapping subnet, a gateway outside its subnet, a name in use, removing a network a service
 * uses. The allocator (allocator/) gives the network its VNI.
 */
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import type { Network, NetworkSpec, PortConfig, Service } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { cloneObject, nameOf } from '../store/kinds.js';
import { newId } from '../ids.js';
import { BUILTIN_NETWORKS, INGRESS_NAME, ingressPorts } from '../specs/networks.js';
import { DEFAULT_POOL, DEFAULT_SUBNET_SIZE, type Cidr, contains, formatCidr, formatIp, firstHost, overlaps, parseCidr, parseIp, pickSubnet, size } from '../ipam/index.js';


export { BUILTIN_NETWORKS } from '../specs/networks.js';

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** A network by id, exact name, or unique id prefix. */
export function resolveNetwork(tx: ReadTx, ref: string): Readonly<Network> {
  if (!ref) throw invalidArgument('network_id is required');
  const exact = tx.get('network', ref);
  if (exact) return exact;
  const byName = tx.find('network', { name: ref })[0];
  if (byName) return byName;
  const byPrefix = tx.find('network').filter((n) => n.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw invalidArgument(`network "${ref}" is ambiguous: ${byPrefix.map((n) => n.id).join(', ')}`);
  throw notFound(`network ${ref} not found`);
}

/** The subnet a stored network holds. */
export function subnetOf(n: Readonly<Network>): Cidr | undefined {
  const s = n.spec?.ipam[0]?.subnet;
  if (!s) return undefined;
  try {
    return parseCidr(s, 'subnet');
  } catch {
    return undefined;
  }
}

/** Services that attach to network `id`. */
export function servicesOnNetwork(tx: ReadTx, id: string): Readonly<Service>[] {
  return tx.find('service').filter((s) => s.spec?.task?.networks.some((a) => a.target === id));
}

/** The cluster's default address pool and subnet size. */
function poolOf(tx: ReadTx): { pools: Cidr[]; subnetSize: number } {
  const c = tx.find('cluster')[0];
  const pools = (c?.defaultAddressPool.length ? c.defaultAddressPool : DEFAULT_POOL).map((p) => parseCidr(p, 'default address pool'));
  return { pools, subnetSize: c?.subnetSize || DEFAULT_SUBNET_SIZE };
}

/** Checks a spec and fills subnet and gateway (the subnet from the pool, against what `tx` holds). */
function completeSpec(tx: ReadTx, given: NetworkSpec | undefined): NetworkSpec {
  if (!given) throw invalidArgument('spec is required');
  const spec = structuredClone<NetworkSpec>(given);
  const name = spec.annotations?.name ?? '';
  if (!NAME.test(name)) throw invalidArgument(`spec.annotations.name: "${name}" is not a valid network name (letters, digits, _ . -; at most 63)`);
  if (BUILTIN_NETWORKS.has(name) || name === 'ingress') throw invalidArgument(`spec.annotations.name: "${name}" is reserved`);
  spec.driver ||= 'overlay';
  if (spec.driver !== 'overlay') throw invalidArgument(`spec.driver: "${spec.driver}" is not supported (overlay)`);
  if (spec.ipam.length > 1) throw invalidArgument('spec.ipam: one subnet per network');
  const taken = tx.find('network').flatMap((n) => subnetOf(n) ?? []);
  const ipam = spec.ipam[0] ?? { subnet: '', gateway: '', range: '' };
  let subnet: Cidr;
  if (ipam.subnet) {
    subnet = parseCidr(ipam.subnet, 'spec.ipam[0].subnet');
    if (subnet.bits > 29) throw invalidArgument(`spec.ipam[0].subnet: ${ipam.subnet} is too small (at most /29)`);
    const clash = tx.find('network').find((n) => {
      const s = subnetOf(n);
      return s && overlaps(s, subnet);
    });
    if (clash) throw invalidArgument(`spec.ipam[0].subnet: ${ipam.subnet} overlaps network ${nameOf('network', clash)} (${clash.spec?.ipam[0]?.subnet})`);
  } else {
    if (ipam.gateway) throw invalidArgument('spec.ipam[0].gateway: give a subnet with the gateway');
    const { pools, subnetSize } = poolOf(tx);
    const picked = pickSubnet(pools, subnetSize, taken);
    if (!picked) throw failedPrecondition(`no subnet left in the default address pool (${pools.map(formatCidr).join(', ')}, /${subnetSize} each): give one with --subnet`);
    subnet = picked;
  }
  if (ipam.range) throw invalidArgument('spec.ipam[0].range: not supported');
  let gateway = firstHost(subnet);
  if (ipam.gateway) {
    const g = parseIp(ipam.gateway);
    if (g === undefined) throw invalidArgument(`spec.ipam[0].gateway: "${ipam.gateway}" is not an IPv4 address`);
    if (!contains(subnet, g) || g === subnet.base || g === subnet.base + size(subnet) - 1) {
      throw invalidArgument(`spec.ipam[0].gateway: ${ipam.gateway} is not a host address of subnet ${formatCidr(subnet)}`);
    }
    gateway = g;
  }
  spec.ipam = [{ subnet: formatCidr(subnet), gateway: formatIp(gateway), range: '' }];
  return spec;
}

export function createNetworksImpl(deps: { store: Store; logger: Logger }) {
  const { store, logger: log } = deps;

  async function createNetwork(req: { spec?: NetworkSpec }): Promise<{ network: Network }> {
    store.view((tx) => completeSpec(tx, req.spec)); // a clear error before the proposal
    const id = newId();
    await store.update((tx) => {
      const spec = completeSpec(tx, req.spec);
      const name = spec.annotations!.name;
      const holder = tx.find('network', { name })[0];
      if (holder) throw alreadyExists(`network name "${name}" is already in use by network ${holder.id}`);
      tx.create('network', { id, meta: undefined, spec, vni: 0, ipam: [] });
    });
    const n = store.view((tx) => tx.get('network', id))!;
    log.info('network created', { networkId: id, name: nameOf('network', n), subnet: n.spec?.ipam[0]?.subnet });
    return { network: cloneObject('network', n) };
  }

  async function getNetwork(req: { networkId: string }): Promise<{ network: Network }> {
    return { network: cloneObject('network', store.view((tx) => resolveNetwork(tx, req.networkId))) };
  }

  async function listNetworks(): Promise<{ networks: Network[] }> {
    return { networks: store.view((tx) => tx.find('network')).map((n) => cloneObject('network', n)) };
  }

  async function removeNetwork(req: { networkId: string }): Promise<Record<string, never>> {
    const n = store.view((tx) => resolveNetwork(tx, req.networkId));
    await store.update((tx) => {
      if (!tx.get('network', n.id)) throw notFound(`network ${n.id} not found`);
      if (n.spec?.ingress) throw failedPrecondition(`network ${nameOf('network', n)} is the routing mesh's: it cannot be removed (services join it by publishing ports)`);
      const users = servicesOnNetwork(tx, n.id);
      if (users.length) throw failedPrecondition(`network ${nameOf('network', n)} is in use by service ${users.map((s) => nameOf('service', s)).join(', ')}: remove the services or detach them first (service update --network-rm)`);
      const attached = tx.find('task').filter((t) => t.networks.some((a) => a.networkId === n.id));
      if (attached.length) throw failedPrecondition(`network ${nameOf('network', n)} still has ${attached.length} task(s) attached (stopping): retry in a moment`);
      tx.delete('network', n.id);
    });
    log.info('network removed', { networkId: n.id, name: nameOf('network', n) });
    return {};
  }

  return { createNetwork, getNetwork, listNetworks, removeNetwork };
}

/**
 * A service spec's network targets as stored: each overlay network named by id (a name or id
 * prefix given by the user is resolved); host, none and bridge are modes and stay as they are,
 * alone. NOT_FOUND names a network that does not exist.
 */
export function resolveServiceNetworks(tx: ReadTx, spec: { task?: { networks: { target: string; aliases: string[] }[] } }): void {
  const nets = spec.task?.networks ?? [];
  const builtin = nets.filter((n) => BUILTIN_NETWORKS.has(n.target));
  if (builtin.length && nets.length > 1) throw invalidArgument(`spec.task.networks: "${builtin[0].target}" cannot be combined with other networks`);
  const seen = new Set<string>();
  nets.forEach((n, i) => {
    if (BUILTIN_NETWORKS.has(n.target)) return;
    let net: Readonly<Network>;
    try {
      net = resolveNetwork(tx, n.target);
    } catch (err) {
      throw notFound(`spec.task.networks[${i}]: network "${n.target}" not found (create it with: swarmctl network create ${n.target})`, { cause: err });
    }
    if (seen.has(net.id)) throw invalidArgument(`spec.task.networks[${i}]: network "${n.target}" is attached twice`);
    seen.add(net.id);
    n.target = net.id;
  });
}

/** The routing mesh's network, if the cluster has one. */
export function ingressNetworkOf(tx: ReadTx): Readonly<Network> | undefined {
  return tx.find('network').find((n) => n.spec?.ingress);
}

const PORT_RANGE = { first: 30_000, last: 32_767 };

/**
 * Ports published in ingress mode (the routing mesh): a port not given gets a free one from
 * 30000-32767 (as Docker); a port another service publishes is refused; the service joins the
 * ingress network (last, after its own networks) exactly while it publishes a port there.
 * Call inside the transaction, after resolveServiceNetworks.
 */
export function applyIngress(tx: ReadTx, serviceId: string, spec: { task?: { networks: { target: string; aliases: string[] }[] }; endpoint?: { ports: PortConfig[] } }): void {
  const ingress = ingressNetworkOf(tx);
  if (spec.task) spec.task.networks = spec.task.networks.filter((n) => n.target !== ingress?.id && n.target !== INGRESS_NAME);
  const mine = ingressPorts(spec.endpoint as never);
  if (mine.length === 0) return;
  if (!ingress) throw failedPrecondition('this cluster has no ingress network: publish ports with mode=host');
  const taken = new Map<string, string>();
  for (const s of tx.find('service')) {
    if (s.id === serviceId) continue;
    for (const p of ingressPorts(s.spec?.endpoint)) taken.set(`${p.publishedPort}/${p.protocol}`, nameOf('service', s));
  }
  const seen = new Set<string>();
  for (const p of mine) {
    if (p.publishedPort === 0) {
      let port = PORT_RANGE.first;
      while (port <= PORT_RANGE.last && (taken.has(`${port}/${p.protocol}`) || seen.has(`${port}/${p.protocol}`))) port++;
      if (port > PORT_RANGE.last) throw failedPrecondition(`no free port left in ${PORT_RANGE.first}-${PORT_RANGE.last} for target port ${p.targetPort}`);
      p.publishedPort = port;
    }
    const key = `${p.publishedPort}/${p.protocol}`;
    const holder = taken.get(key);
    const proto = ['tcp', 'udp', 'sctp'][p.protocol] ?? String(p.protocol);
    if (holder) throw invalidArgument(`spec.endpoint.ports: port ${p.publishedPort}/${proto} is already published by service ${holder}`);
    if (seen.has(key)) throw invalidArgument(`spec.endpoint.ports: port ${p.publishedPort}/${proto} is published twice`);
    seen.add(key);
  }
  spec.task?.networks.push({ target: ingress.id, aliases: [] });
}
