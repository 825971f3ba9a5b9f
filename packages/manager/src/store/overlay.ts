import { SwarmError, ErrorCode, alreadyExists, invalidArgument, notFound } from '@swarmd/common/errors';
import { type StoreAction, StoreAction_Kind } from '@swarmd/proto';
import { type AnyObject, type Kind, UNIQUE_NAMES, immutableCopy, nameOf, unwrapObject, wrapObject } from './kinds.js';
import { type IndexLookup, matchesLookup } from './selectors.js';
import type { Tables } from './tables.js';

export type ChangeOp = 'create' | 'update' | 'remove';

/** One object's pending change in a transaction (at most one per object). */
export interface Change {
  kind: Kind;
  id: string;
  op: ChangeOp;
  /** create/update: the new object; remove: the object being removed. Frozen. */
  object: Readonly<AnyObject>;
  /** update/remove: the version the writer read (checked again when the entry is applied). */
  readVersion: number;
}

const keyOf = (kind: Kind, id: string): string => `${kind}/${id}`;
const versionOf = (o: Readonly<AnyObject> | undefined): number => o?.meta?.version ?? 0;

/**
 * Changes staged over the tables, with reads that see them. The same rules check a transaction
 * twice: on the leader while the callback runs (fail fast, in the caller's stack), and again when
 * the committed entry is applied on every member (the decision that counts, since other entries
 * may have been applied in between).
 */
/** What a rollback undoes: each change's key and what it held before (undefined: nothing). */
export type Checkpoint = [string, Change | undefined][];

export class Overlay {
  private readonly changes = new Map<string, Change>();
  /** While a checkpoint is open: the undo journal of every change since (see checkpoint()). */
  private undo: Checkpoint | undefined;

  constructor(private readonly base: Tables) {}

  get size(): number {
    return this.changes.size;
  }

  list(): Change[] {
    return [...this.changes.values()];
  }

  get(kind: Kind, id: string): Readonly<AnyObject> | undefined {
    const c = this.changes.get(keyOf(kind, id));
    if (c) return c.op === 'remove' ? undefined : c.object;
    return this.base.get(kind, id);
  }

  find(kind: Kind, lookup: IndexLookup): Readonly<AnyObject>[] {
    const base = this.base.find(kind, lookup);
    if (this.changes.size === 0) return base;
    const out = base.filter((o) => !this.changes.has(keyOf(kind, o.id)));
    for (const c of this.changes.values()) {
      if (c.kind === kind && c.op !== 'remove' && matchesLookup(kind, lookup, c.object)) out.push(c.object);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Opens a checkpoint: changes from here on are journaled, so that rollback(cp) restores the
   * state of now. O(1), and O(changes since) to roll back (a batch of 200 writes used to copy the
   * whole staged map before each of its writes). One at a time: release() closes it.
   */
  checkpoint(): Checkpoint {
    this.undo = [];
    return this.undo;
  }

  rollback(cp: Checkpoint): void {
    for (let i = cp.length - 1; i >= 0; i--) {
      const [key, prior] = cp[i];
      if (prior) this.changes.set(key, prior);
      else this.changes.delete(key);
    }
    cp.length = 0;
  }

  /** Closes the checkpoint (its changes stay). */
  release(cp: Checkpoint): void {
    if (this.undo === cp) this.undo = undefined;
  }

  private setChange(key: string, c: Change): void {
    this.undo?.push([key, this.changes.get(key)]);
    this.changes.set(key, c);
  }

  private deleteChange(key: string): void {
    this.undo?.push([key, this.changes.get(key)]);
    this.changes.delete(key);
  }

  // --- writes as a transaction callback makes them -------------------------------------------

  create(kind: Kind, o: Readonly<AnyObject>): void {
    requireId(kind, o);
    const key = keyOf(kind, o.id);
    const prior = this.changes.get(key);
    if (prior?.op === 'remove') throw invalidArgument(`store: ${kind} ${o.id} was deleted in this transaction; it cannot be created again in the same one`);
    if (this.get(kind, o.id)) throw alreadyExists(`${kind} ${o.id} already exists`);
    const object = immutableCopy(o);
    this.checkUniqueName(kind, object);
    this.setChange(key, { kind, id: o.id, op: 'create', object, readVersion: 0 });
  }

  update(kind: Kind, o: Readonly<AnyObject>): void {
    requireId(kind, o);
    const key = keyOf(kind, o.id);
    const cur = this.get(kind, o.id);
    if (!cur) throw notFound(`${kind} ${o.id} not found`);
    const prior = this.changes.get(key);
    const readVersion = prior ? prior.readVersion : versionOf(cur);
    if (prior?.op !== 'create' && versionOf(o) !== readVersion) throw conflict(kind, o.id, versionOf(o), readVersion);
    const object = immutableCopy(o);
    this.checkUniqueName(kind, object);
    this.setChange(key, { kind, id: o.id, op: prior?.op === 'create' ? 'create' : 'update', object, readVersion });
  }

  remove(kind: Kind, id: string): void {
    const key = keyOf(kind, id);
    const cur = this.get(kind, id);
    if (!cur) throw notFound(`${kind} ${id} not found`);
    const prior = this.changes.get(key);
    if (prior?.op === 'create') {
      this.deleteChange(key);
      return;
    }
    const base = this.base.get(kind, id)!;
    this.setChange(key, { kind, id, op: 'remove', object: base, readVersion: prior ? prior.readVersion : versionOf(base) });
  }

  /** Refuses a name another object of a unique-name kind holds (as the overlay sees them). */
  checkUniqueName(kind: Kind, o: Readonly<AnyObject>): void {
    if (!UNIQUE_NAMES.has(kind)) return;
    const name = nameOf(kind, o);
    if (name === '') return;
    const holder = this.find(kind, { kind: 'exact', index: 'name', key: name.toLowerCase() }).find((h) => h.id !== o.id);
    if (holder) throw alreadyExists(`${kind} name "${name}" is already in use by ${kind} ${holder.id}`);
  }

  /** The staged changes as the actions of a StoreTransaction. */
  toActions(): StoreAction[] {
    return this.list().map((c) => {
      let target = c.object;
      if (c.op !== 'create') {
        // The version the writer read travels with the action; apply checks it. A shallow copy is
        // enough: the action is only encoded (the staged object stays frozen and unshared).
        target = { ...c.object, meta: { createdAt: 0, updatedAt: 0, ...c.object.meta, version: c.readVersion } };
      }
      return { kind: OP_TO_ACTION[c.op], target: wrapObject(c.kind, target) };
    });
  }

  // --- the same transaction, as an applied entry ------------------------------------------------

  /**
   * Stages a committed entry's actions against the current tables, applying the rules strictly:
   * a create of an existing id, an update or removal of a missing object, a stale version, or a
   * name clash in the resulting state rejects the whole transaction.
   */
  static fromActions(base: Tables, actions: readonly StoreAction[]): Overlay {
    const ov = new Overlay(base);
    for (const a of actions) {
      const { kind, object } = unwrapObject(a.target);
      requireId(kind, object);
      const key = keyOf(kind, object.id);
      if (ov.changes.has(key)) throw invalidArgument(`store: ${kind} ${object.id} appears twice in one transaction`);
      const cur = base.get(kind, object.id);
      switch (a.kind) {
        case StoreAction_Kind.CREATE:
          if (cur) throw alreadyExists(`${kind} ${object.id} already exists`);
          ov.changes.set(key, { kind, id: object.id, op: 'create', object, readVersion: 0 });
          break;
        case StoreAction_Kind.UPDATE:
          if (!cur) throw notFound(`${kind} ${object.id} not found`);
          if (versionOf(object) !== versionOf(cur)) throw conflict(kind, object.id, versionOf(object), versionOf(cur));
          ov.changes.set(key, { kind, id: object.id, op: 'update', object, readVersion: versionOf(cur) });
          break;
        case StoreAction_Kind.REMOVE:
          if (!cur) throw notFound(`${kind} ${object.id} not found`);
          ov.changes.set(key, { kind, id: object.id, op: 'remove', object: cur, readVersion: versionOf(cur) });
          break;
        default:
          throw invalidArgument(`store: unknown action kind ${String(a.kind)}`);
      }
    }
    // Names are checked on the resulting state, so the order of actions does not matter
    // (e.g. renaming a out of "x" and creating b as "x" in one transaction).
    for (const c of ov.changes.values()) if (c.op !== 'remove') ov.checkUniqueName(c.kind, c.object);
    return ov;
  }
}

const OP_TO_ACTION: Record<ChangeOp, StoreAction_Kind> = {
  create: StoreAction_Kind.CREATE,
  update: StoreAction_Kind.UPDATE,
  remove: StoreAction_Kind.REMOVE,
};

function requireId(kind: Kind, o: Readonly<AnyObject>): void {
  if (typeof o.id !== 'string' || o.id === '') throw invalidArgument(`store: a ${kind} needs an id`);
}

function conflict(kind: Kind, id: string, have: number, current: number): SwarmError {
  return new SwarmError(ErrorCode.CONFLICT, `${kind} ${id}: update out of sequence (read version ${have}, current ${current}); re-read and retry`, {
    details: { kind, id, readVersion: have, currentVersion: current },
  });
}
