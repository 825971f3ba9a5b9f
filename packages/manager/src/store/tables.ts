import { type AnyObject, type Kind, KINDS } from './kinds.js';
import { type IndexLookup, type IndexName, indexesOf, indexKey } from './selectors.js';

/** One table: frozen objects by id plus secondary indexes (index → key → ids). */
class Table {
  readonly objects = new Map<string, Readonly<AnyObject>>();
  private readonly indexes = new Map<IndexName, Map<string, Set<string>>>();

  constructor(private readonly kind: Kind) {
    for (const ix of indexesOf(kind)) this.indexes.set(ix, new Map());
  }

  put(o: Readonly<AnyObject>): void {
    const old = this.objects.get(o.id);
    if (old) this.unindex(old);
    this.objects.set(o.id, o);
    for (const [ix, m] of this.indexes) {
      const key = indexKey(this.kind, ix, o);
      if (key === undefined) continue;
      let ids = m.get(key);
      if (!ids) m.set(key, (ids = new Set()));
      ids.add(o.id);
    }
  }

  remove(id: string): void {
    const old = this.objects.get(id);
    if (!old) return;
    this.unindex(old);
    this.objects.delete(id);
  }

  private unindex(o: Readonly<AnyObject>): void {
    for (const [ix, m] of this.indexes) {
      const key = indexKey(this.kind, ix, o);
      if (key === undefined) continue;
      const ids = m.get(key);
      ids?.delete(o.id);
      if (ids?.size === 0) m.delete(key);
    }
  }

  /** Objects answering a lookup, ordered by id (reads are deterministic). */
  find(lookup: IndexLookup): Readonly<AnyObject>[] {
    let ids: Iterable<string>;
    if (lookup.kind === 'all') ids = this.objects.keys();
    else if (lookup.kind === 'exact') ids = this.indexes.get(lookup.index)?.get(lookup.key) ?? [];
    else {
      const out: string[] = [];
      for (const [key, set] of this.indexes.get(lookup.index) ?? []) if (key.startsWith(lookup.prefix)) out.push(...set);
      ids = out;
    }
    return [...ids].sort().map((id) => this.objects.get(id)!);
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
