import type { Node, Task, NodeRole, TaskState } from '@swarmd/proto';
import { invalidArgument } from '@swarmd/common/errors';
import { type AnyObject, type Kind, nameOf } from './kinds.js';

/** Ways to find objects; each one is backed by an index. Names compare case-insensitively. */
export type BySelector =
  | { all: true }
  | { name: string }
  | { namePrefix: string }
  | { serviceId: string }
  | { nodeId: string }
  | { desiredState: TaskState }
  | { serviceId: string; slot: number }
  | { role: NodeRole };

type Sel<T extends BySelector> = T;
/** The selectors each kind supports (a wrong one is a type error, and INVALID_ARGUMENT at run time). */
export interface SelectorMap {
  node: Sel<{ all: true } | { name: string } | { namePrefix: string } | { role: NodeRole }>;
  service: Sel<{ all: true } | { name: string } | { namePrefix: string }>;
  task: Sel<
    | { all: true }
    | { name: string }
    | { namePrefix: string }
    | { serviceId: string }
    | { nodeId: string }
    | { desiredState: TaskState }
    | { serviceId: string; slot: number }
  >;
  network: Sel<{ all: true } | { name: string } | { namePrefix: string }>;
  cluster: Sel<{ all: true } | { name: string } | { namePrefix: string }>;
  secret: Sel<{ all: true } | { name: string } | { namePrefix: string }>;
  config: Sel<{ all: true } | { name: string } | { namePrefix: string }>;
}
export type SelectorOf<K extends Kind> = SelectorMap[K];

/** Index name → keys of one object under that index. */
export type IndexName = 'name' | 'serviceId' | 'nodeId' | 'desiredState' | 'slot' | 'role';

const INDEXES: { [K in Kind]: readonly IndexName[] } = {
  node: ['name', 'role'],
  service: ['name'],
  task: ['name', 'serviceId', 'nodeId', 'desiredState', 'slot'],
  network: ['name'],
  cluster: ['name'],
  secret: ['name'],
  config: ['name'],
};

export function indexesOf(kind: Kind): readonly IndexName[] {
  return INDEXES[kind];
}

/** The key of an object under an index, or undefined when the object is not in that index. */
export function indexKey(kind: Kind, index: IndexName, o: Readonly<AnyObject>): string | undefined {
  switch (index) {
    case 'name': {
      const n = nameOf(kind, o);
      return n === '' ? undefined : n.toLowerCase();
    }
    case 'serviceId':
      return (o as Task).serviceId || undefined;
    case 'nodeId':
      return (o as Task).nodeId || undefined;
    case 'desiredState':
      return String((o as Task).desiredState);
    case 'slot': {
      const t = o as Task;
      return t.serviceId ? `${t.serviceId}/${t.slot}` : undefined;
    }
    case 'role':
      return String((o as Node).role);
  }
}

export type IndexLookup = { kind: 'all' } | { kind: 'exact'; index: IndexName; key: string } | { kind: 'prefix'; index: 'name'; prefix: string };

/** Which index answers a selector for a kind; INVALID_ARGUMENT when the kind has no such index. */
export function planLookup(kind: Kind, by: BySelector): IndexLookup {
  const need = (index: IndexName): void => {
    if (!INDEXES[kind].includes(index)) throw invalidArgument(`store: ${kind} cannot be found by ${index}`);
  };
  if ('all' in by) return { kind: 'all' };
  if ('namePrefix' in by) {
    need('name');
    return { kind: 'prefix', index: 'name', prefix: by.namePrefix.toLowerCase() };
  }
  if ('name' in by) {
    need('name');
    return { kind: 'exact', index: 'name', key: by.name.toLowerCase() };
  }
  if ('slot' in by) {
    need('slot');
    return { kind: 'exact', index: 'slot', key: `${by.serviceId}/${by.slot}` };
  }
  if ('serviceId' in by) {
    need('serviceId');
    return { kind: 'exact', index: 'serviceId', key: by.serviceId };
  }
  if ('nodeId' in by) {
    need('nodeId');
    return { kind: 'exact', index: 'nodeId', key: by.nodeId };
  }
  if ('desiredState' in by) {
    need('desiredState');
    return { kind: 'exact', index: 'desiredState', key: String(by.desiredState) };
  }
  if ('role' in by) {
    need('role');
    return { kind: 'exact', index: 'role', key: String(by.role) };
  }
  throw invalidArgument(`store: unknown selector ${JSON.stringify(by)}`);
}

/** Whether an object answers a lookup (used to merge a transaction's own writes into reads). */
export function matchesLookup(kind: Kind, lookup: IndexLookup, o: Readonly<AnyObject>): boolean {
  if (lookup.kind === 'all') return true;
  const k = indexKey(kind, lookup.index, o);
  if (k === undefined) return false;
  return lookup.kind === 'exact' ? k === lookup.key : k.startsWith(lookup.prefix);
}
