/**
 * Which manager the agent dials next. Pure: the session driver feeds it what the managers say
 * (the list in each SessionMessage, redirects) and asks where to go after a failure.
 *
 * - `current()` is the manager being dialled or connected to. It need not be in the list: the
 *   join address, a redirect target, or an address the managers advertise differently.
 * - `next()` after a failed or ended session moves to the manager after the current one in the
 *   latest list, wrapping around, so every manager is tried in turn; from an address not in the
 *   list it starts at the top.
 * - `redirect(addr)` makes `addr` current (a follower pointing at the leader).
 * - `update(list)` replaces the list (order kept as given, duplicates dropped; an empty list
 *   changes nothing). The current manager stays current.
 */
export class ManagerList {
  private list: string[];
  private cur: string;

  constructor(initial: readonly string[]) {
    this.list = dedupe(initial);
    if (this.list.length === 0) throw new Error('node agent: no manager address to connect to');
    this.cur = this.list[0];
  }

  current(): string {
    return this.cur;
  }

  next(): string {
    const i = this.list.indexOf(this.cur);
    this.cur = this.list[(i + 1) % this.list.length];
    return this.cur;
  }

  redirect(addr: string): void {
    this.cur = addr;
  }

  update(list: readonly string[]): void {
    const l = dedupe(list);
    if (l.length > 0) this.list = l;
  }

  all(): string[] {
    return [...this.list];
  }
}

function dedupe(l: readonly string[]): string[] {
  return [...new Set(l.filter((a) => a.length > 0))];
}
