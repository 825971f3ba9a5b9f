import { readFileSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Whether `pid` runs. A zombie counts as dead: a swarmd that `local start` spawned is reparented
 * once swarmctl exits, and after a SIGKILL it stays a zombie until that parent reaps it, which
 * some init processes do late; `local stop --kill` then `local start` must not see it as running.
 */
export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return !/^\d+ \(.*\) [ZX] /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function cmdline(pid: number): Promise<string> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/**
 * Processes that belong to a local cluster: their command line mentions the cluster dir
 * (swarmd with its --state-dir, the registry with its config), or they live in one of its
 * network namespaces (containers, shims). Never this process.
 */
export async function clusterProcesses(dir: string, netnsPaths: readonly string[]): Promise<number[]> {
  const nsIds = new Set<string>();
  for (const p of netnsPaths) {
    try {
      const { ino, dev } = await stat(p);
      nsIds.add(`${dev}:${ino}`);
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = await readdir('/proc');
  } catch {
    return out;
  }
  const needle = dir.endsWith('/') ? dir : dir + '/';
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    if ((await cmdline(pid)).includes(needle)) {
      out.push(pid);
      continue;
    }
    if (nsIds.size) {
      try {
        const st = await stat(`/proc/${pid}/ns/net`);
        if (nsIds.has(`${st.dev}:${st.ino}`)) out.push(pid);
      } catch {
        /* gone or not ours to see */
      }
    }
  }
  return out;
}

/** SIGTERM, then SIGKILL after `graceMs` for whatever still runs. */
export async function terminate(pids: readonly number[], graceMs = 10_000): Promise<void> {
  const live = pids.filter((p) => isAlive(p));
  for (const p of live) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + graceMs;
  let left = live;
  while (left.length && Date.now() < deadline) {
    await sleep(100);
    const still: number[] = [];
    for (const p of left) if (isAlive(p)) still.push(p);
    left = still;
  }
  for (const p of left) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await waitGone(left);
}

/** Waits (up to 2.5 s) until none of `pids` runs. */
export async function waitGone(pids: readonly number[]): Promise<void> {
  let left = [...pids];
  for (let i = 0; i < 50 && left.length; i++) {
    const still: number[] = [];
    for (const p of left) if (isAlive(p)) still.push(p);
    left = still;
    if (left.length) await sleep(50);
  }
}
