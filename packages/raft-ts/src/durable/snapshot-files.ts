/**
 * Snapshots on disk: <dir>/<term:16 hex>-<index:16 hex>.snap = [magic "RTS1"][crc32 u32 LE][raftpb.Snapshot].
 * Written atomically (tmp file, fsync, rename, fsync dir); the newest one whose CRC checks is
 * loaded on start (a bad one is reported and skipped); older ones are pruned.
 */
import { crc32 } from 'node:zlib';
import { mkdir, open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Snapshot } from '../pb/raft/raft.js';
import type { Logger } from '../types.js';
import { fsyncDir, hex16 } from './fsutil.js';

const MAGIC = Buffer.from('RTS1');
const SNAP_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

export class SnapshotCorruptError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`snapshot: ${file} is corrupt: ${reason}`);
    this.name = 'SnapshotCorruptError';
  }
}

export interface SnapshotFilesOptions {
  /** How many snapshot files to keep (default 2). */
  keep?: number;
  fsync?: boolean;
  logger?: Logger;
}

/** writev until every byte is written (a short write is possible on a nearly full disk). */
async function writevAll(fh: FileHandle, bufs: Uint8Array[]): Promise<void> {
  const rest = bufs.filter((b) => b.length);
  while (rest.length) {
    let n = (await fh.writev(rest)).bytesWritten;
    while (rest.length && n >= rest[0].length) n -= rest.shift()!.length;
    if (n > 0) rest[0] = rest[0].subarray(n);
  }
}

export class SnapshotFiles {
  private readonly keep: number;
  private readonly sync: boolean;
  private readonly logger: Logger | undefined;

  constructor(
    readonly dir: string,
    opts: SnapshotFilesOptions = {},
  ) {
    this.keep = Math.max(1, opts.keep ?? 2);
    this.sync = opts.fsync ?? true;
    this.logger = opts.logger;
  }

  /** Writes the snapshot durably; resolves with its path once it survives a crash. */
  async save(snap: Snapshot): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const meta = snap.metadata;
    if (!meta) throw new Error('snapshot: no metadata');
    const name = `${hex16(meta.term)}-${hex16(meta.index)}.snap`;
    const body = Snapshot.encode(snap).finish();
    const head = Buffer.alloc(8);
    MAGIC.copy(head, 0);
    head.writeUInt32LE(crc32(body), 4);
    const tmp = join(this.dir, `${name}.tmp`);
    const path = join(this.dir, name);
    try {
      const fh = await open(tmp, 'w');
      try {
        await writevAll(fh, [head, body]);
        if (this.sync) await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (e) {
      // A full disk (or a failing one): leave no partial file behind to hold the space.
      await unlink(tmp).catch(() => undefined);
      if (e && typeof e === 'object' && !(e as NodeJS.ErrnoException).path) (e as NodeJS.ErrnoException).path = tmp;
      throw e;
    }
    if (this.sync) await fsyncDir(this.dir);
    return path;
  }

  /** Names of the snapshot files, newest first (by index, then term). */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const snaps = names
      .map((n) => SNAP_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ name: m[0], term: parseInt(m[1], 16), index: parseInt(m[2], 16) }));
    snaps.sort((a, b) => b.index - a.index || b.term - a.term);
    return snaps.map((s) => join(this.dir, s.name));
  }

  /** Reads and checks one snapshot file. */
  async read(path: string): Promise<Snapshot> {
    const buf = await readFile(path);
    if (buf.length < 8 || !buf.subarray(0, 4).equals(MAGIC)) throw new SnapshotCorruptError(path, 'bad header');
    const body = buf.subarray(8);
    if (crc32(body) !== buf.readUInt32LE(4)) throw new SnapshotCorruptError(path, 'crc mismatch');
    try {
      return Snapshot.decode(body);
    } catch (e) {
      throw new SnapshotCorruptError(path, `undecodable: ${String(e)}`);
    }
  }

  /** The newest snapshot that checks, skipping (and reporting) corrupt ones; undefined if none. */
  async loadNewest(): Promise<Snapshot | undefined> {
    for (const path of await this.list()) {
      try {
        return await this.read(path);
      } catch (e) {
        if (!(e instanceof SnapshotCorruptError)) throw e;
        this.logger?.error('snapshot: skipping a corrupt snapshot file, trying an older one', { file: path, error: e.message });
      }
    }
    return undefined;
  }

  /** Deletes all but the newest `keep` snapshot files, and stray tmp files. */
  async prune(): Promise<number> {
    const files = await this.list();
    let removed = 0;
    for (const path of files.slice(this.keep)) {
      await unlink(path);
      removed++;
    }
    for (const n of await readdir(this.dir)) {
      if (n.endsWith('.snap.tmp')) {
        await unlink(join(this.dir, n)).catch(() => undefined);
        removed++;
      }
    }
    if (removed && this.sync) await fsyncDir(this.dir);
    return removed;
  }
}
