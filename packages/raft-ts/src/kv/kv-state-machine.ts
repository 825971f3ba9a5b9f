/** The replicated key-value example: a map from string keys to bytes, changed by KvCommand entries. */
import { KvCommand, KvCommand_Op, KvSnapshot } from '../pb/raft/raft.js';
import type { StateMachine } from '../driver/raft-node.js';

export class KvStateMachine implements StateMachine {
  private readonly map = new Map<string, Buffer>();
  /** Index of the last write to each key. */
  private readonly versions = new Map<string, number>();
  lastIndex = 0;

  /** Applies a KvCommand; returns the index it was applied at. */
  apply(data: Uint8Array, index: number): number {
    const cmd = KvCommand.decode(data);
    if (cmd.op === KvCommand_Op.DELETE) {
      this.map.delete(cmd.key);
      this.versions.delete(cmd.key);
    } else {
      this.map.set(cmd.key, Buffer.from(cmd.value));
      this.versions.set(cmd.key, index);
    }
    this.lastIndex = index;
    return index;
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
    return KvSnapshot.encode({ pairs: keys.map((key) => ({ key, value: this.map.get(key)! })) }).finish();
  }

  restore(data: Uint8Array): void {
    this.map.clear();
    this.versions.clear();
    if (data.length === 0) return;
    for (const p of KvSnapshot.decode(data).pairs) this.map.set(p.key, Buffer.from(p.value));
  }

  static put(key: string, value: Uint8Array, requestId = ''): Uint8Array {
    return KvCommand.encode({ op: KvCommand_Op.PUT, key, value: Buffer.from(value), requestId }).finish();
  }

  static del(key: string): Uint8Array {
    return KvCommand.encode({ op: KvCommand_Op.DELETE, key, value: Buffer.alloc(0), requestId: '' }).finish();
  }
}
