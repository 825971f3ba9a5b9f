/** Majority quorum math over a set of voters (pure). */

export type VoteResult = 'won' | 'lost' | 'pending';

export function quorumSize(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

/**
 * The largest index a majority of voters has acknowledged (match index per voter). With no
 * voters there is nothing to commit: 0.
 */
export function committedIndex(voters: ReadonlySet<number>, ackedIndex: (id: number) => number): number {
  if (voters.size === 0) return 0;
  const idx = [...voters].map((id) => ackedIndex(id)).sort((a, b) => b - a);
  return idx[quorumSize(voters.size) - 1];
}

/** Tally of a vote: won with a majority of yes, lost once a majority is out of reach. */
export function voteResult(voters: ReadonlySet<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) yes++;
  }
  const q = quorumSize(voters.size);
  if (yes >= q) return 'won';
  if (yes + missing >= q) return 'pending';
  return 'lost';
}
