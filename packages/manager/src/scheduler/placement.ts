import type { Task } from '@swarmd/proto';
import { Heap, hash32, mix32 } from '../controller-kit/heap.js';
import type { NodeInfo, NodeSet } from './node-info.js';
import { Pipeline } from './pipeline.js';

export interface Placement {
  taskId: string;
  nodeId: string;
}

export interface GroupResult {
  placed: Placement[];
  /** Tasks that fit nowhere, in the order given. */
  unplaced: string[];
  /** Why (for task.status.err), when something is unplaced. */
  explanation?: string;
}

interface Entry {
  info: NodeInfo;
  svc: number;
  total: number;
  rank: number;
}

const entryLess = (x: Entry, y: Entry): boolean =>
  x.svc !== y.svc ? x.svc < y.svc : x.total !== y.total ? x.total < y.total : x.rank !== y.rank ? x.rank < y.rank : x.info.id < y.info.id;

/** A branch of the placement-preference tree (SwarmKit's decision tree); leaves hold a node heap. */
interface Branch {
  key: string;
  rank: number;
  /** Active tasks of the service in this subtree. */
  count: number;
  exhausted: boolean;
  parent: Branch | undefined;
  children: Branch[] | undefined;
  index: Map<string, Branch> | undefined;
  heap: Heap<Entry> | undefined;
}

function newBranch(key: string, rank: number, parent: Branch | undefined, leaf: boolean): Branch {
  return {
    key,
    rank,
    count: 0,
    exhausted: false,
    parent,
    children: leaf ? undefined : [],
    index: leaf ? undefined : new Map(),
    heap: leaf ? new Heap(entryLess) : undefined,
  };
}

/** The label a spread descriptor names (`node.labels.zone` → `zone`), or undefined. */
export function spreadLabel(descriptor: string): string | undefined {
  const m = /^node\.labels\.(.+)$/i.exec(descriptor);
  return m ? m[1] : undefined;
}

/**
 * Places a group of identical tasks (same service, same spec) on the nodes of `nodeSet`, and
 * records each placement in it. Pure and deterministic: the same inputs give the same output.
 *
 * 1. The pipeline filters the nodes once for the group.
 * 2. The feasible nodes form a tree by placement preferences (`spread=node.labels.zone`: one
 *    level per preference, a branch per label value, nodes without the label in a "" branch).
 * 3. Each task goes down the tree to the branch with the fewest tasks of the service (ties: a
 *    rank seeded from the service id and the branch), then to the leaf's best node: fewest tasks
 *    of the service, then fewest tasks overall, then a seeded rank (SwarmKit's nodeLess, with a
 *    deterministic tie-break). A node that no longer fits (resources, max replicas, host ports)
 *    leaves the heap; a leaf with no node left is exhausted and its siblings take the rest.
 *
 * O(nodes) per group + O(log nodes) per task (plus the preference levels' branches).
 */
export function placeTaskGroup(tasks: readonly Readonly<Task>[], nodeSet: NodeSet, pipeline: Pipeline = new Pipeline()): GroupResult {
  const out: GroupResult = { placed: [], unplaced: [] };
  if (tasks.length === 0) return out;
  const t0 = tasks[0];
  const serviceId = t0.serviceId;
  const seed = hash32(serviceId);
  const labels = (t0.spec?.placement?.preferences ?? []).map((p) => spreadLabel(p.spreadDescriptor)).filter((l): l is string => l !== undefined);

  pipeline.setTask(t0);
  const root = newBranch('', 0, undefined, labels.length === 0);
  const leaves = new Map<Branch, Entry[]>();
  for (const info of nodeSet.all()) {
    if (!pipeline.process(info)) continue;
    const svc = info.byService.get(serviceId) ?? 0;
    let b = root;
    b.count += svc;
    for (let level = 0; level < labels.length; level++) {
      const v = info.node.spec?.annotations?.labels?.[labels[level]] ?? '';
      let c = b.index!.get(v);
      if (!c) {
        c = newBranch(v, hash32(v, seed), b, level === labels.length - 1);
        b.index!.set(v, c);
        b.children!.push(c);
      }
      b = c;
      b.count += svc;
    }
    let l = leaves.get(b);
    if (!l) leaves.set(b, (l = []));
    l.push({ info, svc, total: info.activeTasks, rank: mix32(info.idHash ^ seed) });
  }
  for (const [b, entries] of leaves) b.heap!.pushAll(entries);

  const pick = (b: Branch): Branch | undefined => {
    let best: Branch | undefined;
    for (const c of b.children!) {
      if (c.exhausted) continue;
      if (!best || c.count < best.count || (c.count === best.count && (c.rank < best.rank || (c.rank === best.rank && c.key < best.key)))) best = c;
    }
    return best;
  };
  const exhaust = (b: Branch): void => {
    for (let x: Branch | undefined = b; x; x = x.parent) {
      x.exhausted = x.children === undefined || x.children.every((c) => c.exhausted);
      if (!x.exhausted) break;
    }
  };

  let i = 0;
  for (; i < tasks.length; i++) {
    const t = tasks[i];
    let placed = false;
    while (!root.exhausted && !placed) {
      let b = root;
      while (b.children) {
        const c = pick(b);
        if (!c) {
          exhaust(b);
          break;
        }
        b = c;
      }
      if (!b.heap) continue;
      let e: Entry | undefined;
      while ((e = b.heap.pop()) !== undefined) {
        if (pipeline.stillFits(e.info)) break;
      }
      if (!e) {
        exhaust(b);
        continue;
      }
      nodeSet.assignTask(t, e.info.id);
      out.placed.push({ taskId: t.id, nodeId: e.info.id });
      for (let x: Branch | undefined = b; x; x = x.parent) x.count++;
      e.svc = e.info.byService.get(serviceId) ?? e.svc + 1;
      e.total = e.info.activeTasks;
      b.heap.push(e);
      placed = true;
    }
    if (!placed) break;
  }
  if (i < tasks.length) {
    for (; i < tasks.length; i++) out.unplaced.push(tasks[i].id);
    out.explanation = explainTask(t0, nodeSet, pipeline);
  }
  return out;
}

/** Why no node of the set can take the task now ("no suitable node (...)"). */
export function explainTask(t: Readonly<Task>, nodeSet: NodeSet, pipeline: Pipeline = new Pipeline()): string {
  pipeline.setTask(t);
  for (const info of nodeSet.all()) pipeline.process(info);
  return pipeline.explain();
}

/** A task whose node is already chosen (global services): undefined if it fits there, else why not. */
export function checkPreassigned(t: Readonly<Task>, nodeSet: NodeSet, pipeline: Pipeline = new Pipeline()): string | undefined {
  const info = nodeSet.get(t.nodeId);
  if (!info) return `node ${t.nodeId} not found`;
  pipeline.setTask(t);
  if (pipeline.process(info)) return undefined;
  return pipeline.explain();
}
