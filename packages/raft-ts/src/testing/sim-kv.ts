/**
 * The replicated key-value state machine of the simulation. Commands carry a client id and a
 * sequence number; a command whose sequence number is not above the client's last applied one is
 * a duplicate (a retry) and is skipped, so every write takes effect at most once.
 */

export interface KvCommand {
  c: number; // client id
  s: number; // client sequence number
  k: string;
  v: string | null; // null: delete
}

export function encodeCommand(cmd: KvCommand): Buffer {
  return Buffer.from(JSON.stringify(cmd));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  return JSON.parse(Buffer.from(data).toString()) as KvCommand;
}

export class KvStateMachine {
  kv = new Map<string, string>();
  lastSeq = new Map<number, number>();

  /** Applies a command; false if it was a duplicate. */
  apply(cmd: KvCommand): boolean {
    const last = this.lastSeq.get(cmd.c) ?? 0;
    if (cmd.s <= last) return false;
    this.lastSeq.set(cmd.c, cmd.s);
    if (cmd.v === null) this.kv.delete(cmd.k);
    else this.kv.set(cmd.k, cmd.v);
    return true;
  }

  get(key: string): string | null {
    return this.kv.get(key) ?? null;
  }

  /** A canonical serialization (sorted), so equal states have equal bytes. */
  serialize(): Buffer {
    const kv = [...this.kv.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const seq = [...this.lastSeq.entries()].sort((a, b) => a[0] - b[0]);
    return Buffer.from(JSON.stringify({ kv, seq }));
  }

  static restore(data: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (data.length === 0) return sm;
    const o = JSON.parse(Buffer.from(data).toString()) as { kv: [string, string][]; seq: [number, number][] };
    sm.kv = new Map(o.kv);
    sm.lastSeq = new Map(o.seq);
    return sm;
  }
}
