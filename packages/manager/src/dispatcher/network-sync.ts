/**
 * Which nodes have programmed which network state (DESIGN.md "Networking": the managers push,
 * the agents acknowledge). A task leaving a service's endpoints (its desired state left RUNNING at
 * store version W) must not stop while some host may still send it new connections: its agent
 * asks `wait(X)` with X ≥ W, which answers once every node with an assignments stream holds
 * the network state of version X or a later one.
 *
 * Per node stream: `processed`, the last store version the stream looked at (a version whose
 * state it found unchanged needs no new message); `unacked`, the versions of the states it sent
 * and the agent has not acknowledged yet, oldest first. The agent's tables hold the state of the
 * last acknowledged send, which is also the state of every version before the next send: a node
 * is at X when its oldest unacknowledged send is later than X, or when it has none and its stream
 * processed X. Leader-only and in memory: a new leader's streams start with their COMPLETE sends
 * unacknowledged.
 */
import type { Clock } from '@swarmd/common/clock';

interface NodeStream {
  readonly token: object;
  processed: number;
  unacked: number[];
}

export class NetworkSync {
  private readonly streams = new Map<string, NodeStream>();
  private readonly waiters = new Set<() => void>();

  /** A node's assignments stream sent its COMPLETE set (with its network state) at `version`. */
  open(nodeId: string, version: number): object {
    const token = {};
    this.streams.set(nodeId, { token, processed: version, unacked: [version] });
    this.notify();
    return token;
  }

  /** The stream looked at `version`; `sent`: it wrote a new network state for it. */
  processed(nodeId: string, token: object, version: number, sent: boolean): void {
    const s = this.streams.get(nodeId);
    if (s?.token !== token) return;
    s.processed = Math.max(s.processed, version);
    if (sent) s.unacked.push(version);
    this.notify();
  }

  /** The agent programmed the state it got at `version` (and so every earlier one). */
  acked(nodeId: string, version: number): void {
    const s = this.streams.get(nodeId);
    if (!s) return;
    const before = s.unacked.length;
    s.unacked = s.unacked.filter((v) => v > version);
    if (s.unacked.length !== before) this.notify();
  }

  /** The stream ended: the node no longer counts (it gets a COMPLETE set when it comes back). */
  close(nodeId: string, token: object): void {
    if (this.streams.get(nodeId)?.token !== token) return;
    this.streams.delete(nodeId);
    this.notify();
  }

  /** Nodes whose programmed network state is older than `version`'s. */
  lagging(version: number): string[] {
    const out: string[] = [];
    for (const [nodeId, s] of this.streams) {
      const at = s.unacked.length ? s.unacked[0] > version : s.processed >= version;
      if (!at) out.push(nodeId);
    }
    return out.sort();
  }

  /** Resolves with the lagging nodes once none lags at `version` ([]), or when `timeoutMs` passes. */
  async wait(version: number, timeoutMs: number, clock: Clock, signal?: AbortSignal): Promise<string[]> {
    if (this.lagging(version).length === 0) return [];
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const check = () => {
      if (this.lagging(version).length === 0) ac.abort();
    };
    this.waiters.add(check);
    try {
      await clock.sleep(timeoutMs, ac.signal).catch(() => undefined);
    } finally {
      this.waiters.delete(check);
      signal?.removeEventListener('abort', onAbort);
    }
    return this.lagging(version);
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}
