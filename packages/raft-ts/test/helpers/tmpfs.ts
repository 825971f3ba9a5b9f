/**
 * A real full disk for tests: a small tmpfs of its own (root), filled to the last byte by a file
 * that removing gives the space back. Tests using it carry `[root]` in their title; run as a
 * normal user they are skipped, under CI (CI=true) they always run (and fail without root).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';

const run = promisify(execFile);

/** ava's test.serial, tagged [root] and skipped unless root (never skipped under CI). */
export function rootTest(title: string, fn: (t: ExecutionContext) => Promise<void>): void {
  const can = process.getuid?.() === 0 || process.env.CI === 'true';
  (can ? test.serial : test.serial.skip)(`[root] ${title}`, fn);
}

/** Mounts a tmpfs of `size` (e.g. "1m") on a fresh directory; unmounted and removed at teardown. */
export async function tmpfs(t: ExecutionContext, size: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'raft-diskfull-'));
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  t.teardown(async () => {
    await run('umount', ['-l', dir]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Fills the file system of `dir` to the last byte with one file; returns a function that removes it. */
export async function fill(dir: string): Promise<() => Promise<void>> {
  const file = join(dir, 'filler');
  const fh = await open(file, 'a');
  try {
    for (const size of [1 << 20, 1 << 16, 4096, 512, 1]) {
      const chunk = Buffer.alloc(size);
      for (;;) {
        try {
          const { bytesWritten } = await fh.write(chunk);
          if (bytesWritten < size) break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    await fh.close();
  }
  const s = await statfs(dir);
  if (s.bavail > 0) throw new Error(`fill: ${dir} still has ${s.bavail} free blocks`);
  return () => rm(file, { force: true });
}
