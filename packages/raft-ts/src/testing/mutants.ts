/**
 * Planted faults ("mutants") of the Raft core, to measure what the unit tests and the simulation
 * catch (`npm run mutants:raft`, src/testing/mutants-cli.ts). Each mutant is one precise source
 * edit of a file under src/core, src/log, src/progress or src/quorum: `find` must occur exactly
 * once in that file, and is replaced by `replace`. `test/mutants.test.ts` checks that every mutant
 * still applies to the current sources, so the list does not rot.
 *
 * `effect` says what the fault breaks, as far as we can tell by reading it:
 * - safety: some schedule makes the cluster lose an acknowledged write, apply different entries
 *   at one index, elect two leaders in a term, or serve a stale read;
 * - liveness: the cluster may stall or take longer, but never answers wrongly;
 * - none: the code is only slower or does redundant work (an equivalent mutant for correctness).
 */

export type MutantEffect = 'safety' | 'liveness' | 'none';

export interface Mutant {
  name: string;
  /** Path under the package, e.g. src/log/raft-log.ts. */
  file: string;
  find: string;
  replace: string;
  effect: MutantEffect;
  /** What the fault breaks, in a few words. */
  breaks: string;
}

export const MUTANTS: readonly Mutant[] = [
  // ---- quorum/ ----
  {
    name: 'quorum-minus-one',
    file: 'src/quorum/majority.ts',
    find: 'return Math.floor(voters / 2) + 1;',
    replace: 'return Math.floor(voters / 2);',
    effect: 'safety',
    breaks: 'a quorum is one voter short: 1 of 3 elects and commits',
  },
  {
    name: 'quorum-ceil-half',
    file: 'src/quorum/majority.ts',
    find: 'return Math.floor(voters / 2) + 1;',
    replace: 'return Math.ceil(voters / 2);',
    effect: 'safety',
    breaks: 'half of an even number of voters is a "majority" (2 of 4): two disjoint quorums',
  },
  {
    name: 'commit-index-lexicographic-sort',
    file: 'src/quorum/majority.ts',
    find: '.sort((a, b) => b - a);',
    replace: '.sort().reverse();',
    effect: 'safety',
    breaks: 'match indexes sorted as strings (9 > 10): commits what a minority holds once indexes cross a power of ten',
  },
  {
    name: 'vote-lost-too-early',
    file: 'src/quorum/majority.ts',
    find: 'if (yes + missing >= q) return \'pending\';',
    replace: 'if (yes + missing > q) return \'pending\';',
    effect: 'liveness',
    breaks: 'a candidate gives up while it can still win (needs every missing vote)',
  },
  // ---- log/ ----
  {
    name: 'commit-entry-of-older-term',
    file: 'src/log/raft-log.ts',
    find: 'if (maxIndex > this.committed && this.termOrZero(maxIndex) === term) {',
    replace: 'if (maxIndex > this.committed) {',
    effect: 'safety',
    breaks: 'a leader commits an entry of an earlier term by counting replicas (Figure 8)',
  },
  {
    name: 'up-to-date-ignores-term',
    file: 'src/log/raft-log.ts',
    find: 'return term > lt || (term === lt && lasti >= this.lastIndex());',
    replace: 'return lasti >= this.lastIndex();',
    effect: 'safety',
    breaks: 'votes compare log lengths only: a longer log of an old term wins over committed entries',
  },
  {
    name: 'up-to-date-off-by-one',
    file: 'src/log/raft-log.ts',
    find: 'return term > lt || (term === lt && lasti >= this.lastIndex());',
    replace: 'return term > lt || (term === lt && lasti >= this.lastIndex() - 1);',
    effect: 'safety',
    breaks: 'a voter grants a candidate that misses its last entry (which may be committed)',
  },
  {
    name: 'append-ignores-prev-term',
    file: 'src/log/raft-log.ts',
    find: 'if (!this.matchTerm(index, logTerm)) return undefined;',
    replace: 'if (index > this.lastIndex()) return undefined;',
    effect: 'safety',
    breaks: 'a follower accepts entries after (index, logTerm) without checking the term there (Log Matching)',
  },
  {
    name: 'commit-beyond-last-new',
    file: 'src/log/raft-log.ts',
    find: 'this.commitTo(Math.min(committed, lastNew));',
    replace: 'this.commitTo(Math.min(committed, this.lastIndex()));',
    effect: 'safety',
    breaks: 'a follower commits entries past those the append verified (its own divergent tail)',
  },
  {
    name: 'stale-append-truncates',
    file: 'src/log/raft-log.ts',
    find: 'const ci = this.findConflict(ents);',
    replace: 'const ci = ents.length > 0 && ents[0].index > this.committed ? ents[0].index : this.findConflict(ents);',
    effect: 'safety',
    breaks: 'a duplicated or late append truncates the entries after it, which the follower already acknowledged',
  },
  {
    name: 'conflict-search-off-by-one',
    file: 'src/log/raft-log.ts',
    find: 'for (let i = index; i > 0; i--) {',
    replace: 'for (let i = index - 1; i > 0; i--) {',
    effect: 'none',
    breaks: 'the reject hint starts one entry too low: the leader re-sends one entry more',
  },
  {
    name: 'stable-to-ignores-term',
    file: 'src/log/unstable.ts',
    find: 'if (gt === undefined || gt !== t) return;',
    replace: 'if (gt === undefined) return;',
    effect: 'safety',
    breaks: 'entries that replaced a persisting tail are marked persisted by the old Ready\'s advance()',
  },
  {
    name: 'truncate-keeps-in-progress',
    file: 'src/log/unstable.ts',
    find: 'this.offsetInProgress = Math.min(this.offsetInProgress, from);',
    replace: '',
    effect: 'safety',
    breaks: 'entries replacing a tail already handed out are never handed out to persist',
  },
  // ---- progress/ ----
  {
    name: 'match-not-monotonic',
    file: 'src/progress/follower-progress.ts',
    find: 'if (this.match < n) {',
    replace: 'if (this.match !== n) {',
    effect: 'none',
    breaks: 'a late ack moves a follower\'s match backwards (the commit index never moves back)',
  },
  {
    name: 'leader-assumes-followers-match',
    file: 'src/progress/tracker.ts',
    find: 'pr.reset(lastIndex + 1, id === selfId ? selfStable : 0);',
    replace: 'pr.reset(lastIndex + 1, id === selfId ? selfStable : lastIndex);',
    effect: 'safety',
    breaks: 'a new leader assumes every follower holds its whole log, and commits by that',
  },
  {
    name: 'failed-snapshot-kept-pending',
    file: 'src/progress/follower-progress.ts',
    find: 'if (!ok) this.pendingSnapshot = 0;',
    replace: '',
    effect: 'liveness',
    breaks: 'after a failed snapshot send the leader probes as if the follower had it',
  },
  // ---- core/ ----
  {
    name: 'vote-ignores-log',
    file: 'src/core/raft.ts',
    find: 'if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {',
    replace: 'if (canVote) {',
    effect: 'safety',
    breaks: 'votes (and pre-votes) are granted without the log up-to-date check',
  },
  {
    name: 'prevote-ignores-log',
    file: 'src/core/raft.ts',
    find: 'if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {',
    replace: 'if (canVote && (m.type === MessageType.MSG_PRE_VOTE || this.log.isUpToDate(m.index, m.logTerm))) {',
    effect: 'liveness',
    breaks: 'pre-votes skip the log check: a stale member passes the pre-election and bumps the term',
  },
  {
    name: 'vote-not-recorded',
    file: 'src/core/raft.ts',
    find: 'this.vote = m.from;',
    replace: '',
    effect: 'safety',
    breaks: 'a voter forgets whom it voted for and votes again in the same term',
  },
  {
    name: 'candidate-keeps-term',
    file: 'src/core/raft.ts',
    find: 'this.reset(this.term + 1);',
    replace: 'this.reset(this.term);',
    effect: 'safety',
    breaks: 'a candidate campaigns in its current term (where it may have voted for another)',
  },
  {
    name: 'leader-ignores-higher-term',
    file: 'src/core/raft.ts',
    find: 'this.becomeFollower(m.term, leaderMsg ? m.from : 0);',
    replace: 'if (this.role !== \'leader\') this.becomeFollower(m.term, leaderMsg ? m.from : 0);',
    effect: 'liveness',
    breaks: 'a leader does not step down on a message of a higher term',
  },
  {
    name: 'stale-leader-not-told',
    file: 'src/core/raft.ts',
    find: 'this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from }));',
    replace: '',
    effect: 'liveness',
    breaks: 'a stale leader\'s appends are ignored silently: it may never learn the newer term',
  },
  {
    name: 'heartbeat-commit-unclamped',
    file: 'src/core/raft.ts',
    find: 'const commit = Math.min(pr.match, this.log.committed);',
    replace: 'const commit = this.log.committed;',
    effect: 'safety',
    breaks: 'heartbeats carry the full commit index: a follower commits its own divergent entries',
  },
  {
    name: 'stale-append-acks-last-index',
    file: 'src/core/raft.ts',
    find: 'if (m.index < this.log.committed) {\n      this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.committed }));',
    replace: 'if (m.index < this.log.committed) {\n      this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.lastIndex() }));',
    effect: 'safety',
    breaks: 'a follower answers a stale append with its last index, vouching for an unverified tail',
  },
  {
    name: 'snapshot-ack-off-by-one',
    file: 'src/core/raft.ts',
    find: 'this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.lastIndex() }));',
    replace: 'this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.lastIndex() + 1 }));',
    effect: 'safety',
    breaks: 'a follower acknowledges one entry past the snapshot it restored',
  },
  {
    name: 'snapshot-below-commit-restored',
    file: 'src/core/raft.ts',
    find: 'if (md.index <= this.log.committed) return false;',
    replace: '',
    effect: 'safety',
    breaks: 'a follower restores a snapshot older than its commit index (its state goes back)',
  },
  {
    name: 'leader-counts-unpersisted-entries',
    file: 'src/core/raft.ts',
    find: '    this.log.append(es);\n  }',
    replace: '    this.log.append(es);\n    this.tracker.get(this.id)?.maybeUpdate(this.log.lastIndex());\n  }',
    effect: 'safety',
    breaks: 'the leader counts its own entries toward the commit quorum before they are persisted',
  },
  {
    name: 'conf-changes-overlap',
    file: 'src/core/raft.ts',
    find: 'if (this.pendingConfIndex > this.log.applied) {',
    replace: 'if (false) {',
    effect: 'safety',
    breaks: 'a second membership change is accepted before the first is applied',
  },
  {
    name: 'candidate-counts-prevotes',
    file: 'src/core/roles/candidate.ts',
    find: 'case myVoteResp: {',
    replace: 'case MessageType.MSG_PRE_VOTE_RESP:\n    case MessageType.MSG_VOTE_RESP: {',
    effect: 'safety',
    breaks: 'a candidate counts late pre-vote grants (which bind nobody) as votes',
  },
  {
    name: 'read-index-without-heartbeat',
    file: 'src/core/roles/leader.ts',
    find: 'if (r.tracker.isSingleton() && r.tracker.isVoter(r.id)) {',
    replace: 'if (r.tracker.isVoter(r.id)) {',
    effect: 'safety',
    breaks: 'ReadIndex answered at once, without a heartbeat round: a deposed leader serves stale reads',
  },
  {
    name: 'read-index-one-ack',
    file: 'src/core/roles/leader.ts',
    find: 'if (!acks || r.tracker.ackResult(acks) !== \'won\') return;',
    replace: 'if (!acks) return;',
    effect: 'safety',
    breaks: 'a ReadIndex round is confirmed by the first heartbeat reply, not a quorum (differs with 5 voters)',
  },
  {
    name: 'read-index-before-term-commit',
    file: 'src/core/roles/leader.ts',
    find: 'if (!r.committedEntryInCurrentTerm()) {',
    replace: 'if (false) {',
    effect: 'safety',
    breaks: 'a new leader answers ReadIndex before it committed an entry of its term (its commit index may lag)',
  },
  {
    name: 'follower-read-own-commit',
    file: 'src/core/roles/follower.ts',
    find: 'r.readStates.push({ index: m.index, requestCtx: m.context });',
    replace: 'r.readStates.push({ index: r.log.committed, requestCtx: m.context });',
    effect: 'safety',
    breaks: 'a follower serves a read at its own commit index instead of the leader\'s read index',
  },
];

export class MutantError extends Error {}

/** The source text with the mutant applied; throws MutantError unless `find` occurs exactly once. */
export function applyMutant(source: string, m: Mutant): string {
  const at = source.indexOf(m.find);
  if (at < 0) throw new MutantError(`mutant ${m.name}: ${m.file} no longer contains ${JSON.stringify(m.find)}`);
  if (source.indexOf(m.find, at + 1) >= 0) throw new MutantError(`mutant ${m.name}: ${JSON.stringify(m.find)} occurs more than once in ${m.file}`);
  return source.slice(0, at) + m.replace + source.slice(at + m.find.length);
}
