import type { Kind, ObjectOf } from './kinds.js';

export type ObjectEventType = 'create' | 'update' | 'delete';

/** A change of one object, published after its transaction was applied. */
export type ObjectEvent = {
  [K in Kind]: {
    type: ObjectEventType;
    kind: K;
    /** The object after the change (for a delete: as it was when deleted). */
    object: Readonly<ObjectOf<K>>;
    /** For an update: the object before it. */
    old?: Readonly<ObjectOf<K>>;
    /** The log index of the transaction. */
    version: number;
    /** When the leader made the transaction (unix ms, from the log entry: the same on every manager). */
    timestamp?: number;
  };
}[Kind];

/** Published once after all events of a transaction. */
export interface CommitEvent {
  type: 'commit';
  version: number;
}

export type StoreEvent = ObjectEvent | CommitEvent;

export type EventMatcher = (e: StoreEvent) => boolean;

/** Object events of a kind, optionally of some types only. */
export function onKind(kind: Kind, ...types: ObjectEventType[]): EventMatcher {
  return (e) => e.type !== 'commit' && e.kind === kind && (types.length === 0 || types.includes(e.type));
}

/** Object events of one object. */
export function onObject(kind: Kind, id: string): EventMatcher {
  return (e) => e.type !== 'commit' && e.kind === kind && e.object.id === id;
}

/** Commit events (one per applied transaction). */
export const onCommit: EventMatcher = (e) => e.type === 'commit';

/** Matches when any matcher does; no matchers match everything. */
export function anyOf(matchers: readonly EventMatcher[]): EventMatcher | undefined {
  if (matchers.length === 0) return undefined;
  return (e) => matchers.some((m) => m(e));
}
