/**
 * The write-ahead log: Raft's hard state and log entries, in segment files.
 *
 *   <dir>/<seq:16 hex>-<firstIndex:16 hex>.wal     segments, cut at ~segmentBytes
 *   record = [len u32 LE][crc32 u32 LE][type u8][payload: len bytes]   crc32 over type + payload
 *
 * Record types: an entry (raftpb.Entry), the hard state (raftpb.HardState), and a snapshot marker
 * (a snapshot at index/term is durable in the snapshot files: entries up to it are not needed;
 * an "install" marker also drops every entry before it, as a follower does when it installs a
 * snapshot sent by the leader). Each new segment starts with the current hard state and snapshot
 * marker, so segments older than a snapshot can be deleted (releaseTo).
 *
 * Group commit: save() only queues encoded records; one writer takes everything queued since its
 * last write and issues one write() and one fdatasync() for all of it. The driver awaits save()
 * before sending any message that depends on it.
 *
 * Recovery: a record cut short, or with a bad CRC, at the very end of the last segment is a torn
 * write (never acknowledged: it was not fsynced) and is truncated with a warning. Anything else
 * that does not parse refuses to start with WalCorruptError naming the file and byte offset.
 */
import { crc32 } from 'node:zlib';
import { mkdir, open, readdir, readFile, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Entry, HardState } from '../pb/raft/raft.js';
import type { Logger } from '../types.js';
import { fsyncDir, hex16 } from './fsutil.js';
import { retryDiskWrites, type DiskRetry } from './disk-errors.js';

export const REC_ENTRY = 1;
export const REC_HARD_STATE = 2;
export const REC_SNAPSHOT = 3;
const HEADER = 9;
const MAX_RECORD = 256 * 1024 * 1024;
const SEGMENT_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

/** A record in the middle of the log does not parse: the WAL refuses to start. */
export class WalCorruptError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`wal: corrupt record in ${file} at byte offset ${offset}: ${reason}; refusing to start (restore this member from a peer)`);
    this.name = 'WalCorruptError';
  }
}

export interface SnapshotMarker {
  index: number;
  term: number;
}

export interface WalState {
  hardState: HardState | undefined;
  /** The newest snapshot marker, if any; entries start after it. */
  snapshot: SnapshotMarker | undefined;
  /** Contiguous entries after the snapshot marker, conflicting suffixes already resolved. */
  entries: Entry[];
}

export interface WalOptions {
  /** Cut a new segment once the current one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** fdatasync on save (default true; false only for tests and benchmarks of the rest). */
  fsync?: boolean;
  logger?: Logger;
  /**
   * Survive write failures of the disk (full, out of quota, failing: disk-errors.ts): a save then
   * waits (its batch rolled back and written again with backoff) instead of failing the WAL for
   * good. Without it, any failed write or fsync fails this and every later save.
   */
  retry?: DiskRetry;
}

interface Segment {
  seq: number;
  firstIndex: number;
  path: string;
  /** Highest entry index written to this segment (0 when none). */
  maxIndex: number;
}

interface Pending {
  buf: Buffer;
  sync: boolean;
  maxIndex: number;
  /** The WAL's state once this record is written. */
  after: Written;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Written {
  hardState: HardState | undefined;
  marker: SnapshotMarker | undefined;
  lastIndex: number;
}

export function encodeRecord(type: number, payload: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(HEADER + payload.length);
  buf.writeUInt32LE(payload.length, 0);
  buf[8] = type;
  buf.set(payload, HEADER);
  buf.writeUInt32LE(crc32(buf.subarray(8)), 4);
  return buf;
}

function encodeMarker(m: SnapshotMarker, install: boolean): Uint8Array {
  const b = Buffer.alloc(17);
  b[0] = install ? 1 : 0;
  b.writeDoubleLE(m.index, 1);
  b.writeDoubleLE(m.term, 9);
  return b;
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

export class Wal {
  private pending: Pending[] = [];
  private writing = false;
  private closed = false;
  private failed: unknown;
  /** A failed write may have left bytes after `size` (see writeBatch). */
  private dirty = false;
  /** State as of everything saved (queued), and as of everything written to the file. */
  private queued: Written;
  private written: Written;
  /** Counters for tests and benchmarks. */
  readonly stats = { writes: 0, fsyncs: 0, records: 0 };

  private constructor(
    private readonly dir: string,
    private segments: Segment[],
    private fh: FileHandle,
    private size: number,
    private readonly segmentBytes: number,
    private readonly sync: boolean,
    private readonly logger: Logger | undefined,
    state: WalState,
    private readonly retry: DiskRetry | undefined,
  ) {
    const lastIndex = state.entries.length ? state.entries[state.entries.length - 1].index : (state.snapshot?.index ?? 0);
    this.queued = { hardState: state.hardState, marker: state.snapshot, lastIndex };
    this.written = { ...this.queued };
  }

  /** Opens (creating if needed) the WAL in dir and replays it. */
  static async open(dir: string, opts: WalOptions = {}): Promise<{ wal: Wal; state: WalState }> {
    await mkdir(dir, { recursive: true });
    const names = (await readdir(dir)).filter((n) => SEGMENT_RE.test(n)).sort();
    const segments: Segment[] = names.map((name) => {
      const m = SEGMENT_RE.exec(name)!;
      return { seq: parseInt(m[1], 16), firstIndex: parseInt(m[2], 16), path: join(dir, name), maxIndex: 0 };
    });
    const state: WalState = { hardState: undefined, snapshot: undefined, entries: [] };
    let tailSize = 0;
    for (let s = 0; s < segments.length; s++) {
      tailSize = await replaySegment(segments[s], s === segments.length - 1, state, opts.logger);
    }
    if (segments.length === 0) {
      const seg: Segment = { seq: 0, firstIndex: 1, path: join(dir, `${hex16(0)}-${hex16(1)}.wal`), maxIndex: 0 };
      const fh = await open(seg.path, 'a');
      await fh.sync();
      await fsyncDir(dir);
      segments.push(seg);
      tailSize = 0;
      const wal = new Wal(dir, segments, fh, tailSize, opts.segmentBytes ?? 64 * 1024 * 1024, opts.fsync ?? true, opts.logger, state, opts.retry);
      return { wal, state };
    }
    const fh = await open(segments[segments.length - 1].path, 'a');
    const wal = new Wal(dir, segments, fh, tailSize, opts.segmentBytes ?? 64 * 1024 * 1024, opts.fsync ?? true, opts.logger, state, opts.retry);
    return { wal, state };
  }

  /**
   * Appends the hard state (if given) and entries. Resolves once written, and fsynced when sync
   * is set (Ready.mustSync). Everything queued while a write is in flight goes in the next write
   * with one fsync (group commit).
   */
  save(hardState: HardState | undefined, entries: readonly Entry[], sync = true): Promise<void> {
    const bufs: Buffer[] = [];
    let maxIndex = 0;
    for (const e of entries) {
      bufs.push(encodeRecord(REC_ENTRY, Entry.encode(e).finish()));
      maxIndex = e.index;
    }
    if (hardState) bufs.push(encodeRecord(REC_HARD_STATE, HardState.encode(hardState).finish()));
    if (bufs.length === 0) return Promise.resolve();
    this.queued = { ...this.queued, hardState: hardState ?? this.queued.hardState, lastIndex: entries.length ? maxIndex : this.queued.lastIndex };
    return this.enqueue(Buffer.concat(bufs), sync, maxIndex);
  }

  /**
   * Records that a snapshot at index/term is durable (call after the snapshot file is fsynced).
   * install: the snapshot replaces the whole log (a follower installing the leader's snapshot).
   */
  saveSnapshot(m: SnapshotMarker, install: boolean): Promise<void> {
    const lastIndex = install ? m.index : Math.max(this.queued.lastIndex, m.index);
    this.queued = { ...this.queued, marker: { index: m.index, term: m.term }, lastIndex };
    return this.enqueue(encodeRecord(REC_SNAPSHOT, encodeMarker(m, install)), true, 0);
  }

  /** Deletes whole segments that hold only entries ≤ index (a durable snapshot covers them). */
  async releaseTo(index: number): Promise<number> {
    let released = 0;
    while (this.segments.length > 1) {
      const first = this.segments[0];
      const next = this.segments[1];
      // Entries of `first` are all below next.firstIndex (a segment is cut at lastIndex + 1).
      if (next.firstIndex - 1 > index || first.maxIndex > index) break;
      await unlink(first.path);
      this.segments.shift();
      released++;
    }
    if (released) await fsyncDir(this.dir);
    return released;
  }

  segmentFiles(): string[] {
    return this.segments.map((s) => s.path);
  }

  /** Waits for queued writes, then closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.enqueue(Buffer.alloc(0), true, 0).catch(() => undefined);
    this.closed = true;
    await this.fh.close();
  }

  private enqueue(buf: Buffer, sync: boolean, maxIndex: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error('wal: closed'));
    if (this.failed) return Promise.reject(this.failed instanceof Error ? this.failed : new Error('wal: an earlier write failed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ buf, sync, maxIndex, after: this.queued, resolve, reject });
      if (!this.writing) void this.writeLoop();
    });
  }

  private async writeLoop(): Promise<void> {
    this.writing = true;
    try {
      while (this.pending.length) {
        let batch = this.pending;
        this.pending = [];
        try {
          if (this.retry) {
            await retryDiskWrites(this.retry, (e) => e.path ?? this.segments[this.segments.length - 1].path, () => {
              // Saves queued while the disk refused writes go with the batch that waits.
              if (this.pending.length) batch = batch.concat(this.pending.splice(0));
              return this.writeBatch(batch);
            });
          } else await this.writeBatch(batch);
          for (const p of batch) p.resolve();
        } catch (e) {
          // Not a disk error we retry (or the retries were aborted): the file is in an unknown
          // state; fail this and every later save.
          this.failed = e;
          this.logger?.error('wal: write failed; the WAL refuses further writes', { error: String(e) });
          for (const p of batch) p.reject(e);
          for (const p of this.pending.splice(0)) p.reject(e);
        }
      }
    } finally {
      this.writing = false;
    }
  }

  /**
   * One write() and at most one fdatasync() for a batch. A failed attempt leaves `dirty` set: its
   * bytes may be partly in the file, or in pages whose writeback failed (which the kernel may
   * since have marked clean, so an fsync would wrongly succeed); the next attempt truncates the
   * segment back to its last durable size and writes the whole batch again from memory.
   */
  private async writeBatch(batch: Pending[]): Promise<void> {
    if (this.dirty) {
      await this.fh.truncate(this.size);
      if (this.sync) await this.fh.datasync();
      this.dirty = false;
    }
    const buf = batch.length === 1 ? batch[0].buf : Buffer.concat(batch.map((p) => p.buf));
    if (buf.length && this.size > 0 && this.size + buf.length > this.segmentBytes) await this.cut();
    this.dirty = true;
    if (buf.length) await this.writeAll(buf);
    if (this.sync && batch.some((p) => p.sync)) {
      await this.fh.datasync();
      this.stats.fsyncs++;
    }
    this.dirty = false;
    if (buf.length) {
      this.size += buf.length;
      this.stats.writes++;
      this.stats.records += batch.length;
      const seg = this.segments[this.segments.length - 1];
      for (const p of batch) if (p.maxIndex > seg.maxIndex) seg.maxIndex = p.maxIndex;
    }
    this.written = batch[batch.length - 1].after;
  }

  private writeAll(buf: Buffer): Promise<void> {
    return writeAllTo(this.fh, buf);
  }

  /**
   * Starts a new segment headed by the current hard state and snapshot marker. The switch happens
   * only once the new file is durable: a failure (a full disk) leaves the current segment in use.
   */
  private async cut(): Promise<void> {
    if (this.sync) await this.fh.datasync();
    const last = this.segments[this.segments.length - 1];
    const seq = last.seq + 1;
    const firstIndex = this.written.lastIndex + 1;
    const seg: Segment = { seq, firstIndex, path: join(this.dir, `${hex16(seq)}-${hex16(firstIndex)}.wal`), maxIndex: 0 };
    const fh = await open(seg.path, 'a');
    const head: Buffer[] = [];
    if (this.written.marker) head.push(encodeRecord(REC_SNAPSHOT, encodeMarker(this.written.marker, false)));
    if (this.written.hardState) head.push(encodeRecord(REC_HARD_STATE, HardState.encode(this.written.hardState).finish()));
    const b = Buffer.concat(head);
    try {
      await writeAllTo(fh, b);
      if (this.sync) await fh.datasync();
      await fsyncDir(this.dir);
    } catch (e) {
      await fh.close().catch(() => undefined);
      await unlink(seg.path).catch(() => undefined);
      throw e;
    }
    await this.fh.close().catch(() => undefined);
    this.fh = fh;
    this.segments.push(seg);
    this.size = b.length;
    this.logger?.debug('wal: new segment', { file: seg.path });
  }
}

async function writeAllTo(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

/** Replays one segment into state; returns the (possibly truncated) size of the file. */
async function replaySegment(seg: Segment, isLast: boolean, state: WalState, logger: Logger | undefined): Promise<number> {
  const buf = await readFile(seg.path);
  let off = 0;
  while (off < buf.length) {
    const rest = buf.length - off;
    let problem: string | undefined;
    let badType = false;
    let end = buf.length;
    if (rest < HEADER) {
      problem = `record header cut short (${rest} of ${HEADER} bytes)`;
    } else {
      const len = buf.readUInt32LE(off);
      end = off + HEADER + len;
      if (len > MAX_RECORD) problem = `record length ${len} is impossible`;
      else if (end > buf.length) problem = `record cut short (${rest - HEADER} of ${len} payload bytes)`;
      else if (crc32(buf.subarray(off + 8, end)) !== buf.readUInt32LE(off + 4)) problem = 'crc mismatch';
      else if (buf[off + 8] < REC_ENTRY || buf[off + 8] > REC_SNAPSHOT) {
        problem = `unknown record type ${buf[off + 8]}`;
        badType = true;
      }
    }
    if (problem) {
      // A torn write: only at the very end of the last segment (the rest of the file is this
      // record, or zeros the file system left after it).
      const tornTail = isLast && (end >= buf.length || allZero(buf, end)) && !badType;
      if (!tornTail) throw new WalCorruptError(seg.path, off, problem);
      logger?.warn('wal: torn tail truncated (an unfinished write that was never acknowledged)', {
        file: seg.path,
        offset: off,
        droppedBytes: buf.length - off,
        reason: problem,
      });
      await truncate(seg.path, off);
      const fh = await open(seg.path, 'r+');
      await fh.sync();
      await fh.close();
      return off;
    }
    const type = buf[off + 8];
    const payload = buf.subarray(off + HEADER, end);
    try {
      applyRecord(type, payload, state, seg);
    } catch (e) {
      if (e instanceof WalCorruptError) throw new WalCorruptError(seg.path, off, e.reason);
      throw new WalCorruptError(seg.path, off, `undecodable record: ${String(e)}`);
    }
    off = end;
  }
  return buf.length;
}

function applyRecord(type: number, payload: Buffer, state: WalState, seg: Segment): void {
  switch (type) {
    case REC_ENTRY: {
      const e = Entry.decode(payload);
      const ents = state.entries;
      const base = state.snapshot?.index ?? 0;
      if (e.index <= base) return; // covered by the snapshot
      // The first entry need not follow the marker: segments behind a newer snapshot may have been
      // released, and the marker at a segment's head is the one current when it was cut. The
      // driver checks that the log continues the newest snapshot file.
      if (ents.length > 0) {
        const first = ents[0].index;
        const last = ents[ents.length - 1].index;
        if (e.index > last + 1) throw new WalCorruptError('', 0, `gap: entry ${e.index} after ${last}`);
        // A conflicting suffix was overwritten by a new leader: drop the old entries from e.index.
        if (e.index <= last) ents.length = Math.max(0, e.index - first);
      }
      ents.push(e);
      if (e.index > seg.maxIndex) seg.maxIndex = e.index;
      return;
    }
    case REC_HARD_STATE:
      state.hardState = HardState.decode(payload);
      return;
    case REC_SNAPSHOT: {
      if (payload.length !== 17) throw new WalCorruptError('', 0, 'bad snapshot marker');
      const install = payload[0] === 1;
      const m = { index: payload.readDoubleLE(1), term: payload.readDoubleLE(9) };
      if (install) {
        // The leader's snapshot replaces the whole log.
        state.entries = [];
        state.snapshot = m;
        return;
      }
      // A compaction point (or a segment head repeating an older one): entries it covers go.
      const ents = state.entries;
      if (ents.length && m.index >= ents[0].index) state.entries = ents.slice(Math.min(ents.length, m.index - ents[0].index + 1));
      if (!state.snapshot || m.index >= state.snapshot.index) state.snapshot = m;
      return;
    }
  }
}
