/**
 * A tiny synchronous in-memory network of RawNodes for the core's unit tests (etcd's `network`):
 * each member runs the Ready loop by the book (persist to its MemoryStorage, send, apply, advance)
 * and the network delivers messages in FIFO order, except those it drops or cuts.
 */
import { ConfChange, type ConfState, type Entry, EntryType, type Message, MessageType, type RawNode, type ReadState } from '../../src/index.js';
import { createRawNode, MemoryStorage } from '../../src/index.js';
import type { RaftConfig } from '../../src/types.js';

export function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

export interface Member {
  id: number;
  raw: RawNode;
  storage: MemoryStorage;
  /** The state machine: data of applied normal entries, as strings. */
  applied: string[];
  appliedIndex: number;
  confState: ConfState;
  readStates: ReadState[];
  /** (index, term) of every applied entry, for state machine safety checks. */
  appliedLog: { index: number; term: number; data: string }[];
}

export interface NetOptions {
  voters: number[];
  learners?: number[];
  seed?: number;
  config?: Partial<RaftConfig>;
  /** Snapshot and compact when this many entries are applied past the last snapshot. */
  snapshotEvery?: number;
}

export class CoreNet {
  readonly members = new Map<number, Member>();
  /** Messages in flight. */
  queue: Message[] = [];
  private readonly isolated = new Set<number>();
  private readonly cuts = new Set<string>();
  /** Drop messages matching this. */
  dropIf: ((m: Message) => boolean) | undefined = undefined;
  /** Chance that a message is lost, and that a delivered one is delivered twice. */
  dropRate = 0;
  dupRate = 0;
  /** Shuffle each delivery round (reordering). */
  reorder = false;
  /** term → leader ids seen, to check election safety. */
  readonly leadersByTerm = new Map<number, Set<number>>();
  private readonly rng: () => number;
  readonly opts: NetOptions;

  constructor(opts: NetOptions) {
    this.opts = opts;
    this.rng = seeded(opts.seed ?? 1);
    // Founding members start from a snapshot at index 1 holding the initial membership, so the
    // membership is in every log's history (a member added later gets it with a snapshot).
    const cs: ConfState = { voters: [...opts.voters], learners: [...(opts.learners ?? [])] };
    for (const id of [...opts.voters, ...(opts.learners ?? [])]) {
      const storage = new MemoryStorage();
      storage.applySnapshot({ data: Buffer.from('[]'), metadata: { index: 1, term: 1, confState: cs } });
      this.addMember(id, storage, {}, { confState: cs });
    }
  }

  config(id: number, storage: MemoryStorage, extra: Partial<RaftConfig> = {}): RaftConfig {
    return { id, electionTicks: 10, heartbeatTicks: 1, storage, rng: seeded((this.opts.seed ?? 1) * 1000 + id), ...this.opts.config, ...extra };
  }

  /** Adds (or restarts) a member over storage. */
  addMember(id: number, storage: MemoryStorage, extra: Partial<RaftConfig> = {}, state?: Partial<Member>): Member {
    const m: Member = {
      id,
      raw: createRawNode(this.config(id, storage, extra)),
      storage,
      applied: state?.applied ?? [],
      appliedIndex: state?.appliedIndex ?? storage.firstIndex() - 1,
      confState: state?.confState ?? storage.initialState().confState,
      readStates: [],
      appliedLog: state?.appliedLog ?? [],
    };
    this.members.set(id, m);
    return m;
  }

  /** Crash id (drops its in-memory state) and restart it from its storage. */
  restart(id: number, extra: Partial<RaftConfig> = {}): Member {
    const old = this.get(id);
    // Rebuild the state machine from the snapshot and replay: the restarted node starts from
    // the snapshot and gets the committed entries again (applied not passed).
    const snap = old.storage.snapshot();
    const applied = snap.data.length > 0 ? (JSON.parse(snap.data.toString()) as string[]) : [];
    const appliedIndex = snap.metadata?.index ?? 0;
    const appliedLog = old.appliedLog.filter((e) => e.index <= appliedIndex);
    this.queue = this.queue.filter((m) => m.to !== id);
    return this.addMember(id, old.storage, extra, { applied, appliedIndex, appliedLog });
  }

  get(id: number): Member {
    const m = this.members.get(id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  isolate(id: number): void {
    this.isolated.add(id);
  }

  heal(): void {
    this.isolated.clear();
    this.cuts.clear();
  }

  cut(a: number, b: number): void {
    this.cuts.add(`${a}-${b}`);
    this.cuts.add(`${b}-${a}`);
  }

  private blocked(m: Message): boolean {
    if (this.isolated.has(m.from) || this.isolated.has(m.to)) return true;
    if (this.cuts.has(`${m.from}-${m.to}`)) return true;
    if (this.dropIf?.(m)) return true;
    return this.dropRate > 0 && this.rng() < this.dropRate;
  }

  /** Runs the Ready loop of member id once (if it has a Ready). */
  processReady(id: number): boolean {
    const mem = this.get(id);
    if (!mem.raw.hasReady()) return false;
    const rd = mem.raw.ready();
    // 1. persist
    if (rd.snapshot) mem.storage.applySnapshot(rd.snapshot);
    mem.storage.append(rd.entries);
    if (rd.hardState) mem.storage.setHardState(rd.hardState);
    if (rd.softState?.role === 'leader') {
      const term = mem.raw.status().term;
      this.checkLeaderCompleteness(mem);
      const set = this.leadersByTerm.get(term) ?? new Set<number>();
      set.add(id);
      this.leadersByTerm.set(term, set);
    }
    // 2. send
    for (const m of rd.messages) {
      if (m.to === id) throw new Error(`member ${id} sent a message to itself`);
      this.queue.push(m);
    }
    // 3. apply
    if (rd.snapshot) {
      const md = rd.snapshot.metadata!;
      mem.applied = JSON.parse(rd.snapshot.data.toString()) as string[];
      mem.appliedIndex = md.index;
      mem.confState = md.confState!;
    }
    for (const e of rd.committedEntries) this.applyEntry(mem, e);
    mem.readStates.push(...rd.readStates);
    mem.raw.advance();
    const every = this.opts.snapshotEvery;
    if (every && mem.appliedIndex - (mem.storage.firstIndex() - 1) >= every) {
      mem.storage.createSnapshot(mem.appliedIndex, mem.confState, Buffer.from(JSON.stringify(mem.applied)));
      mem.storage.compact(mem.appliedIndex);
    }
    return true;
  }

  private applyEntry(mem: Member, e: Entry): void {
    if (e.index !== mem.appliedIndex + 1) throw new Error(`member ${mem.id} applies ${e.index} after ${mem.appliedIndex}`);
    mem.appliedIndex = e.index;
    if (e.type === EntryType.ENTRY_CONF_CHANGE) {
      mem.confState = mem.raw.applyConfChange(ConfChange.decode(e.data));
      mem.storage.setConfState(mem.confState);
      mem.appliedLog.push({ index: e.index, term: e.term, data: `conf:${e.data.toString('hex')}` });
    } else {
      if (e.data.length > 0) mem.applied.push(e.data.toString());
      mem.appliedLog.push({ index: e.index, term: e.term, data: e.data.toString() });
    }
  }

  /** Delivers the queued messages once (and what they cause), dropping blocked ones. */
  deliverOnce(): number {
    const q = this.queue;
    this.queue = [];
    if (this.reorder) {
      for (let i = q.length - 1; i > 0; i--) {
        const j = Math.floor(this.rng() * (i + 1));
        [q[i], q[j]] = [q[j], q[i]];
      }
    }
    let n = 0;
    for (const m of q) {
      const to = this.members.get(m.to);
      if (this.blocked(m) || !to) {
        // The transport tells the leader a snapshot did not get through.
        if (m.type === MessageType.MSG_SNAP) this.members.get(m.from)?.raw.reportSnapshot(m.to, false);
        continue;
      }
      to.raw.step(m);
      if (m.type === MessageType.MSG_SNAP) this.members.get(m.from)?.raw.reportSnapshot(m.to, true);
      if (this.dupRate > 0 && this.rng() < this.dupRate) to.raw.step(m);
      n++;
    }
    return n;
  }

  /** Runs Ready loops and deliveries until quiet. */
  stabilize(maxRounds = 1000): void {
    for (let i = 0; i < maxRounds; i++) {
      let busy = false;
      for (const id of this.members.keys()) busy = this.processReady(id) || busy;
      if (this.queue.length > 0) {
        this.deliverOnce();
        busy = true;
      }
      if (!busy) return;
    }
    throw new Error('network did not stabilize');
  }

  tick(id: number, n = 1): void {
    for (let i = 0; i < n; i++) this.get(id).raw.tick();
  }

  /** Ticks every member (not the isolated unless asked) n times, stabilizing after each tick. */
  tickAll(n: number): void {
    for (let i = 0; i < n; i++) {
      for (const m of this.members.values()) m.raw.tick();
      this.stabilize();
    }
  }

  campaign(id: number): void {
    this.get(id).raw.campaign();
    this.stabilize();
  }

  leader(): Member | undefined {
    let best: Member | undefined;
    for (const m of this.members.values()) {
      const st = m.raw.status();
      if (st.role === 'leader' && (!best || st.term > best.raw.status().term)) best = m;
    }
    return best;
  }

  propose(id: number, data: string): void {
    this.get(id).raw.propose(Buffer.from(data));
    this.stabilize();
  }

  /** Every pair of members agrees on the entries both applied (state machine safety). */
  checkStateMachineSafety(): void {
    const byIndex = new Map<number, { term: number; data: string; id: number }>();
    for (const m of this.members.values()) {
      for (const e of m.appliedLog) {
        const other = byIndex.get(e.index);
        if (!other) byIndex.set(e.index, { ...e, id: m.id });
        else if (other.term !== e.term || other.data !== e.data) {
          throw new Error(`members ${other.id} and ${m.id} applied different entries at ${e.index}`);
        }
      }
    }
  }

  /** A new leader's (persisted) log holds every entry any member applied (§5.4 leader completeness). */
  checkLeaderCompleteness(leader: Member): void {
    const st = leader.storage;
    for (const m of this.members.values()) {
      for (const e of m.appliedLog) {
        if (e.index < st.firstIndex()) continue; // covered by the leader's snapshot
        if (e.index > st.lastIndex() || st.term(e.index) !== e.term) {
          throw new Error(`leader ${leader.id} lacks committed entry ${e.index}/${e.term} applied by ${m.id}`);
        }
      }
    }
  }

  /** Two logs holding an entry with the same index and term are identical up to it (§5.3). */
  checkLogMatching(): void {
    const ms = [...this.members.values()];
    for (let i = 0; i < ms.length; i++) {
      for (let j = i + 1; j < ms.length; j++) {
        const a = ms[i].storage;
        const b = ms[j].storage;
        const lo = Math.max(a.firstIndex(), b.firstIndex());
        const hi = Math.min(a.lastIndex(), b.lastIndex());
        let k = hi;
        while (k >= lo && a.term(k) !== b.term(k)) k--;
        if (k < lo) continue;
        const ea = a.entries(lo, k + 1);
        const eb = b.entries(lo, k + 1);
        for (let x = 0; x < ea.length; x++) {
          if (ea[x].term !== eb[x].term || !ea[x].data.equals(eb[x].data)) {
            throw new Error(`logs of ${ms[i].id} and ${ms[j].id} differ at ${lo + x} but match at ${k}`);
          }
        }
      }
    }
  }

  checkElectionSafety(): void {
    for (const [term, ids] of this.leadersByTerm) {
      if (ids.size > 1) throw new Error(`term ${term} had leaders ${[...ids].join(',')}`);
    }
  }
}

export function msgTypes(ms: Message[]): string[] {
  return ms.map((m) => MessageType[m.type]);
}
