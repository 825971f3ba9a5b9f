import { SwarmError, ErrorCode } from '@swarmd/common/errors';

/**
 * Waits for a proposal's outcome, or rejects with CANCELLED when the signal aborts first (the
 * entry may still be applied: the log has it already).
 */
export async function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new SwarmError(ErrorCode.CANCELLED, 'proposal cancelled; it may still be applied', { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
    p.catch(() => undefined);
  }
}

/** A member's leadership flag and the callbacks told of each change (ReplicatedLog.onLeaderChange). */
export class Leadership {
  private leader = false;
  private readonly listeners = new Set<(isLeader: boolean) => void>();

  get(): boolean {
    return this.leader;
  }

  /** Sets the flag; returns whether it changed (the callbacks ran). */
  set(leader: boolean): boolean {
    if (leader === this.leader) return false;
    this.leader = leader;
    for (const cb of [...this.listeners]) cb(leader);
    return true;
  }

  on(cb: (isLeader: boolean) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
}

/**
 * Batches linearizable reads, as etcd's linearizable read loop does: every read that arrives
 * while no round runs joins the next round, which starts at once; reads that arrive while a round
 * runs wait for the round after it (the running round's read index may predate a write they must
 * see). So any number of concurrent reads cost one round (a ReadIndex heartbeat round, an etcd
 * read) each, at most two rounds' time.
 */
export class ReadBatcher {
  private next: { promise: Promise<void>; settle: (err?: Error) => void } | undefined;
  private running = false;
  /** Rounds started (for tests and metrics). */
  rounds = 0;

  /** `round` resolves once this member's state reflects every write committed before it began. */
  constructor(private readonly round: () => Promise<void>) {}

  read(): Promise<void> {
    if (!this.next) {
      let settle!: (err?: Error) => void;
      const promise = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
      this.next = { promise, settle };
    }
    const p = this.next.promise;
    if (!this.running) this.start();
    return p;
  }

  private start(): void {
    const batch = this.next;
    if (!batch) return;
    this.next = undefined;
    this.running = true;
    this.rounds++;
    let r: Promise<void>;
    try {
      r = this.round(); // started now: a read called before it returns is in this round
    } catch (e) {
      r = Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    r.then(
        () => batch.settle(),
        (err: unknown) => batch.settle(err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => {
        this.running = false;
        this.start();
      });
  }
}

/** Waits until `p` settles (either way) or `ms` pass, whichever is first. */
export async function settleWithin(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!p) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms).unref()))]);
  clearTimeout(timer);
}
