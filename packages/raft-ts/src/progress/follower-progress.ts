/**
 * What the leader knows of one follower, as a small state machine (all transitions live here):
 *
 *   probe      one append at a time (paused until answered or a heartbeat reply), to find
 *              where the follower's log matches ours.
 *   replicate  optimistic pipelining: next moves ahead on send, bounded by the inflight window.
 *   snapshot   a snapshot is on its way; nothing else is sent until reportSnapshot or an ack.
 */
import type { ProgressState, ProgressStatus } from '../types.js';
import { InflightWindow } from './inflight-window.js';

export class FollowerProgress {
  /** Highest index known to be replicated on the follower. */
  match = 0;
  /** Next index to send. Invariant: match < next. */
  next: number;
  state: ProgressState = 'probe';
  /** Index of the snapshot in flight (snapshot state). */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive: boolean;
  /** In probe: an append is out and unanswered. */
  probeSent = false;
  isLearner: boolean;
  readonly inflights: InflightWindow;

  constructor(next: number, opts: { isLearner: boolean; maxInflight: number; recentActive?: boolean }) {
    this.next = Math.max(next, 1);
    this.isLearner = opts.isLearner;
    this.recentActive = opts.recentActive ?? false;
    this.inflights = new InflightWindow(opts.maxInflight);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  /** Back to square one (a new leader term): probe from next, match as given. */
  reset(next: number, match: number): void {
    this.resetState('probe');
    this.next = Math.max(next, match + 1, 1);
    this.match = match;
    this.recentActive = false;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
    this.next = snapshotIndex + 1;
  }

  /** The follower acknowledged index n; false when that is old news. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * The follower rejected an append at index rejected, hinting that its log matches up to
   * matchHint at best. Returns false when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** An append with `entries` entries (lastIndex the last one) and `bytes` payload went out. */
  sentEntries(entries: number, lastIndex: number, bytes: number): void {
    switch (this.state) {
      case 'replicate':
        if (entries > 0) {
          this.inflights.add(lastIndex, bytes);
          this.next = lastIndex + 1;
        }
        break;
      case 'probe':
        this.probeSent = true;
        break;
      case 'snapshot':
        break;
    }
  }

  /** Acks up to index free the window. */
  ackInflights(index: number): void {
    this.inflights.freeLE(index);
  }

  markActive(): void {
    this.recentActive = true;
  }

  markInactive(): void {
    this.recentActive = false;
  }

  /**
   * A heartbeat reply: the follower is alive, so a probe may go out again, and a full window
   * gives up one slot (its messages may all have been lost).
   */
  heartbeatAcked(): void {
    this.recentActive = true;
    this.probeSent = false;
    if (this.state === 'replicate' && this.inflights.full()) this.inflights.freeFirstOne();
  }

  /** The snapshot send finished (ok or not): probe again, after the next heartbeat reply. */
  snapshotDone(ok: boolean): void {
    if (!ok) this.pendingSnapshot = 0;
    this.becomeProbe();
    this.probeSent = true;
  }

  /** The transport could not reach the follower: stop pipelining. */
  unreachable(): void {
    if (this.state === 'replicate') this.becomeProbe();
  }

  setLearner(isLearner: boolean): void {
    this.isLearner = isLearner;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  status(): ProgressStatus {
    return { match: this.match, next: this.next, state: this.state, isLearner: this.isLearner, recentActive: this.recentActive };
  }
}
