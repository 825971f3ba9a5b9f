/**
 * ProgressTracker: the current membership (voters, learners), the leader's progress per member,
 * and the votes of an election. Quorum questions are answered over voters only: learners receive
 * entries but never vote or count.
 */
import type { ConfState } from '../pb/raft/raft.js';
import { committedIndex, type VoteResult, voteResult } from '../quorum/majority.js';
import { FollowerProgress } from './follower-progress.js';

export class ProgressTracker {
  voters = new Set<number>();
  learners = new Set<number>();
  readonly progress = new Map<number, FollowerProgress>();
  private votes = new Map<number, boolean>();

  constructor(readonly maxInflight: number) {}

  confState(): ConfState {
    return { voters: [...this.voters].sort((a, b) => a - b), learners: [...this.learners].sort((a, b) => a - b) };
  }

  isVoter(id: number): boolean {
    return this.voters.has(id);
  }

  isMember(id: number): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  isSingleton(): boolean {
    return this.voters.size === 1;
  }

  get(id: number): FollowerProgress | undefined {
    return this.progress.get(id);
  }

  /**
   * Switches to membership cs. Members that stay keep their progress; new members start probing
   * at lastIndex + 1 and count as recently active (so CheckQuorum does not trip before they speak).
   */
  applyConfState(cs: ConfState, lastIndex: number): void {
    this.voters = new Set(cs.voters);
    this.learners = new Set(cs.learners.filter((id) => !this.voters.has(id)));
    for (const id of [...this.progress.keys()]) {
      if (!this.isMember(id)) this.progress.delete(id);
    }
    for (const id of [...this.voters, ...this.learners]) {
      const isLearner = this.learners.has(id);
      const pr = this.progress.get(id);
      if (pr) pr.setLearner(isLearner);
      else this.progress.set(id, new FollowerProgress(lastIndex + 1, { isLearner, maxInflight: this.maxInflight, recentActive: true }));
    }
    for (const id of [...this.votes.keys()]) {
      if (!this.voters.has(id)) this.votes.delete(id);
    }
  }

  /** A new term: everyone probes from lastIndex + 1; self matches what it has persisted. */
  resetAll(lastIndex: number, selfId: number, selfStable: number): void {
    for (const [id, pr] of this.progress) {
      pr.reset(lastIndex + 1, id === selfId ? selfStable : 0);
    }
  }

  /** Largest index replicated on a majority of voters. */
  committed(): number {
    return committedIndex(this.voters, (id) => this.progress.get(id)?.match ?? 0);
  }

  /** A majority of voters (self included) was heard from since the last check. */
  quorumActive(selfId: number): boolean {
    const votes = new Map<number, boolean>();
    for (const id of this.voters) {
      votes.set(id, id === selfId || (this.progress.get(id)?.recentActive ?? false));
    }
    return voteResult(this.voters, votes) === 'won';
  }

  resetRecentActive(selfId: number): void {
    for (const [id, pr] of this.progress) {
      if (id === selfId) pr.markActive();
      else pr.markInactive();
    }
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  /** Records id's vote (the first one counts; duplicates are ignored) and tallies. */
  recordVote(id: number, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return voteResult(this.voters, this.votes);
  }

  /** Tally of a set of acknowledgements (ReadIndex rounds) among voters. */
  ackResult(acks: ReadonlySet<number>): VoteResult {
    const votes = new Map<number, boolean>();
    for (const id of acks) votes.set(id, true);
    return voteResult(this.voters, votes);
  }

  ids(): number[] {
    return [...this.progress.keys()].sort((a, b) => a - b);
  }
}
