/** A discrete-event queue: a binary heap ordered by (time, insertion order). Deterministic. */

interface Item {
  time: number;
  seq: number;
  run: () => void;
}

export class EventQueue {
  private heap: Item[] = [];
  private seq = 0;
  now = 0;

  get size(): number {
    return this.heap.length;
  }

  at(time: number, run: () => void): void {
    if (time < this.now) time = this.now;
    const item = { time, seq: this.seq++, run };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  after(delay: number, run: () => void): void {
    this.at(this.now + delay, run);
  }

  /** Runs the next event if it is due at or before `until`; false when there is none. */
  runNext(until: number): boolean {
    const h = this.heap;
    if (h.length === 0 || h[0].time > until) return false;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    this.now = top.time;
    top.run();
    return true;
  }
}

function less(a: Item, b: Item): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
