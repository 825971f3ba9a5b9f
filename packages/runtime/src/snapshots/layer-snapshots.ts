/**
 * Layer snapshots, after containerd's committed snapshots: each image layer is unpacked once into
 * `<root>/snapshots/<hex of chain id>/fs`, a read-only tree that overlay mounts use as a lowerdir
 * (in overlay form: whiteouts are 0:0 char devices, opaque dirs carry trusted.overlay.opaque=y),
 * with `meta.json` beside it saying what it was made from. A snapshot without meta.json is not
 * complete. Each is made in a `.tmp-…` directory and renamed into place, so a failure leaves
 * nothing half-made.
 *
 * This file owns where snapshots are and how they come and go; the image service decides which
 * ones exist (it fills them by unpacking layers, and its gc says which to keep). Directory names
 * use the hex part only, since `:` separates lowerdirs in overlay options.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { digestHex, type Descriptor, type Digest } from '@swarmd/registry';
import { SingleFlight } from '../content/single-flight.js';

export interface SnapshotMeta {
  chainId: Digest;
  diffId: Digest;
  parent?: Digest;
  layer: Descriptor;
  size: number;
  unpackedAt: string;
}

/** What a snapshot is made from (meta.json without what filling it tells). */
export type SnapshotOrigin = Omit<SnapshotMeta, 'size' | 'unpackedAt'>;

export interface PruneResult {
  removed: number;
  bytesFreed: number;
}

// One map per process so that two stores on the same root still unpack a layer once.
const flights = new SingleFlight<void>();

export class LayerSnapshots {
  /** `<root>/snapshots` */
  readonly dir: string;
  /** Temp dirs of unpacks in progress here: prune leaves them alone. */
  private readonly activeTmp = new Set<string>();

  constructor(
    runtimeRoot: string,
    private readonly log: Logger = nullLogger,
  ) {
    this.dir = join(runtimeRoot, 'snapshots');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** The directory of a snapshot (its `fs/` is the layer's tree). */
  path(chainId: Digest): string {
    return join(this.dir, digestHex(chainId));
  }

  /** The tree of one snapshot: a lowerdir. */
  layerDir(chainId: Digest): string {
    return join(this.path(chainId), 'fs');
  }

  /**
   * The chain id a lowerdir belongs to (the inverse of layerDir), or undefined for a path that
   * is not one of these snapshots.
   */
  chainIdOf(layerDir: string): Digest | undefined {
    const m = /^(.*)\/([0-9a-f]{64})\/fs\/?$/.exec(layerDir);
    return m && m[1] === this.dir ? `sha256:${m[2]}` : undefined;
  }

  /** True when the snapshot is complete (its meta.json is there). */
  async isReady(chainId: Digest): Promise<boolean> {
    try {
      await stat(join(this.path(chainId), 'meta.json'));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Makes the snapshot of `origin.chainId` unless it is there: `fill(fsDir)` writes the layer's
   * tree into an empty directory and says how large it is; then meta.json is written and the
   * snapshot renamed into place. One fill at a time per snapshot in this process; a failed fill
   * leaves nothing.
   */
  ensure(origin: SnapshotOrigin, fill: (fsDir: string) => Promise<{ size: number }>): Promise<void> {
    const { chainId } = origin;
    return flights.do(`${this.dir}\0${chainId}`, async () => {
      if (await this.isReady(chainId)) return;
      const dst = this.path(chainId);
      const tmpName = `.tmp-${digestHex(chainId).slice(0, 12)}-${randomBytes(4).toString('hex')}`;
      const tmp = join(this.dir, tmpName);
      this.activeTmp.add(tmpName);
      try {
        await mkdir(join(tmp, 'fs'), { recursive: true });
        const { size } = await fill(join(tmp, 'fs'));
        const meta: SnapshotMeta = { ...origin, size, unpackedAt: new Date().toISOString() };
        await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta, null, 1));
        // A leftover without meta.json (a crash between rename and nothing) is not usable.
        await rm(dst, { recursive: true, force: true });
        await rename(tmp, dst);
        this.log.debug('images: unpacked layer', { layer: origin.layer.digest, chainId });
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        throw err;
      } finally {
        this.activeTmp.delete(tmpName);
      }
    });
  }

  /**
   * Deletes every snapshot `keep` says no to, and the leftovers of interrupted unpacks (not
   * those running here). Directories not named like snapshots are left alone.
   */
  async prune(keep: (chainId: Digest) => boolean | Promise<boolean>): Promise<PruneResult> {
    const res: PruneResult = { removed: 0, bytesFreed: 0 };
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      const p = join(this.dir, n);
      if (n.startsWith('.tmp-')) {
        if (!this.activeTmp.has(n)) await rm(p, { recursive: true, force: true });
        continue;
      }
      if (!/^[0-9a-f]{64}$/.test(n)) continue; // not ours
      const chainId = `sha256:${n}`;
      if (await keep(chainId)) continue;
      const meta = await readFile(join(p, 'meta.json'), 'utf8').then((t) => JSON.parse(t) as SnapshotMeta).catch(() => undefined);
      await rm(p, { recursive: true, force: true });
      res.removed++;
      res.bytesFreed += meta?.size ?? 0;
    }
    return res;
  }
}
