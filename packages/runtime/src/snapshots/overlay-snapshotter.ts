/**
 * Overlayfs snapshots for containers, after containerd's overlay snapshotter: pure bookkeeping
 * of directories that returns mounts as data and never mounts anything itself (the container
 * service hands the mounts to mount/mounter.ts).
 *
 * A snapshot `key` lives in `<base>/<key>/`: `upper/` and `work/` for an active (writable)
 * snapshot, and `snapshot.json` recording its lower directories (image layers, top first).
 * With the container runtime, base is `<root>/containers`, so a container's upper and work
 * dirs sit next to its bundle, as DESIGN.md's "Runtime on disk" has it.
 */
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { SwarmError, ErrorCode, notFound, invalidArgument, alreadyExists } from '@swarmd/common/errors';
import type { Mount } from '../mount/mount.js';

export type SnapshotKind = 'active' | 'view';

export interface SnapshotInfo {
  key: string;
  kind: SnapshotKind;
  /** Image layer directories, top first. */
  lowerdirs: string[];
  created: string;
}

export interface ContainerSnapshotter {
  /** A writable snapshot over `lowerdirs` (top first). */
  prepare(key: string, lowerdirs: readonly string[]): Promise<Mount[]>;
  /** A read-only snapshot over `lowerdirs`. */
  view(key: string, lowerdirs: readonly string[]): Promise<Mount[]>;
  mounts(key: string): Promise<Mount[]>;
  stat(key: string): Promise<SnapshotInfo>;
  /** Deletes the snapshot's directories. The caller unmounts first. */
  remove(key: string): Promise<void>;
}

const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export class OverlaySnapshotter implements ContainerSnapshotter {
  constructor(private readonly base: string) {}

  dir(key: string): string {
    if (!KEY.test(key)) throw invalidArgument(`snapshot key "${key}" is not valid (letters, digits, _ . -)`);
    return join(this.base, key);
  }

  async prepare(key: string, lowerdirs: readonly string[]): Promise<Mount[]> {
    return this.create(key, 'active', lowerdirs);
  }

  async view(key: string, lowerdirs: readonly string[]): Promise<Mount[]> {
    if (lowerdirs.length === 0) throw invalidArgument(`view ${key}: a view needs at least one layer`);
    return this.create(key, 'view', lowerdirs);
  }

  async mounts(key: string): Promise<Mount[]> {
    return this.mountsOf(await this.stat(key));
  }

  async stat(key: string): Promise<SnapshotInfo> {
    let text: string;
    try {
      text = await readFile(join(this.dir(key), 'snapshot.json'), 'utf8');
    } catch (err) {
      throw notFound(`snapshot ${key} not found`, { cause: err });
    }
    return JSON.parse(text) as SnapshotInfo;
  }

  async remove(key: string): Promise<void> {
    const dir = this.dir(key);
    await rm(join(dir, 'snapshot.json'), { force: true });
    await rm(join(dir, 'upper'), { recursive: true, force: true });
    await rm(join(dir, 'work'), { recursive: true, force: true });
  }

  private async create(key: string, kind: SnapshotKind, lowerdirs: readonly string[]): Promise<Mount[]> {
    const dir = this.dir(key);
    for (const l of lowerdirs) {
      if (!isAbsolute(l)) throw invalidArgument(`snapshot ${key}: layer dir ${l} is not an absolute path`);
      if (l.includes(':') || l.includes(',')) throw invalidArgument(`snapshot ${key}: layer dir ${l} has a ":" or ","`);
    }
    // Side by side (each is a trip through the thread pool, slow on a busy host).
    const [layers, existing] = await Promise.all([
      Promise.all(lowerdirs.map((l) => stat(l).then((s) => s.isDirectory(), () => false))),
      stat(join(dir, 'snapshot.json')).catch(() => undefined),
    ]);
    const missing = lowerdirs.find((_l, i) => !layers[i]);
    if (missing !== undefined) throw new SwarmError(ErrorCode.NOT_FOUND, `snapshot ${key}: layer dir ${missing} does not exist (is the image unpacked?)`);
    if (existing) throw alreadyExists(`snapshot ${key} already exists`);
    await mkdir(dir, { recursive: true });
    if (kind === 'active') await Promise.all([mkdir(join(dir, 'upper'), { recursive: true, mode: 0o755 }), mkdir(join(dir, 'work'), { recursive: true, mode: 0o700 })]);
    const info: SnapshotInfo = { key, kind, lowerdirs: [...lowerdirs], created: new Date().toISOString() };
    await writeFile(join(dir, 'snapshot.json'), JSON.stringify(info));
    return this.mountsOf(info);
  }

  private mountsOf(info: SnapshotInfo): Mount[] {
    const dir = this.dir(info.key);
    const { lowerdirs } = info;
    if (info.kind === 'view') {
      // Overlayfs needs two lower layers when it has no upper: one layer is a read-only bind.
      if (lowerdirs.length === 1) return [{ type: 'bind', source: lowerdirs[0], options: ['rbind', 'ro'] }];
      return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowerdirs.join(':')}`] }];
    }
    if (lowerdirs.length === 0) return [{ type: 'bind', source: join(dir, 'upper'), options: ['rbind', 'rw'] }];
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [`lowerdir=${lowerdirs.join(':')}`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`, 'index=off'],
      },
    ];
  }
}
