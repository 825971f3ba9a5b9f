/**
 * A content-addressed blob store, after containerd's local store: blobs live at
 * `<root>/content/blobs/sha256/<hex>`, each written once. A writer streams into
 * `<root>/content/ingest/<ref>-<random>`, checks size and digest on commit and renames the file
 * into place atomically; a failed or aborted write leaves nothing under blobs/.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { SwarmError, ErrorCode, wrapError } from '@swarmd/common/errors';
import { assertDigest, digestHex, newDigester, type BlobWriter, type Digest } from '@swarmd/registry';
import { SingleFlight } from './single-flight.js';

export interface ContentInfo {
  digest: Digest;
  size: number;
  /** ms since epoch of the blob's commit. */
  committedAt: number;
}

/** What readers of content need (unpack, push): nothing that writes. */
export interface ContentProvider {
  info(d: Digest): Promise<ContentInfo>;
  /** A stream of the blob; NOT_FOUND when absent. */
  read(d: Digest): Promise<Readable>;
  readAll(d: Digest): Promise<Buffer>;
}

/** A write into the store; the registry client downloads through it (BlobWriter). */
export interface ContentWriter extends BlobWriter {
  /**
   * Verifies size (when given) and digest, then moves the blob into place. A blob already in
   * the store is not an error: the new copy is dropped. Mismatch → DATA_LOSS, nothing kept.
   */
  commit(size?: number): Promise<ContentInfo>;
}

export interface ContentStore extends ContentProvider {
  /**
   * Starts a write. `expected` is the digest the bytes must have; with `undefined` the blob is
   * stored under the digest it turns out to have (imports of content that names no digest).
   */
  writer(ref: string, expected: Digest | undefined): Promise<ContentWriter>;
  exists(d: Digest): Promise<boolean>;
  delete(d: Digest): Promise<void>;
  list(): Promise<ContentInfo[]>;
  /** Writes a whole buffer through a writer. */
  put(data: Buffer, expected?: Digest): Promise<ContentInfo>;
  /**
   * Makes sure the blob `d` is in the store, running `fetch` (which must write it) at most once
   * at a time per digest in this process: concurrent callers share one download.
   */
  ensure(d: Digest, fetch: () => Promise<void>): Promise<'exists' | 'fetched'>;
  /** Removes leftovers of interrupted writes. */
  cleanIngest(): Promise<number>;
  readonly root: string;
}

// One map per process so that two store objects on the same root still share downloads.
const flights = new SingleFlight<'exists' | 'fetched'>();

export class LocalContentStore implements ContentStore {
  readonly root: string;
  private readonly blobs: string;
  private readonly ingest: string;
  private readonly activeIngests = new Set<string>();

  constructor(runtimeRoot: string) {
    this.root = join(runtimeRoot, 'content');
    this.blobs = join(this.root, 'blobs', 'sha256');
    this.ingest = join(this.root, 'ingest');
  }

  blobPath(d: Digest): string {
    return join(this.blobs, digestHex(d));
  }

  async init(): Promise<void> {
    await mkdir(this.blobs, { recursive: true });
    await mkdir(this.ingest, { recursive: true });
  }

  async info(d: Digest): Promise<ContentInfo> {
    try {
      const st = await stat(this.blobPath(d));
      return { digest: d, size: st.size, committedAt: st.mtimeMs };
    } catch (err) {
      throw this.missing(d, err);
    }
  }

  async exists(d: Digest): Promise<boolean> {
    try {
      await stat(this.blobPath(d));
      return true;
    } catch {
      return false;
    }
  }

  async read(d: Digest): Promise<Readable> {
    await this.info(d);
    return createReadStream(this.blobPath(d));
  }

  async readAll(d: Digest): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(d));
    } catch (err) {
      throw this.missing(d, err);
    }
  }

  async delete(d: Digest): Promise<void> {
    try {
      await unlink(this.blobPath(d));
    } catch (err) {
      throw this.missing(d, err);
    }
  }

  async list(): Promise<ContentInfo[]> {
    const names = await readdir(this.blobs).catch(() => [] as string[]);
    const out: ContentInfo[] = [];
    for (const n of names) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      const st = await stat(join(this.blobs, n)).catch(() => undefined);
      if (st) out.push({ digest: `sha256:${n}`, size: st.size, committedAt: st.mtimeMs });
    }
    return out;
  }

  async put(data: Buffer, expected?: Digest): Promise<ContentInfo> {
    if (expected !== undefined && (await this.exists(expected))) return this.info(expected);
    const w = await this.writer('put', expected);
    try {
      await w.write(data);
      return await w.commit(data.length);
    } finally {
      await w.abort();
    }
  }

  ensure(d: Digest, fetch: () => Promise<void>): Promise<'exists' | 'fetched'> {
    assertDigest(d);
    return flights.do(`${this.root}\0${d}`, async () => {
      if (await this.exists(d)) return 'exists';
      await fetch();
      if (!(await this.exists(d))) throw new SwarmError(ErrorCode.INTERNAL, `content ${d}: fetch finished but the blob is not in the store`);
      return 'fetched';
    });
  }

  async cleanIngest(): Promise<number> {
    const names = await readdir(this.ingest).catch(() => [] as string[]);
    let n = 0;
    for (const name of names) {
      if (this.activeIngests.has(name)) continue;
      await rm(join(this.ingest, name), { force: true });
      n++;
    }
    return n;
  }

  async writer(ref: string, expected: Digest | undefined): Promise<ContentWriter> {
    if (expected !== undefined) assertDigest(expected, 'expected digest');
    await this.init();
    const name = `${ref.replace(/[^a-zA-Z0-9_.-]/g, '_').slice(0, 80)}-${randomBytes(6).toString('hex')}`;
    const tmp = join(this.ingest, name);
    this.activeIngests.add(name);
    const file = createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    const opened = new Promise<void>((res, rej) => {
      file.once('open', () => res());
      file.once('error', rej);
    });
    try {
      await opened;
    } catch (err) {
      this.activeIngests.delete(name);
      throw wrapError(ErrorCode.INTERNAL, `content: cannot open ingest file ${tmp}`, err);
    }
    return new Writer(this, tmp, name, expected, file);
  }

  /** @internal */
  async finish(tmp: string, name: string, digest: Digest): Promise<ContentInfo> {
    try {
      const dst = this.blobPath(digest);
      if (await this.exists(digest)) {
        await rm(tmp, { force: true });
      } else {
        await rename(tmp, dst);
      }
      return await this.info(digest);
    } finally {
      this.activeIngests.delete(name);
    }
  }

  /** @internal */
  async drop(tmp: string, name: string): Promise<void> {
    await rm(tmp, { force: true });
    this.activeIngests.delete(name);
  }

  private missing(d: Digest, err: unknown): SwarmError {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT') return new SwarmError(ErrorCode.NOT_FOUND, `content ${d}: not found`, { cause: err });
    return wrapError(ErrorCode.INTERNAL, `content ${d}`, err);
  }
}

class Writer implements ContentWriter {
  private readonly digester = newDigester();
  private written = 0;
  private done = false;

  constructor(
    private readonly store: LocalContentStore,
    private readonly tmp: string,
    private readonly name: string,
    private readonly expected: Digest | undefined,
    private readonly file: WriteStream,
  ) {}

  get offset(): number {
    return this.written;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.done) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, 'content writer: write after commit or abort');
    this.digester.hash.update(chunk);
    this.written += chunk.length;
    if (!this.file.write(chunk)) {
      await new Promise<void>((res, rej) => {
        const onErr = (e: Error) => rej(e);
        this.file.once('error', onErr);
        this.file.once('drain', () => {
          this.file.off('error', onErr);
          res();
        });
      });
    }
  }

  private async close(): Promise<void> {
    if (this.file.closed) return;
    await new Promise<void>((res, rej) => {
      this.file.end((err?: Error | null) => (err ? rej(err) : res()));
    });
  }

  async commit(size?: number): Promise<ContentInfo> {
    if (this.done) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, 'content writer: already committed or aborted');
    this.done = true;
    const got = this.digester.digest();
    try {
      await this.close();
      if (size !== undefined && size !== this.written) {
        throw new SwarmError(
          ErrorCode.DATA_LOSS,
          `content ${this.expected ?? got}: size mismatch: got ${this.written} bytes, expected ${size}`,
          { details: { digest: this.expected ?? got, size: this.written, expectedSize: size } },
        );
      }
      if (this.expected !== undefined && got !== this.expected) {
        throw new SwarmError(ErrorCode.DATA_LOSS, `content ${this.expected}: digest mismatch: the data has digest ${got}`, {
          details: { digest: this.expected, actual: got },
        });
      }
    } catch (err) {
      await this.store.drop(this.tmp, this.name);
      throw err;
    }
    return this.store.finish(this.tmp, this.name, got);
  }

  async abort(): Promise<void> {
    if (this.done && this.file.closed) return;
    this.done = true;
    this.file.destroy();
    await this.store.drop(this.tmp, this.name);
  }
}
