import { readFile } from 'node:fs/promises';
import { run } from '@swarmd/common/exec';

/** Mount points at or under `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const base = dir.replace(/\/+$/, '');
  const points = text
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === base || p.startsWith(base + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything under `dir` (lazily when busy). Returns how many mounts there were. */
export async function unmountUnder(dir: string): Promise<number> {
  let count = 0;
  for (let round = 0; round < 5; round++) {
    const points = await mountsUnder(dir);
    if (points.length === 0) break;
    count += points.length;
    for (const p of points) await run('umount', [p]).catch(() => run('umount', ['-l', p]).catch(() => undefined));
  }
  return count;
}
