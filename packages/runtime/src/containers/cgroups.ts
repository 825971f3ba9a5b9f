/**
 * Reads and cleans up a container's cgroups (runc creates them from config.json's cgroupsPath).
 * Works on cgroup v1 (each controller its own hierarchy, as on this hybrid host) and on a pure
 * v2 unified hierarchy.
 */
import { readFile, readdir, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readMountInfo } from '../mount/mounter.js';

export interface CgroupLayout {
  /** cgroup v1 controller → mount point (absent on a pure v2 host). */
  v1: Map<string, string>;
  /** The cgroup2 mount point, if any (the unified tree of a hybrid host, or the only one). */
  v2?: string;
  /** True when the controllers live on v2 (no v1 memory hierarchy). */
  unifiedOnly: boolean;
}

let layoutCache: Promise<CgroupLayout> | undefined;

export function cgroupLayout(): Promise<CgroupLayout> {
  layoutCache ??= (async () => {
    const v1 = new Map<string, string>();
    let v2: string | undefined;
    for (const m of await readMountInfo()) {
      if (m.fsType === 'cgroup2') v2 ??= m.mountPoint;
      if (m.fsType !== 'cgroup') continue;
      for (const opt of m.superOptions.split(',')) {
        if (['rw', 'ro', 'relatime', 'noatime', 'nosuid', 'nodev', 'noexec'].includes(opt) || opt.startsWith('release_agent')) continue;
        if (!v1.has(opt)) v1.set(opt, m.mountPoint);
      }
    }
    return { v1, v2, unifiedOnly: !v1.has('memory') && v2 !== undefined };
  })();
  return layoutCache;
}

const readNum = async (file: string): Promise<number | undefined> => {
  try {
    const t = (await readFile(file, 'utf8')).trim();
    return t === 'max' ? Infinity : Number(t);
  } catch {
    return undefined;
  }
};

const readKeyed = async (file: string): Promise<Map<string, number>> => {
  const out = new Map<string, number>();
  try {
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v !== undefined) out.set(k, Number(v));
    }
  } catch {
    /* absent */
  }
  return out;
};

export interface CgroupStats {
  /** Memory in use, without the inactive file cache (what `docker stats` shows). */
  memoryBytes: number;
  memoryLimitBytes?: number;
  /** CPU time used, all CPUs, in nanoseconds. */
  cpuUsageNs: number;
  /** Tasks (processes and threads) in the cgroup. */
  pids: number;
}

/** Stats of the cgroup at `path` (e.g. /swarmd-x/<id>), or undefined when it is gone. */
export async function readCgroupStats(path: string): Promise<CgroupStats | undefined> {
  const l = await cgroupLayout();
  if (l.unifiedOnly) {
    const dir = join(l.v2!, path);
    const current = await readNum(join(dir, 'memory.current'));
    if (current === undefined) return undefined;
    const mstat = await readKeyed(join(dir, 'memory.stat'));
    const cpu = await readKeyed(join(dir, 'cpu.stat'));
    const max = await readNum(join(dir, 'memory.max'));
    return {
      memoryBytes: Math.max(0, current - (mstat.get('inactive_file') ?? 0)),
      ...(max !== undefined && Number.isFinite(max) ? { memoryLimitBytes: max } : {}),
      cpuUsageNs: (cpu.get('usage_usec') ?? 0) * 1000,
      pids: (await readNum(join(dir, 'pids.current'))) ?? 0,
    };
  }
  const mem = join(l.v1.get('memory') ?? '/sys/fs/cgroup/memory', path);
  const usage = await readNum(join(mem, 'memory.usage_in_bytes'));
  if (usage === undefined) return undefined;
  const mstat = await readKeyed(join(mem, 'memory.stat'));
  const limit = await readNum(join(mem, 'memory.limit_in_bytes'));
  const cpuacct = join(l.v1.get('cpuacct') ?? '/sys/fs/cgroup/cpuacct', path);
  const pids = join(l.v1.get('pids') ?? '/sys/fs/cgroup/pids', path);
  return {
    memoryBytes: Math.max(0, usage - (mstat.get('total_inactive_file') ?? 0)),
    ...(limit !== undefined && limit < 2 ** 62 ? { memoryLimitBytes: limit } : {}),
    cpuUsageNs: (await readNum(join(cpuacct, 'cpuacct.usage'))) ?? 0,
    pids: (await readNum(join(pids, 'pids.current'))) ?? 0,
  };
}

/**
 * True when process `pid` is in the cgroup at `path` (or below it) in some hierarchy, going by
 * /proc/<pid>/cgroup (`hierarchy-id:controllers:path` lines, v1 and v2 alike); false when it
 * is not or cannot be read (gone). A container's cgroup path is unique to it, so this tells
 * whether a recorded pid still is that container's process and not a reused pid.
 */
export async function processInCgroup(pid: number, path: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return false;
  }
  const want = path.replace(/\/+$/, '');
  if (!want) return false;
  return text.split('\n').some((line) => {
    const p = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    return line.length > 0 && (p === want || p.startsWith(`${want}/`));
  });
}

/** How many processes the kernel OOM-killed in the cgroup (undefined when it is gone). */
export async function readOomKills(path: string): Promise<number | undefined> {
  const l = await cgroupLayout();
  if (l.unifiedOnly) return (await readKeyed(join(l.v2!, path, 'memory.events'))).get('oom_kill');
  const file = join(l.v1.get('memory') ?? '/sys/fs/cgroup/memory', path, 'memory.oom_control');
  const m = await readKeyed(file);
  return m.size ? (m.get('oom_kill') ?? 0) : undefined;
}

/** Every directory of the cgroup at `path`, across hierarchies, that exists. */
export async function cgroupDirs(path: string): Promise<string[]> {
  const l = await cgroupLayout();
  const roots = new Set([...l.v1.values(), ...(l.v2 ? [l.v2] : [])]);
  const out: string[] = [];
  for (const r of roots) {
    const d = join(r, path);
    if (await stat(d).then((s) => s.isDirectory(), () => false)) out.push(d);
  }
  return out;
}

/** Removes the cgroup at `path` (and empty children) in every hierarchy; a busy one is left. */
export async function removeCgroup(path: string): Promise<string[]> {
  const left: string[] = [];
  for (const d of await cgroupDirs(path)) if (!(await rmdirTree(d))) left.push(d);
  return left;
}

async function rmdirTree(dir: string): Promise<boolean> {
  let ok = true;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) ok = (await rmdirTree(join(dir, e.name))) && ok;
  try {
    await rmdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') ok = false;
  }
  return ok;
}
