import { type AnyObject, type Kind, KINDS } from './kinds.js';
import { type IndexLookup, type IndexName, indexesOf, indexKey } from './selectors.js';

/**
 * One table: frozen objects by id plus secondary indexes (index → key → ids). Each id set keeps
 * its sorted array once asked for, until its membership changes: an update that keeps an
 * object's index keys (a task's status, the common write) leaves the sorted ids as they are, so
 * a controller reading a 20,000-task service on every tick does not sort 20,000 ids each time.
 */
class IdSet {
  readonly ids = new Set<string>();
  private sortedIds: string[] | undefined;

  add(id: string): void {
    if (this.ids.has(id)) return;
    this.ids.add(id);
    this.sortedIds = undefined;
  }

  delete(id: string): void {
    if (this.ids.delete(id)) this.sortedIds = undefined;
  }

  sorted(): readonly string[] {
    return (this.sortedIds ??= [...this.ids].sort());
  }
}

class Table {
  readonly objects = new Map<string, Readonly<AnyObject>>();
  private readonly all = new IdSet();
  private readonly indexes = new Map<IndexName, Map<string, IdSet>>();

  constructor(private readonly kind: Kind) {
    for (const ix of indexesOf(kind)) this.indexes.set(ix, new Map());
  }

  put(o: Readonly<AnyObject>): void {
    const old = this.objects.get(o.id);
    this.objects.set(o.id, o);
    this.all.add(o.id);
    for (const [ix, m] of this.indexes) {
      const key = indexKey(this.kind, ix, o);
      if (old) {
        const was = indexKey(this.kind, ix, old);
        if (was === key) continue;
        if (was !== undefined) this.unindexKey(m, was, o.id);
      }
      if (key === undefined) continue;
      let ids = m.get(key);
      if (!ids) m.set(key, (ids = new IdSet()));
      ids.add(o.id);
    }
  }

  remove(id: string): void {
    const old = this.objects.get(id);
    if (!old) return;
    for (const [ix, m] of this.indexes) {
      const key = indexKey(this.kind, ix, old);
      if (key !== undefined) this.unindexKey(m, key, id);
    }
    this.objects.delete(id);
    this.all.delete(id);
  }

  private unindexKey(m: Map<string, IdSet>, key: string, id: string): void {
    const ids = m.get(key);
    ids?.delete(id);
    if (ids?.ids.size === 0) m.delete(key);
  }

  /** Objects answering a lookup, ordered by id (reads are deterministic). */
  find(lookup: IndexLookup): Readonly<AnyObject>[] {
    let ids: readonly string[];
    if (lookup.kind === 'all') ids = this.all.sorted();
    else if (lookup.kind === 'exact') ids = this.indexes.get(lookup.index)?.get(lookup.key)?.sorted() ?? [];
    else {
      const out: string[] = [];
      for (const [key, set] of this.indexes.get(lookup.index) ?? []) if (key.startsWith(lookup.prefix)) out.push(...set.ids);
      ids = out.sort();
    }
    return ids.map((id) => this.objects.get(id)!);
  }
}

/** All tables of the store. Only the store's apply path writes them. */
export class Tables {
  private readonly tables = new Map<Kind, Table>(KINDS.map((k) => [k, new Table(k)]));

  private table(kind: Kind): Table {
    return this.tables.get(kind)!;
  }

  get(kind: Kind, id: string): Readonly<AnyObject> | undefined {
    return this.table(kind).objects.get(id);
  }

  find(kind: Kind, lookup: IndexLookup): Readonly<AnyObject>[] {
    return this.table(kind).find(lookup);
  }

  put(kind: Kind, o: Readonly<AnyObject>): void {
    this.table(kind).put(o);
  }

  remove(kind: Kind, id: string): void {
    this.table(kind).remove(id);
  }

  /** Every object of a kind, ordered by id. */
  all(kind: Kind): Readonly<AnyObject>[] {
    return this.find(kind, { kind: 'all' });
  }

  clear(): void {
    for (const k of KINDS) this.tables.set(k, new Table(k));
  }

  size(kind: Kind): number {
    return this.table(kind).objects.size;
  }
}
