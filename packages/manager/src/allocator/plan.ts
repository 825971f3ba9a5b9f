/**
 * The allocator's decisions as a pure function of what the store holds (SwarmKit's
 * allocator/network.go, without its in-memory bitmaps: everything in use is read from the
 * store each time, so a new leader decides exactly as the old one would have).
 *
 * - A VNI per overlay network (the lowest free one from 4097, as Docker's overlay driver).
 * - A virtual IP per service per overlay network it attaches to (endpoint mode VIP only).
 * - An address per task per overlay network, before the scheduler places it.
 * An address (or VIP) is in use while an object holding it is in the store: a task's address is
 * freed when the task is removed, and only then reused. A full subnet leaves the task waiting,
 * with the reason in its status.
 */
import { EndpointSpec_ResolutionMode, type EndpointVirtualIp, type Network, type NetworkAttachment, type Node, type Service, type Task, TaskState } from '@swarmd/proto';
import { addressOf, formatIp, parseCidr, parseIp, pickAddress, type Cidr } from '../ipam/index.js';
import { overlayTargets, networksAllocated } from '../specs/networks.js';

export const FIRST_VNI = 4097;

export interface AllocatorInput {
  networks: readonly Readonly<Network>[];
  services: readonly Readonly<Service>[];
  tasks: readonly Readonly<Task>[];
  /** Every node gets an address on the ingress network (the routing mesh's source address). */
  nodes?: readonly Readonly<Node>[];
}

export interface AllocationPlan {
  /** Network id → its new VNI. */
  vnis: Map<string, number>;
  /** Service id → its complete list of VIPs (replaces endpoint.virtual_ips). */
  vips: Map<string, EndpointVirtualIp[]>;
  /** Task id → its network attachments, in spec order. */
  attachments: Map<string, NetworkAttachment[]>;
  /** Task id → why it waits (a full subnet). */
  waiting: Map<string, string>;
  /** Node id → its attachments (its ingress address). */
  nodeAttachments: Map<string, NetworkAttachment[]>;
}

interface NetState {
  net: Readonly<Network>;
  subnet: Cidr;
  used: Set<number>;
}

const vipMode = (s: Readonly<Service>): boolean => (s.spec?.endpoint?.mode ?? EndpointSpec_ResolutionMode.VIP) === EndpointSpec_ResolutionMode.VIP;

/** Whether a task still needs (or may get) addresses: not yet placed, and wanted. */
function wantsAddresses(t: Readonly<Task>): boolean {
  const st = t.status?.state ?? TaskState.TASK_STATE_NEW;
  return t.desiredState <= TaskState.TASK_STATE_RUNNING && st <= TaskState.TASK_STATE_PENDING && !networksAllocated(t);
}

export function planAllocation(input: AllocatorInput): AllocationPlan {
  const plan: AllocationPlan = { vnis: new Map(), vips: new Map(), attachments: new Map(), waiting: new Map(), nodeAttachments: new Map() };

  // VNIs.
  const usedVni = new Set(input.networks.map((n) => n.vni).filter((v) => v > 0));
  let nextVni = FIRST_VNI;
  for (const n of [...input.networks].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    if (n.vni > 0) continue;
    while (usedVni.has(nextVni)) nextVni++;
    usedVni.add(nextVni);
    plan.vnis.set(n.id, nextVni);
  }

  // Addresses in use per network: gateway, VIPs, task addresses.
  const nets = new Map<string, NetState>();
  for (const net of input.networks) {
    const ipam = net.spec?.ipam[0];
    if (!ipam?.subnet) continue;
    let subnet: Cidr;
    try {
      subnet = parseCidr(ipam.subnet, 'subnet');
    } catch {
      continue;
    }
    const used = new Set<number>();
    const gw = parseIp(ipam.gateway);
    if (gw !== undefined) used.add(gw);
    nets.set(net.id, { net, subnet, used });
  }
  const use = (networkId: string, addr: string): void => {
    const ip = addressOf(addr);
    if (ip !== undefined) nets.get(networkId)?.used.add(ip);
  };
  for (const s of input.services) for (const v of s.endpoint?.virtualIps ?? []) use(v.networkId, v.addr);
  for (const t of input.tasks) for (const a of t.networks) for (const addr of a.addresses) use(a.networkId, addr);
  for (const n of input.nodes ?? []) for (const a of n.attachments) for (const addr of a.addresses) use(a.networkId, addr);

  const take = (networkId: string): string | undefined => {
    const st = nets.get(networkId);
    if (!st) return undefined;
    const ip = pickAddress(st.subnet, st.used);
    if (ip === undefined) return undefined;
    st.used.add(ip);
    return `${formatIp(ip)}/${st.subnet.bits}`;
  };

  // VIPs: one per overlay network of a VIP-mode service; none for dnsrr or detached networks.
  for (const s of [...input.services].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const targets = vipMode(s) ? overlayTargets(s.spec?.task).filter((id) => nets.has(id)) : [];
    const have = s.endpoint?.virtualIps ?? [];
    const keep = have.filter((v) => targets.includes(v.networkId));
    const out: EndpointVirtualIp[] = [];
    let changed = keep.length !== have.length;
    for (const id of targets) {
      const cur = keep.find((v) => v.networkId === id);
      if (cur) {
        out.push(cur);
        continue;
      }
      const addr = take(id);
      if (!addr) continue; // a full subnet: the service has no VIP there until an address frees
      out.push({ networkId: id, addr });
      changed = true;
    }
    if (changed) plan.vips.set(s.id, out);
  }

  // Node addresses on the ingress network; an attachment to a network that is gone is dropped.
  const ingress = input.networks.find((n) => n.spec?.ingress && nets.has(n.id));
  for (const n of [...(input.nodes ?? [])].sort((a, b) => (a.id < b.id ? -1 : 1))) {
    const keep = n.attachments.filter((a) => nets.has(a.networkId));
    const out = [...keep];
    if (ingress && !keep.some((a) => a.networkId === ingress.id)) {
      const addr = take(ingress.id);
      if (addr) out.push({ networkId: ingress.id, addresses: [addr], aliases: [] });
    }
    if (out.length !== n.attachments.length) plan.nodeAttachments.set(n.id, out);
  }

  // Task addresses, oldest tasks first.
  const pending = input.tasks.filter(wantsAddresses).sort((a, b) => (a.meta?.createdAt ?? 0) - (b.meta?.createdAt ?? 0) || (a.id < b.id ? -1 : 1));
  for (const t of pending) {
    const out: NetworkAttachment[] = [];
    let missing: string | undefined;
    const aliases = new Map((t.spec?.networks ?? []).map((n) => [n.target, n.aliases]));
    for (const id of overlayTargets(t.spec)) {
      const cur = t.networks.find((a) => a.networkId === id && a.addresses.length > 0);
      if (cur) {
        out.push(cur);
        continue;
      }
      const st = nets.get(id);
      if (!st) {
        missing = `network ${id} is not allocated yet`;
        break;
      }
      const addr = take(id);
      if (!addr) {
        missing = `no IP address left on network ${st.net.spec?.annotations?.name ?? id} (subnet ${st.net.spec?.ipam[0]?.subnet}): waiting for one to be freed`;
        break;
      }
      out.push({ networkId: id, addresses: [addr], aliases: [...(aliases.get(id) ?? [])] });
    }
    if (missing) {
      // Give back what this task took: it gets all its addresses or none.
      for (const a of out) if (!t.networks.includes(a)) for (const addr of a.addresses) nets.get(a.networkId)?.used.delete(addressOf(addr)!);
      plan.waiting.set(t.id, missing);
    } else plan.attachments.set(t.id, out);
  }
  return plan;
}
