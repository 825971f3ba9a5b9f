/** The replicated key-value example: a map from string keys to bytes, changed by KvCommand entries. */
import { KvCommand, KvCommand_Op, KvSnapshot } from '../pb/raft/raft.js';
import type { StateMachine } from '../driver/raft-node.js';

/** How many put request ids the state machine remembers (the oldest are forgotten first). */
export const KV_REMEMBERED_REQUESTS = 100_000;

export class KvStateMachine implements StateMachine {
  private readonly map = new Map<string, Buffer>();
  /** Index of the last write to each key. */
  private readonly versions = new Map<string, number>();
  /**
   * Request id → index of the put that applied it, in apply order (a Map keeps insertion order):
   * a retried put with the same id is not applied again (client retries after an unknown outcome).
   */
  private readonly applied = new Map<string, number>();
  lastIndex = 0;

  constructor(private readonly rememberRequests = KV_REMEMBERED_REQUESTS) {}

  /**
   * Applies a KvCommand; returns the index it was applied at, or for a put whose request id was
   * applied before, the index of that first apply (and changes nothing).
   */
  apply(data: Uint8Array, index: number): number {
    const cmd = KvCommand.decode(data);
    this.lastIndex = index;
    if (cmd.requestId) {
      const first = this.applied.get(cmd.requestId);
      if (first !== undefined) return first;
      this.remember(cmd.requestId, index);
    }
    if (cmd.op === KvCommand_Op.DELETE) {
      this.map.delete(cmd.key);
      this.versions.delete(cmd.key);
    } else {
      this.map.set(cmd.key, Buffer.from(cmd.value));
      this.versions.set(cmd.key, index);
    }
    return index;
  }

  private remember(requestId: string, index: number): void {
    this.applied.set(requestId, index);
    if (this.applied.size > this.rememberRequests) this.applied.delete(this.applied.keys().next().value!);
  }

  get(key: string): { value: Buffer; index: number } | undefined {
    const value = this.map.get(key);
    return value ? { value, index: this.versions.get(key) ?? 0 } : undefined;
  }

  get size(): number {
    return this.map.size;
  }

  snapshot(): Uint8Array {
    const keys = [...this.map.keys()].sort();
    return KvSnapshot.encode({
      pairs: keys.map((key) => ({ key, value: this.map.get(key)!, index: this.versions.get(key) ?? 0 })),
      appliedRequests: [...this.applied].map(([requestId, index]) => ({ requestId, index })),
    }).finish();
  }

  restore(data: Uint8Array): void {
    this.map.clear();
    this.versions.clear();
    this.applied.clear();
    if (data.length === 0) return;
    const snap = KvSnapshot.decode(data);
    for (const p of snap.pairs) {
      this.map.set(p.key, Buffer.from(p.value));
      this.versions.set(p.key, p.index);
    }
    for (const r of snap.appliedRequests) this.remember(r.requestId, r.index);
  }

  static put(key: string, value: Uint8Array, requestId = ''): Uint8Array {
    return KvCommand.encode({ op: KvCommand_Op.PUT, key, value: Buffer.from(value), requestId }).finish();
  }

  static del(key: string): Uint8Array {
    return KvCommand.encode({ op: KvCommand_Op.DELETE, key, value: Buffer.alloc(0), requestId: '' }).finish();
  }
}
