/**
 * Unpacks one layer (a tar, plain or gzip) into a directory of its own, in the form overlayfs
 * wants for a lowerdir: a whiteout `.wh.NAME` becomes a character device 0:0 named NAME, and an
 * opaque marker `.wh..wh..opq` becomes the xattr `trusted.overlay.opaque=y` on its directory.
 * Regular files, directories, symlinks, hard links, devices and fifos are made with their
 * owners, modes and mtimes (and PAX xattrs). Every path stays inside the layer directory: names
 * with `..` that would leave it are refused, and symlinks met on the way are resolved as if the
 * layer directory were `/`, so nothing is ever written through a link to outside the tree.
 *
 * The uncompressed stream is hashed on the way: its digest is the layer's diff id, checked
 * against the image config when one is given (mismatch → DATA_LOSS).
 */
import { createWriteStream } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, readlink, rm, symlink } from 'node:fs/promises';
import { once } from 'node:events';
import { posix, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import tar from 'tar-stream';
import { SwarmError, ErrorCode, wrapError, isSwarmError } from '@swarmd/common/errors';
import { run } from '@swarmd/common/exec';
import type { Digest } from '@swarmd/registry';
import { paxXattrs } from './tar-pax.js';

export interface UnpackOptions {
  /** The diff id the uncompressed tar must have (from the image config). */
  expectedDiffId?: Digest;
  /** For messages: the layer's (compressed) digest. */
  layer?: string;
  /** The layer's media type: a hint only, the first bytes decide (gzip magic or not). */
  mediaType?: string;
}

export interface UnpackResult {
  diffId: Digest;
  /** Bytes of regular file data in the layer. */
  size: number;
  /** `entry: xattr` pairs not written because the tar reader could not keep their bytes. */
  skippedXattrs: string[];
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE = '.wh..wh..opq';
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Reads the first `n` bytes of a stream and puts them back. */
async function peek(src: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  while (len < n) {
    const c = src.read() as Buffer | null;
    if (c !== null) {
      chunks.push(c);
      len += c.length;
      continue;
    }
    if (src.readableEnded || src.destroyed) break;
    const ac = new AbortController();
    try {
      await Promise.race([once(src, 'readable', { signal: ac.signal }), once(src, 'end', { signal: ac.signal })]);
    } finally {
      ac.abort();
    }
    if (src.readableEnded) break;
  }
  const head = Buffer.concat(chunks);
  if (head.length) src.unshift(head);
  return head;
}

interface DirMeta {
  path: string;
  header: tar.Header;
}

export async function unpackLayer(src: Readable, dest: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const what = `layer ${opts.layer ?? '(stream)'}`;
  const u = new Unpacker(dest, what);
  const head = await peek(src, 4).catch((err: unknown) => {
    throw wrapError(ErrorCode.DATA_LOSS, `${what}: cannot read`, err);
  });
  const zstd = head.subarray(0, 4).equals(ZSTD_MAGIC);
  // Node has zstd from 22.15 (zlib.createZstdDecompress); older ones refuse such layers.
  const createZstd = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream }).createZstdDecompress;
  if (zstd && !createZstd) {
    src.destroy();
    throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${what}: zstd-compressed layers need Node.js 22.15 or later (this is ${process.version})`);
  }
  const gz = head.subarray(0, 2).equals(GZIP_MAGIC);
  const hash = createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const extract = tar.extract();
  const stages: NodeJS.ReadWriteStream[] = gz ? [zlib.createGunzip(), hasher] : zstd && createZstd ? [createZstd(), hasher] : [hasher];
  const feeding = pipeline([src, ...stages, extract as unknown as NodeJS.WritableStream]);
  let feedErr: unknown;
  const fed = feeding.catch((err: unknown) => {
    feedErr = err;
  });
  try {
    for await (const entry of extract) {
      await u.entry(entry.header, entry as unknown as Readable);
    }
    await fed;
    if (feedErr !== undefined) throw feedErr instanceof Error ? feedErr : new Error(`stream failed: ${JSON.stringify(feedErr)}`);
    await u.finish();
  } catch (err) {
    src.destroy();
    extract.destroy();
    await fed;
    if (isSwarmError(err)) throw err;
    const e = feedErr ?? err;
    throw wrapError(ErrorCode.DATA_LOSS, `${what}: cannot unpack`, e);
  }
  const diffId = `sha256:${hash.digest('hex')}`;
  if (opts.expectedDiffId !== undefined && opts.expectedDiffId !== diffId) {
    throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: diff id mismatch: the config says ${opts.expectedDiffId}, the layer's tar has ${diffId}`, {
      details: { digest: opts.layer, diffId: opts.expectedDiffId, actual: diffId },
    });
  }
  return { diffId, size: u.size, skippedXattrs: u.skippedXattrs };
}

class Unpacker {
  size = 0;
  private readonly dirs: DirMeta[] = [];
  private readonly opaque = new Set<string>();
  private readonly realDirs = new Set<string>();
  private readonly canChown = process.getuid?.() === 0;
  /** xattrs whose bytes the tar reader could not keep (see tar-pax.ts). */
  readonly skippedXattrs: string[] = [];

  constructor(
    private readonly root: string,
    private readonly what: string,
  ) {
    this.realDirs.add(root);
  }

  /** A clean relative path ('' for the root); refuses names that leave the root. */
  private clean(name: string): string {
    const n = posix.normalize(name.replace(/^\/+/, ''));
    if (n === '..' || n.startsWith('../')) {
      throw new SwarmError(ErrorCode.DATA_LOSS, `${this.what}: entry ${JSON.stringify(name)} points outside the layer`, { details: { entry: name } });
    }
    return n === '.' || n === './' ? '' : n.replace(/\/+$/, '');
  }

  /**
   * The real path of directory `rel` inside the root, following symlinks as if the root were
   * `/` (an absolute target restarts at the root, `..` stops at it), creating what is missing.
   */
  private async dir(rel: string): Promise<string> {
    const parts = rel.split('/').filter((p) => p && p !== '.');
    const cur: string[] = [];
    let links = 0;
    while (parts.length) {
      const p = parts.shift()!;
      if (p === '..') {
        cur.pop();
        continue;
      }
      const full = join(this.root, ...cur, p);
      if (this.realDirs.has(full)) {
        cur.push(p);
        continue;
      }
      const st = await lstat(full).catch(() => undefined);
      if (st?.isSymbolicLink()) {
        if (++links > 40) throw new SwarmError(ErrorCode.DATA_LOSS, `${this.what}: too many levels of symbolic links at ${rel}`);
        const target = await readlink(full);
        if (target.startsWith('/')) cur.length = 0;
        parts.unshift(...target.split('/').filter((x) => x && x !== '.'));
        continue;
      }
      if (!st) {
        await mkdir(full, { mode: 0o755 });
      } else if (!st.isDirectory()) {
        // A file where a directory is needed: the later entry wins, as tar does.
        await rm(full, { force: true });
        await mkdir(full, { mode: 0o755 });
      }
      this.realDirs.add(full);
      cur.push(p);
    }
    return join(this.root, ...cur);
  }

  private forget(path: string): void {
    for (const d of this.realDirs) if (d === path || d.startsWith(path + '/')) this.realDirs.delete(d);
  }

  private async replace(target: string): Promise<void> {
    const st = await lstat(target).catch(() => undefined);
    if (!st) return;
    this.forget(target);
    await rm(target, { recursive: true, force: true });
  }

  async entry(h: tar.Header, stream: Readable): Promise<void> {
    const rel = this.clean(h.name);
    const base = posix.basename(rel);
    const parentRel = rel.includes('/') ? posix.dirname(rel) : '';
    try {
      if (rel === '') {
        stream.resume();
        if (h.type === 'directory') this.dirs.push({ path: this.root, header: h });
        return;
      }
      if (base === OPAQUE) {
        stream.resume();
        this.opaque.add(await this.dir(parentRel));
        return;
      }
      if (base.startsWith(WHITEOUT_PREFIX)) {
        stream.resume();
        const name = base.slice(WHITEOUT_PREFIX.length);
        if (!name || name === '.' || name === '..') throw new SwarmError(ErrorCode.DATA_LOSS, `${this.what}: bad whiteout ${JSON.stringify(h.name)}`);
        const target = join(await this.dir(parentRel), name);
        await this.replace(target);
        await run('mknod', ['-m', '0', target, 'c', '0', '0']);
        return;
      }
      const parent = await this.dir(parentRel);
      const target = join(parent, base);
      switch (h.type) {
        case 'directory': {
          stream.resume();
          const st = await lstat(target).catch(() => undefined);
          if (!st?.isDirectory()) {
            if (st) await this.replace(target);
            await mkdir(target, { mode: 0o755 });
          }
          this.realDirs.add(target);
          this.dirs.push({ path: target, header: h });
          await this.xattrs(h, target);
          return;
        }
        case 'file':
        case 'contiguous-file': {
          await this.replace(target);
          await pipeline(stream, createWriteStream(target, { flags: 'wx', mode: 0o600 }));
          this.size += h.size;
          await this.meta(h, target, false);
          return;
        }
        case 'symlink': {
          stream.resume();
          await this.replace(target);
          await symlink(h.linkname, target);
          await this.meta(h, target, true);
          return;
        }
        case 'link': {
          stream.resume();
          const lrel = this.clean(h.linkname);
          if (lrel === '') throw new SwarmError(ErrorCode.DATA_LOSS, `${this.what}: hard link ${JSON.stringify(h.name)} to the layer root`);
          const lparentRel = lrel.includes('/') ? posix.dirname(lrel) : '';
          const source = join(await this.dir(lparentRel), posix.basename(lrel));
          const st = await lstat(source).catch(() => undefined);
          if (!st || st.isDirectory()) {
            throw new SwarmError(ErrorCode.DATA_LOSS, `${this.what}: hard link ${JSON.stringify(h.name)} to ${JSON.stringify(h.linkname)}, which is ${st ? 'a directory' : 'not in the layer'}`);
          }
          if (source === target) return;
          await this.replace(target);
          await link(source, target);
          return;
        }
        case 'character-device':
        case 'block-device':
        case 'fifo': {
          stream.resume();
          await this.replace(target);
          const kind = h.type === 'fifo' ? ['p'] : [h.type === 'character-device' ? 'c' : 'b', String(h.devmajor), String(h.devminor)];
          await run('mknod', ['-m', (h.mode & 0o777).toString(8), target, ...kind]);
          await this.meta(h, target, false);
          return;
        }
        default:
          stream.resume();
          return;
      }
    } catch (err) {
      stream.resume();
      if (isSwarmError(err)) throw err;
      throw wrapError(ErrorCode.INTERNAL, `${this.what}: cannot unpack ${JSON.stringify(h.name)}`, err);
    }
  }

  private async meta(h: tar.Header, target: string, isLink: boolean): Promise<void> {
    if (this.canChown) await lchown(target, h.uid, h.gid);
    await this.xattrs(h, target);
    // After chown, which clears set-uid bits.
    if (!isLink) await chmod(target, h.mode & 0o7777);
    const mtime = h.mtime ?? new Date(0);
    await lutimes(target, mtime, mtime);
  }

  private async xattrs(h: tar.Header, target: string): Promise<void> {
    for (const [name, value] of paxXattrs(h.pax)) {
      if (value === undefined) {
        this.skippedXattrs.push(`${h.name}: ${name}`);
        continue;
      }
      await run('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, target]);
    }
  }

  async finish(): Promise<void> {
    // Only directories still there as directories (see below), and never through a link.
    const opaque: string[] = [];
    for (const d of this.opaque) if ((await lstat(d).catch(() => undefined))?.isDirectory()) opaque.push(d);
    if (opaque.length) await run('setfattr', ['-h', '-n', 'trusted.overlay.opaque', '-v', 'y', ...opaque]);
    // Directories last and deepest first: creating entries inside changes their mtimes, and a
    // read-only mode must not stop us from filling them.
    this.dirs.sort((a, b) => b.path.length - a.path.length);
    for (const d of this.dirs) {
      // A later entry may have replaced the directory (by a symlink, say): chmod would follow
      // it, possibly out of the tree. Only real directories get their metadata.
      const st = await lstat(d.path).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      if (this.canChown) await lchown(d.path, d.header.uid, d.header.gid);
      await chmod(d.path, d.header.mode & 0o7777);
      const mtime = d.header.mtime ?? new Date(0);
      await lutimes(d.path, mtime, mtime);
    }
  }
}
