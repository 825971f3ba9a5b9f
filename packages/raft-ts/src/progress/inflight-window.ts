/**
 * The bounded window of append messages in flight to one follower (in the replicate state):
 * each entry is the last index a message carried and its payload bytes. Full means the leader
 * waits for acks before sending more.
 */
export class InflightWindow {
  private readonly items: { index: number; bytes: number }[] = [];
  private bytes = 0;

  constructor(
    readonly maxCount: number,
    readonly maxBytes = Infinity,
  ) {}

  add(index: number, bytes: number): void {
    this.items.push({ index, bytes });
    this.bytes += bytes;
  }

  /** Frees the messages whose last index is ≤ index (acknowledged). */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.items.length && this.items[n].index <= index) {
      this.bytes -= this.items[n].bytes;
      n++;
    }
    if (n > 0) this.items.splice(0, n);
  }

  freeFirstOne(): void {
    const first = this.items.shift();
    if (first) this.bytes -= first.bytes;
  }

  full(): boolean {
    return this.items.length >= this.maxCount || this.bytes >= this.maxBytes;
  }

  count(): number {
    return this.items.length;
  }

  reset(): void {
    this.items.length = 0;
    this.bytes = 0;
  }
}
