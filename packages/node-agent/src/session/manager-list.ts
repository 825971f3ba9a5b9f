/**
 * Which manager the agent dials next. Pure: the session driver feeds it what the managers say
 * (the list in each SessionMessage, redirects) and asks where to go after a failure.
 *
 * - `next()` after a failed or ended session moves to the manager after the current one in the
 *   latest list, wrapping around, so every manager is tried in turn.
 * - `redirect(addr)` makes `addr` the next target (a follower pointing at the leader).
 * - `update(list)` replaces the list (order kept as given, duplicates dropped); the current
 *   manager stays current if it is still listed.
 */
export class ManagerList {
  private list: string[];
  private cursor = 0;
  private redirected: string | undefined;

  constructor(initial: readonly string[]) {
    this.list = dedupe(initial);
    if (this.list.length === 0) throw new Error('node agent: no manager address to connect to');
  }

  /** The manager to dial now. */
  current(): string {
    return this.redirected ?? this.list[this.cursor % this.list.length];
  }

  /** Moves past the current manager (it failed or its session ended). */
  next(): string {
    if (this.redirected !== undefined) {
      const r = this.redirected;
      this.redirected = undefined;
      const i = this.list.indexOf(r);
      if (i >= 0) this.cursor = i;
      else return this.current(); // a redirect target we do not know: back to the list where we were
    }
    this.cursor = (this.cursor + 1) % this.list.length;
    return this.current();
  }

  redirect(addr: string): void {
    this.redirected = addr;
  }

  update(list: readonly string[]): void {
    const l = dedupe(list);
    if (l.length === 0) return;
    const cur = this.current();
    this.list = l;
    const i = l.indexOf(cur);
    this.cursor = i >= 0 ? i : 0;
    if (this.redirected !== undefined && i >= 0) this.redirected = undefined;
  }

  all(): string[] {
    return [...this.list];
  }
}

function dedupe(l: readonly string[]): string[] {
  return [...new Set(l.filter((a) => a.length > 0))];
}
