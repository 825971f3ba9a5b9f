import { readdir, readFile } from 'node:fs/promises';

/** SIGKILLs every conmon whose command line names `root` (containers a test left under its runtime root). */
export async function killConmonsUnder(root: string): Promise<void> {
  for (const p of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if ((cmd.startsWith('conmon') || cmd.includes('/conmon\0')) && cmd.includes(root)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}
