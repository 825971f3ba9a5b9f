/** Reconnect delays: exponential from `baseMs`, capped at `maxMs`, with jitter from an injected rng. */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const defaultBackoff: BackoffOptions = { baseMs: 100, maxMs: 8_000 };

/**
 * The delay before reconnect attempt `attempt` (0 = the first retry): the capped exponential
 * `min(maxMs, baseMs·2^attempt)`, of which the upper half is jittered ("equal jitter"), so a
 * fleet of agents losing the same manager spreads out but never retries at once in a loop.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, rng: () => number): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  const half = exp / 2;
  return Math.round(half + half * Math.min(Math.max(rng(), 0), 1));
}
