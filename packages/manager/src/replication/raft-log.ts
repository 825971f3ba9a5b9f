import { SwarmError, ErrorCode, ErrorReason, failedPrecondition, describeError, outcomeUnknown, noQuorum } from '@swarmd/common/errors';
import { metrics, secondsSince, timed } from '@swarmd/common/metrics';
import type { LogStateMachine, ReplicatedLog } from './replicated-log.js';
import { raceAbort, Leadership, ReadBatcher } from './log-kit.js';

/**
 * What the adapter needs of raft-ts's RaftNode (structurally: this package does not import
 * raft-ts). RaftNode.propose resolves with the state machine's apply result once the entry is
 * applied locally; it rejects with NotLeaderError, TimeoutError or RaftNodeStoppedError.
 */
export interface RaftNodeLike {
  propose(data: Uint8Array): Promise<unknown>;
  /** ReadIndex: resolves once applied >= the read index; NotLeaderError, TimeoutError, DiskWriteError. */
  linearizableRead(): Promise<void>;
  readonly isLeader: boolean;
  on(event: 'leader-change', listener: (c: { leaderId: number; role: string }) => void): unknown;
  off(event: 'leader-change', listener: (c: { leaderId: number; role: string }) => void): unknown;
}

/** raft-ts's StateMachine: restore gets no index (the store's snapshot carries its version). */
export interface RaftStateMachine {
  apply(data: Uint8Array, index: number): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

/**
 * The store's ReplicatedLog over a raft-ts RaftNode. Wiring (the node needs its state machine
 * at construction, the store needs its log):
 *
 *   const log = new RaftLog();
 *   const store = createStore({ log });                       // attaches the store
 *   const node = await RaftNode.start({ ..., stateMachine: log.stateMachine });
 *   log.connect(node);                                         // proposals + leader changes
 */
export class RaftLog implements ReplicatedLog {
  private sm: LogStateMachine | undefined;
  private node: RaftNodeLike | undefined;
  private readonly leadership = new Leadership();
  private readonly reads = new ReadBatcher(() => this.readRound());
  private readonly onChange = (c: { role: string }): void => this.setLeader(c.role === 'leader');

  /** Give this to RaftNode as its stateMachine. apply returns the index (propose resolves with it). */
  readonly stateMachine: RaftStateMachine = {
    apply: (data, index) => {
      this.attached().apply(data, index);
      return index;
    },
    snapshot: () => this.attached().snapshot(),
    restore: (data) => this.attached().restore(data),
  };

  attach(sm: LogStateMachine): void {
    if (this.sm) throw failedPrecondition('log: a state machine is already attached');
    this.sm = sm;
  }

  private attached(): LogStateMachine {
    if (!this.sm) throw failedPrecondition('log: raft applied an entry before the store attached');
    return this.sm;
  }

  connect(node: RaftNodeLike): void {
    if (this.node) throw failedPrecondition('log: already connected to a raft node');
    this.node = node;
    node.on('leader-change', this.onChange);
    this.setLeader(node.isLeader);
  }

  /** Stops following the node's leader changes (e.g. before node.stop()). */
  disconnect(): void {
    this.node?.off('leader-change', this.onChange);
    this.node = undefined;
    this.setLeader(false);
  }

  async propose(data: Uint8Array, signal?: AbortSignal): Promise<number> {
    const node = this.node;
    if (!node) throw new SwarmError(ErrorCode.UNAVAILABLE, 'not the leader (raft is not running)');
    if (signal?.aborted) throw new SwarmError(ErrorCode.CANCELLED, 'proposal cancelled', { cause: signal.reason });
    const t0 = performance.now();
    const proposal = node.propose(data).then(
      (r) => {
        metrics.raftProposalSeconds.observe({ result: 'ok' }, secondsSince(t0));
        return typeof r === 'number' ? r : 0;
      },
      (err: unknown) => {
        metrics.raftProposalSeconds.observe({ result: 'error' }, secondsSince(t0));
        throw raftError(err);
      },
    );
    if (!signal) return proposal;
    return raceAbort(proposal, signal);
  }

  linearizableRead(): Promise<void> {
    return this.reads.read();
  }

  /** ReadIndex rounds started (concurrent reads share one). */
  get readRounds(): number {
    return this.reads.rounds;
  }

  private async readRound(): Promise<void> {
    const node = this.node;
    if (!node) throw new SwarmError(ErrorCode.UNAVAILABLE, 'not the leader (raft is not running): the read was not answered', { details: { reason: ErrorReason.NO_LEADER } });
    try {
      await timed(metrics.storeLinearizableReadSeconds, () => node.linearizableRead());
    } catch (err) {
      throw raftReadError(err);
    }
  }

  isLeader(): boolean {
    return this.leadership.get();
  }

  onLeaderChange(cb: (isLeader: boolean) => void): () => void {
    return this.leadership.on(cb);
  }

  private setLeader(leader: boolean): void {
    this.leadership.set(leader);
  }
}

/**
 * "this manager's state disk is full", from raft-ts's DiskWriteError, which follows in the message
 * chain with the file and the errno ("raft: cannot write /…/raft/wal/…wal: the disk is full (ENOSPC: …)").
 */
function stateDisk(e: Error): string {
  const { code } = e as Error & { code?: string };
  return `this manager's state disk ${diskFull(code) ? 'is full' : `fails writes (${code ?? 'EIO'})`}`;
}

const diskFull = (code: string | undefined): boolean => code === 'ENOSPC' || code === 'EDQUOT';

/** A manager's disk trouble (a raft-ts DiskWriteError) in a few words, as `node ls` shows it: "state disk full". */
export function stateDiskProblem(e: Error): string {
  const { code } = e as Error & { code?: string };
  return diskFull(code) ? 'state disk full' : `state disk fails writes (${code ?? 'EIO'})`;
}

/**
 * A failed ReadIndex round as a SwarmError, all UNAVAILABLE and nothing done: NotLeaderError
 * (leadership moved, or this member stepped down while the round ran: LEADER_CHANGED, ask again),
 * TimeoutError (no quorum confirmed the leadership in time: cut off from the other managers,
 * NO_QUORUM, ask another), DiskWriteError (STATE_DISK_UNWRITABLE), RaftNodeStoppedError.
 */
function raftReadError(err: unknown): SwarmError {
  const name = err instanceof Error ? err.name : '';
  switch (name) {
    case 'NotLeaderError':
      return new SwarmError(ErrorCode.UNAVAILABLE, 'this manager is no longer the leader (it stepped down: cut off from a majority of the managers, or another was elected); the read was not answered: ask again', {
        cause: err,
        details: { reason: ErrorReason.LEADER_CHANGED, leaderId: (err as { leaderId?: number }).leaderId ?? 0 },
      });
    case 'TimeoutError':
      return noQuorum('this manager could not confirm with a majority of the managers that it still leads (it may be cut off from them); the read was not answered: ask another manager', { cause: err });
    case 'DiskWriteError':
      return new SwarmError(ErrorCode.UNAVAILABLE, `${stateDisk(err as Error)}; the read was not answered (ask another manager)`, { cause: err, details: { reason: ErrorReason.STATE_DISK_UNWRITABLE } });
    case 'RaftNodeStoppedError':
      return new SwarmError(ErrorCode.UNAVAILABLE, 'this manager is stopping; the read was not answered: ask another manager', { cause: err });
    default:
      return err instanceof SwarmError ? err : new SwarmError(ErrorCode.UNAVAILABLE, `linearizable read failed: ${describeError(err)}`, { cause: err });
  }
}

/**
 * raft-ts errors as SwarmErrors, all UNAVAILABLE, each with the reason a client acts on:
 * NotLeaderError (refused before it was proposed: LEADER_CHANGED, nothing was done);
 * OutcomeUnknownError, TimeoutError, RaftNodeStoppedError (proposed, not known to be applied:
 * OUTCOME_UNKNOWN); DiskWriteError (the state disk is full or failing, refused before it was
 * proposed: STATE_DISK_UNWRITABLE). Raft member ids are left out of the words (they name no node a
 * user knows).
 */
function raftError(err: unknown): SwarmError {
  const name = err instanceof Error ? err.name : '';
  const msg = describeError(err);
  switch (name) {
    case 'NotLeaderError':
      return new SwarmError(ErrorCode.UNAVAILABLE, 'this manager is no longer the leader (leadership moved); the write was not applied: ask again', {
        cause: err,
        details: { reason: ErrorReason.LEADER_CHANGED, leaderId: (err as { leaderId?: number }).leaderId ?? 0 },
      });
    case 'OutcomeUnknownError': {
      const disk = (err as Error).cause;
      if (disk instanceof Error && disk.name === 'DiskWriteError') {
        return outcomeUnknown(`${stateDisk(disk)}: it refused the write while it was being committed, which may or may not have been applied`, { cause: err });
      }
      return outcomeUnknown('this manager lost the leadership while the write was being committed: it may or may not have been applied', { cause: err });
    }
    case 'DiskWriteError':
      return new SwarmError(ErrorCode.UNAVAILABLE, `${stateDisk(err as Error)}; the write was not applied (free space on it and the manager resumes on its own, no restart needed; or ask another manager)`, {
        cause: err,
        details: { reason: ErrorReason.STATE_DISK_UNWRITABLE },
      });
    case 'TimeoutError':
      return outcomeUnknown('the write was not committed in time (the managers may have lost their quorum): it may or may not have been applied', { cause: err });
    case 'RaftNodeStoppedError':
      return outcomeUnknown('this manager is stopping: the write may or may not have been applied', { cause: err });
    default:
      return err instanceof SwarmError ? err : new SwarmError(ErrorCode.UNAVAILABLE, `proposal failed: ${msg}`, { cause: err });
  }
}
