/**
 * Image metadata: one JSON file per image name under `<root>/images/`, written atomically
 * (temp file + rename). A name is a canonical reference (`docker.io/library/busybox:latest`,
 * `host:5000/app@sha256:…`).
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { randomBytes, createHash } from 'node:crypto';
import { join } from 'node:path';
import { SwarmError, ErrorCode, wrapError } from '@swarmd/common/errors';
import type { Descriptor, Digest, Platform } from '@swarmd/registry';

export interface ImageRecord {
  /** Canonical reference this record is stored under. */
  name: string;
  /** What the name points at: a manifest, or the index it was chosen from. */
  target: Descriptor;
  /** The platform's image manifest. */
  manifest: Descriptor;
  /** The image config blob. */
  config: Descriptor;
  /** Layer blobs, bottom first. */
  layers: Descriptor[];
  /** Digests of the uncompressed layer tars, bottom first (from the config). */
  diffIds: Digest[];
  /** Chain ids of the layers, bottom first: the snapshot of layer i is `snapshots/<hex of chainIds[i]>`. */
  chainIds: Digest[];
  platform: Platform;
  /** ISO time of the pull or import. */
  createdAt: string;
  /** Bytes of config and (compressed) layers. */
  size: number;
}

export class ImageStore {
  readonly dir: string;

  constructor(runtimeRoot: string) {
    this.dir = join(runtimeRoot, 'images');
  }

  private file(name: string): string {
    return join(this.dir, `${createHash('sha256').update(name).digest('hex')}.json`);
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    try {
      return JSON.parse(await readFile(this.file(name), 'utf8')) as ImageRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw wrapError(ErrorCode.DATA_LOSS, `image store: cannot read the record of ${name}`, err);
    }
  }

  async put(rec: ImageRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const f = this.file(rec.name);
    const tmp = `${f}.tmp-${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, JSON.stringify(rec, null, 1));
    await rename(tmp, f);
  }

  async delete(name: string): Promise<void> {
    const f = this.file(name);
    try {
      await rm(f);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SwarmError(ErrorCode.NOT_FOUND, `image ${name}: not found`);
      throw err;
    }
  }

  async list(): Promise<ImageRecord[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: ImageRecord[] = [];
    for (const n of names) {
      if (!/^[0-9a-f]{64}\.json$/.test(n)) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.dir, n), 'utf8')) as ImageRecord);
      } catch {
        /* a record removed while listing */
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }
}
