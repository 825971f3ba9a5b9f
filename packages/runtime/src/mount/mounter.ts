/**
 * The only place that mounts and unmounts (through mount(8)/umount(8), so no native addon).
 * Mounts are data (mount.ts); this file turns them into mount(2) calls and reads
 * /proc/self/mountinfo to know what is mounted.
 */
import { readFile } from 'node:fs/promises';
import { dirname, relative, resolve, sep } from 'node:path';
import { run } from '@swarmd/common/exec';
import { wrapError, ErrorCode } from '@swarmd/common/errors';
import { type Logger, nullLogger } from '@swarmd/common/logger';
import { isBind, type Mount } from './mount.js';

/** Longest option string we hand to mount(2) before switching to relative lowerdirs. */
const MAX_OPTIONS = 3500;

export interface MountInfo {
  id: number;
  parent: number;
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
  /** Filesystem-specific options (for cgroup v1: the controllers). */
  superOptions: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export async function readMountInfo(file = '/proc/self/mountinfo'): Promise<MountInfo[]> {
  const text = await readFile(file, 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    const f = left.split(' ');
    const r = (right ?? '').split(' ');
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      mountPoint: unescapeMountinfo(f[4]),
      options: f[5],
      fsType: r[0] ?? '',
      source: unescapeMountinfo(r[1] ?? ''),
      superOptions: r[2] ?? '',
    });
  }
  return out;
}

/** Mount points at or below `dir`, deepest first (the order to unmount them in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolve(dir);
  const all = await readMountInfo();
  const hits = all.map((m) => m.mountPoint).filter((p) => p === root || p.startsWith(root + sep));
  return [...new Set(hits)].sort((a, b) => b.length - a.length);
}

export async function isMountPoint(path: string): Promise<boolean> {
  const p = resolve(path);
  return (await readMountInfo()).some((m) => m.mountPoint === p);
}

export class Mounter {
  constructor(private readonly log: Logger = nullLogger) {}

  /** Mounts `m` on `target` (or m.target). */
  async mount(m: Mount, target = m.target): Promise<void> {
    if (!target) throw wrapError(ErrorCode.INVALID_ARGUMENT, 'mount', new Error(`no target for ${m.type} mount of ${m.source}`));
    let options = m.options;
    let cwd: string | undefined;
    if (m.type === 'overlay' && options.join(',').length > MAX_OPTIONS) ({ options, cwd } = shortenOverlay(options));
    const args = isBind(m)
      ? [m.options.includes('rbind') ? '--rbind' : '--bind', m.source, target]
      : ['-t', m.type, ...(options.length ? ['-o', options.join(',')] : []), m.source, target];
    try {
      await run('mount', args, cwd ? { cwd } : {});
      if (isBind(m) && m.options.includes('ro')) await run('mount', ['-o', 'remount,bind,ro', target]);
    } catch (err) {
      throw wrapError(ErrorCode.INTERNAL, `mount ${m.type} on ${target}`, err);
    }
    this.log.debug('mounted', { type: m.type, target });
  }

  /** Unmounts `target`; when it is busy, detaches it lazily (MNT_DETACH) so cleanup can go on. */
  async unmount(target: string): Promise<void> {
    try {
      await run('umount', [target]);
    } catch (err) {
      if (!(await isMountPoint(target))) return;
      this.log.warn('unmount failed, detaching lazily', { target, err });
      try {
        await run('umount', ['-l', target]);
      } catch (err2) {
        throw wrapError(ErrorCode.INTERNAL, `unmount ${target}`, err2);
      }
    }
  }

  /** Unmounts everything at or below `dir`, deepest first. */
  async unmountAll(dir: string): Promise<void> {
    for (const p of await mountsUnder(dir)) await this.unmount(p);
  }
}

/**
 * mount(2) takes one page of options: with many layers, name lowerdirs relative to their
 * common parent and run mount there (what containerd does with chdir).
 */
function shortenOverlay(options: string[]): { options: string[]; cwd: string } {
  const lower = options.find((o) => o.startsWith('lowerdir='))!.slice('lowerdir='.length).split(':');
  let common = dirname(lower[0]);
  while (!lower.every((l) => l.startsWith(common + sep)) && common !== dirname(common)) common = dirname(common);
  const rel = lower.map((l) => relative(common, l));
  return { options: options.map((o) => (o.startsWith('lowerdir=') ? `lowerdir=${rel.join(':')}` : o)), cwd: common };
}
