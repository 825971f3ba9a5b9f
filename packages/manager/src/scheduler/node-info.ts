import { hash32 } from '../controller-kit/heap.js';
import { type Node, type Task, TaskState, NodeState, NodeAvailability, PortConfig_PublishMode } from '@swarmd/proto';

export interface ResourceAmounts {
  nanoCpus: number;
  memoryBytes: number;
}

/** What the scheduler knows of one node: the node, and what its tasks use and count. */
export interface NodeInfo {
  readonly id: string;
  /** hash32(id), computed once (seeded tie-breaks mix it with the service's seed). */
  readonly idHash: number;
  node: Readonly<Node>;
  /** Active tasks (desired ≤ RUNNING, observed ≤ RUNNING) of each service on the node. */
  readonly byService: Map<string, number>;
  /** Active tasks on the node, all services. */
  activeTasks: number;
  /** Reservations of the tasks holding resources here (observed ≤ RUNNING). */
  readonly reserved: ResourceAmounts;
  /** Host-mode published ports in use ("tcp/8080" → tasks using it). */
  readonly hostPorts: Map<string, number>;
}

/** The resources a node offers minus what its tasks reserve. */
export function availableResources(n: NodeInfo): ResourceAmounts {
  const r = n.node.description?.resources;
  return { nanoCpus: (r?.nanoCpus ?? 0) - n.reserved.nanoCpus, memoryBytes: (r?.memoryBytes ?? 0) - n.reserved.memoryBytes };
}

export function isNodeSchedulable(n: Readonly<Node>): boolean {
  return n.status?.state === NodeState.NODE_STATE_READY && (n.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE) === NodeAvailability.NODE_AVAILABILITY_ACTIVE;
}

/** The host-mode published ports a task needs ("tcp/8080"). */
export function hostPortsOf(t: Readonly<Task>): string[] {
  const ports = t.endpoint?.spec?.ports ?? [];
  const out: string[] = [];
  for (const p of ports) if (p.publishMode === PortConfig_PublishMode.HOST && p.publishedPort > 0) out.push(`${p.protocol}/${p.publishedPort}`);
  return out;
}

interface Contribution {
  nodeId: string;
  serviceId: string;
  active: boolean;
  nanoCpus: number;
  memoryBytes: number;
  ports: string[];
}

function contributionOf(t: Readonly<Task>): Contribution | undefined {
  const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
  // A pre-assigned task (global services) not placed yet is still being decided: it must not
  // count against its own node (its host ports and reservations would refuse it). The scheduler
  // records it with assignTask when it places it.
  if (!t.nodeId || state < TaskState.TASK_STATE_ASSIGNED || state > TaskState.TASK_STATE_RUNNING) return undefined;
  const res = t.spec?.resources?.reservations;
  return {
    nodeId: t.nodeId,
    serviceId: t.serviceId,
    active: t.desiredState <= TaskState.TASK_STATE_RUNNING,
    nanoCpus: res?.nanoCpus ?? 0,
    memoryBytes: res?.memoryBytes ?? 0,
    ports: hostPortsOf(t),
  };
}

function sameContribution(a: Contribution, b: Contribution): boolean {
  return (
    a.nodeId === b.nodeId &&
    a.serviceId === b.serviceId &&
    a.active === b.active &&
    a.nanoCpus === b.nanoCpus &&
    a.memoryBytes === b.memoryBytes &&
    a.ports.length === b.ports.length &&
    a.ports.every((p, i) => p === b.ports[i])
  );
}

/**
 * Every node's NodeInfo, kept up to date task by task. A task's contribution is keyed by its id,
 * so applying the same task twice (the scheduler's own write coming back as an event) is
 * harmless.
 */
export class NodeSet {
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly contributions = new Map<string, Contribution>();
  /** Task ids contributing to each node id (also for nodes not known yet). */
  private readonly byNode = new Map<string, Set<string>>();

  get size(): number {
    return this.nodes.size;
  }

  get(id: string): NodeInfo | undefined {
    return this.nodes.get(id);
  }

  private sorted: NodeInfo[] | undefined;

  /** Nodes ordered by id (deterministic). Do not modify the array. */
  all(): readonly NodeInfo[] {
    this.sorted ??= [...this.nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return this.sorted;
  }

  upsertNode(n: Readonly<Node>): NodeInfo {
    const cur = this.nodes.get(n.id);
    if (cur) {
      cur.node = n;
      return cur;
    }
    const info: NodeInfo = { id: n.id, idHash: hash32(n.id), node: n, byService: new Map(), activeTasks: 0, reserved: { nanoCpus: 0, memoryBytes: 0 }, hostPorts: new Map() };
    this.nodes.set(n.id, info);
    this.sorted = undefined;
    // Tasks seen before their node.
    for (const id of this.byNode.get(n.id) ?? []) this.add(info, this.contributions.get(id)!, 1);
    return info;
  }

  removeNode(id: string): void {
    if (this.nodes.delete(id)) this.sorted = undefined;
  }

  /** Records a task as it is now (created, updated, or assigned by the scheduler itself). */
  applyTask(t: Readonly<Task>): void {
    const c = contributionOf(t);
    const old = this.contributions.get(t.id);
    // Most often the scheduler's own placement coming back: nothing to change.
    if (c && old && sameContribution(old, c)) return;
    this.removeTask(t.id);
    if (c) this.record(t.id, c);
  }

  /** Records that the scheduler put `t` on `nodeId` (before the store says so). */
  assignTask(t: Readonly<Task>, nodeId: string): void {
    this.removeTask(t.id);
    const res = t.spec?.resources?.reservations;
    const c: Contribution = {
      nodeId,
      serviceId: t.serviceId,
      active: true,
      nanoCpus: res?.nanoCpus ?? 0,
      memoryBytes: res?.memoryBytes ?? 0,
      ports: hostPortsOf(t),
    };
    this.record(t.id, c);
  }

  private record(id: string, c: Contribution): void {
    this.contributions.set(id, c);
    let ids = this.byNode.get(c.nodeId);
    if (!ids) this.byNode.set(c.nodeId, (ids = new Set()));
    ids.add(id);
    const info = this.nodes.get(c.nodeId);
    if (info) this.add(info, c, 1);
  }

  removeTask(id: string): void {
    const old = this.contributions.get(id);
    if (!old) return;
    this.contributions.delete(id);
    const ids = this.byNode.get(old.nodeId);
    ids?.delete(id);
    if (ids?.size === 0) this.byNode.delete(old.nodeId);
    const info = this.nodes.get(old.nodeId);
    if (info) this.add(info, old, -1);
  }

  private add(info: NodeInfo, c: Contribution, sign: 1 | -1): void {
    info.reserved.nanoCpus += sign * c.nanoCpus;
    info.reserved.memoryBytes += sign * c.memoryBytes;
    for (const p of c.ports) {
      const v = (info.hostPorts.get(p) ?? 0) + sign;
      if (v > 0) info.hostPorts.set(p, v);
      else info.hostPorts.delete(p);
    }
    if (c.active) {
      info.activeTasks += sign;
      const v = (info.byService.get(c.serviceId) ?? 0) + sign;
      if (v > 0) info.byService.set(c.serviceId, v);
      else info.byService.delete(c.serviceId);
    }
  }
}
