/**
 * The simulated network between members: per-message delay (so reordering), loss, duplication,
 * and directed link cuts (a symmetric partition cuts both directions, a one-way partition one).
 * A message is dropped if its link is cut when it is sent or when it would arrive.
 */
import type { EventQueue } from './event-queue.js';
import type { Prng } from './prng.js';

export interface NetworkConditions {
  /** Probability that a message is lost. */
  loss: number;
  /** Probability that a message is delivered twice. */
  duplicate: number;
  minDelay: number;
  maxDelay: number;
  /** Probability that a message takes a long detour (up to longDelay). */
  slow: number;
  longDelay: number;
}

export const CALM: NetworkConditions = { loss: 0, duplicate: 0, minDelay: 1, maxDelay: 5, slow: 0, longDelay: 0 };

export type DropReason = 'loss' | 'cut';

export class SimNetwork {
  conditions: NetworkConditions = { ...CALM };
  private cut = new Set<string>();
  /** Links whose next message is held back this long (one message each). */
  private held = new Map<string, number>();
  sent = 0;
  delivered = 0;
  dropped = 0;

  constructor(
    private readonly queue: EventQueue,
    private readonly rng: Prng,
  ) {}

  private static link(from: number, to: number): string {
    return `${from}>${to}`;
  }

  isCut(from: number, to: number): boolean {
    return this.cut.has(SimNetwork.link(from, to));
  }

  cutLink(from: number, to: number): void {
    this.cut.add(SimNetwork.link(from, to));
  }

  /** Cuts every link between the two groups, in both directions. */
  partition(a: readonly number[], b: readonly number[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) continue;
        this.cutLink(x, y);
        this.cutLink(y, x);
      }
    }
  }

  /** Cuts every link from one group to the other (one direction only). */
  partitionOneWay(from: readonly number[], to: readonly number[]): void {
    for (const x of from) for (const y of to) if (x !== y) this.cutLink(x, y);
  }

  heal(): void {
    this.cut.clear();
  }

  /** The next message from one member to another arrives ms late (a single message stuck in a queue). */
  holdNext(from: number, to: number, ms: number): void {
    this.held.set(SimNetwork.link(from, to), ms);
  }

  /** Calm again: no link holds a message back. */
  releaseHolds(): void {
    this.held.clear();
  }

  get cutLinks(): number {
    return this.cut.size;
  }

  private delay(): number {
    const c = this.conditions;
    if (c.slow > 0 && this.rng.chance(c.slow)) return this.rng.range(c.maxDelay, Math.max(c.maxDelay, c.longDelay));
    return this.rng.range(c.minDelay, c.maxDelay);
  }

  /**
   * Sends a message from one member to another: deliver() runs at arrival (once or twice), or
   * dropped() runs when it is lost (at once, or at arrival
   * if the link was cut meanwhile).
   */
  send(from: number, to: number, deliver: () => void, dropped: (why: DropReason) => void): void {
    this.sent++;
    if (this.isCut(from, to)) {
      this.dropped++;
      dropped('cut');
      return;
    }
    if (this.rng.chance(this.conditions.loss)) {
      this.dropped++;
      dropped('loss');
      return;
    }
    const copies = this.rng.chance(this.conditions.duplicate) ? 2 : 1;
    const link = SimNetwork.link(from, to);
    const hold = this.held.get(link);
    if (hold !== undefined) this.held.delete(link);
    for (let i = 0; i < copies; i++) {
      this.queue.after(i === 0 && hold !== undefined ? hold : this.delay(), () => {
        if (this.isCut(from, to)) {
          this.dropped++;
          dropped('cut');
          return;
        }
        this.delivered++;
        deliver();
      });
    }
  }
}
