/**
 * Pending ReadIndex requests on the leader. A request records the commit index when it arrived;
 * the leader broadcasts a heartbeat carrying the request's context, and once a majority of voters
 * echoed it, leadership at that moment is confirmed and the request (and every earlier one) can
 * be answered with its recorded index.
 */
import type { Message } from '../pb/raft/raft.js';

export interface ReadIndexRequest {
  index: number;
  req: Message;
  acks: Set<number>;
}

export function ctxKey(ctx: Uint8Array): string {
  return Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString('base64');
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadIndexRequest>();
  private queue: string[] = [];

  /** Registers a request (a duplicate context is ignored). */
  add(index: number, req: Message): void {
    const key = ctxKey(req.context);
    if (this.pending.has(key)) return;
    this.pending.set(key, { index, req, acks: new Set() });
    this.queue.push(key);
  }

  /** Records id's echo of ctx; returns the acks so far, undefined when ctx is unknown. */
  recvAck(id: number, ctx: Uint8Array): ReadonlySet<number> | undefined {
    const p = this.pending.get(ctxKey(ctx));
    if (!p) return undefined;
    p.acks.add(id);
    return p.acks;
  }

  /** Removes and returns the requests up to and including ctx's, oldest first. */
  advance(ctx: Uint8Array): ReadIndexRequest[] {
    const key = ctxKey(ctx);
    const at = this.queue.indexOf(key);
    if (at < 0) return [];
    const done = this.queue.slice(0, at + 1);
    this.queue = this.queue.slice(at + 1);
    return done.map((k) => {
      const r = this.pending.get(k)!;
      this.pending.delete(k);
      return r;
    });
  }

  lastPendingCtx(): Buffer | undefined {
    const key = this.queue[this.queue.length - 1];
    return key === undefined ? undefined : this.pending.get(key)!.req.context;
  }

  size(): number {
    return this.queue.length;
  }
}
