import { Cluster, Config, Network, Node, Secret, Service, StoreObject, Task } from '@swarmd/proto';
import { invalidArgument } from '@swarmd/common/errors';

/** The tables of the store; the names are StoreObject's oneof cases. */
export const KINDS = ['node', 'service', 'task', 'network', 'cluster', 'secret', 'config'] as const;
export type Kind = (typeof KINDS)[number];

export interface ObjectMap {
  node: Node;
  service: Service;
  task: Task;
  network: Network;
  cluster: Cluster;
  secret: Secret;
  config: Config;
}
export type ObjectOf<K extends Kind> = ObjectMap[K];
export type AnyObject = ObjectMap[Kind];

/** The generated codec of a message type (ts-proto's `const Node = { encode, decode, ... }`). */
interface Codec<T> {
  encode(m: T): { finish(): Uint8Array };
  decode(b: Uint8Array): T;
}

const CODECS: { [K in Kind]: Codec<ObjectMap[K]> } = {
  node: Node,
  service: Service,
  task: Task,
  network: Network,
  cluster: Cluster,
  secret: Secret,
  config: Config,
};

export function isKind(k: string): k is Kind {
  return (KINDS as readonly string[]).includes(k);
}

/** A deep, mutable copy (through the proto codec, so bytes stay Buffers and nothing is shared). */
export function cloneObject<K extends Kind>(kind: K, o: Readonly<ObjectOf<K>>): ObjectOf<K> {
  const c = CODECS[kind] as Codec<ObjectOf<K>>;
  return c.decode(c.encode(o as ObjectOf<K>).finish());
}

/** A full object from a partial one: every top-level field not given is at its proto default. */
export function makeObject<K extends Kind>(kind: K, partial: Partial<ObjectOf<K>>): ObjectOf<K> {
  return Object.assign((CODECS[kind] as Codec<ObjectOf<K>>).decode(new Uint8Array(0)), partial);
}

export function wrapObject<K extends Kind>(kind: K, o: Readonly<ObjectOf<K>>): StoreObject {
  // The oneof case and the field share the kind's name.
  return { object: { $case: kind, [kind]: o } as unknown as StoreObject['object'] };
}

export function unwrapObject(so: StoreObject | undefined): { kind: Kind; object: AnyObject } {
  const o = so?.object;
  if (!o) throw invalidArgument('store action without an object (unknown kind?)');
  switch (o.$case) {
    case 'node':
      return { kind: 'node', object: o.node };
    case 'service':
      return { kind: 'service', object: o.service };
    case 'task':
      return { kind: 'task', object: o.task };
    case 'network':
      return { kind: 'network', object: o.network };
    case 'cluster':
      return { kind: 'cluster', object: o.cluster };
    case 'secret':
      return { kind: 'secret', object: o.secret };
    case 'config':
      return { kind: 'config', object: o.config };
  }
}

/**
 * An immutable copy that shares what is immutable already: a frozen object (the store's objects
 * are deep-frozen) is taken as it is, everything else is copied and frozen, bytes copied. A
 * write that changes a field or two of a store object so copies those, not the whole object
 * (the codec round trip of cloneObject copied and froze all of it).
 */
export function immutableCopy<T>(v: T): Readonly<T> {
  if (v === null || typeof v !== 'object') return v;
  if (ArrayBuffer.isView(v)) return (Buffer.isBuffer(v) ? Buffer.from(v) : new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength))) as T;
  if (Object.isFrozen(v)) return v;
  if (Array.isArray(v)) return Object.freeze(v.map(immutableCopy)) as T;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as object)) out[k] = immutableCopy(x);
  return Object.freeze(out) as T;
}

/** Freezes a decoded proto object in depth. Byte fields (Buffers) cannot be frozen and are left as they are. */
export function deepFreeze<T>(o: T): Readonly<T> {
  if (o === null || typeof o !== 'object' || ArrayBuffer.isView(o) || Object.isFrozen(o)) return o;
  for (const v of Object.values(o as object)) deepFreeze(v);
  return Object.freeze(o);
}

/** The name an object is known by (the name index). Nodes: spec name, else hostname. */
export function nameOf(kind: Kind, o: Readonly<AnyObject>): string {
  switch (kind) {
    case 'node': {
      const n = o as Node;
      return n.spec?.annotations?.name || n.description?.hostname || '';
    }
    case 'service':
      return (o as Service).spec?.annotations?.name ?? '';
    case 'task':
      return (o as Task).annotations?.name ?? '';
    case 'network':
      return (o as Network).spec?.annotations?.name ?? '';
    case 'cluster':
      return (o as Cluster).spec?.annotations?.name ?? '';
    case 'secret':
      return (o as Secret).spec?.annotations?.name ?? '';
    case 'config':
      return (o as Config).spec?.annotations?.name ?? '';
  }
}

/** Kinds whose names are unique (case-insensitively, as in SwarmKit). Node hostnames and task names are not. */
export const UNIQUE_NAMES: ReadonlySet<Kind> = new Set<Kind>(['service', 'network', 'cluster', 'secret', 'config']);
