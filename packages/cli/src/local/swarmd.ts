import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failedPrecondition } from '@swarmd/common/errors';
import { run } from '@swarmd/common/exec';
import { netnsPath } from './underlay.js';

/**
 * The swarmd program: $SWARMD_BIN, else the workspace's swarmd command
 * packages/swarmd/dist/src/swarmd.cjs (next to this package; it runs swarmd's bundle), else
 * `swarmd` on PATH. Returned as argv0 + leading args.
 */
export function findSwarmd(env: NodeJS.ProcessEnv): string[] {
  const asCmd = (p: string) => (/\.c?js$/.test(p) ? [process.execPath, p] : [p]);
  if (env.SWARMD_BIN) return asCmd(resolve(env.SWARMD_BIN));
  // packages/cli/dist/src/local/swarmd.js, or the bundle packages/cli/dist/bundle/swarmctl.cjs:
  // the nearest folder above that holds swarmd/dist/src/swarmd.cjs is packages/.
  let ws = '';
  for (let d = dirname(fileURLToPath(import.meta.url)); !ws && d !== dirname(d); d = dirname(d)) {
    const p = join(d, 'swarmd', 'dist', 'src', 'swarmd.cjs');
    if (exists(p)) ws = p;
  }
  if (ws) return asCmd(ws);
  for (const d of (env.PATH ?? '').split(delimiter)) {
    if (d && exists(join(d, 'swarmd'), true)) return [join(d, 'swarmd')];
  }
  throw failedPrecondition(`swarmd not found: build it (npx tsc -b packages/swarmd, looked for swarmd/dist/src/swarmd.cjs above ${fileURLToPath(import.meta.url)}), put it on PATH, or set SWARMD_BIN`);
}

function exists(p: string, exec = false): boolean {
  try {
    accessSync(p, exec ? constants.X_OK : constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a program inside a host's network namespace with `nsenter --net=` (which execs it: the
 * pid is the program's), detached, stdout+stderr appended to `log`.
 */
export async function spawnInNetns(netns: string, argv: readonly string[], log: string, env: NodeJS.ProcessEnv): Promise<number> {
  const fh = await open(log, 'a');
  try {
    const child = spawn('nsenter', [`--net=${netnsPath(netns)}`, '--', ...argv], {
      detached: true,
      stdio: ['ignore', fh.fd, fh.fd],
      env,
    });
    const pid = await new Promise<number>((res, rej) => {
      child.once('error', rej);
      child.once('spawn', () => res(child.pid!));
    });
    child.unref();
    return pid;
  } finally {
    await fh.close();
  }
}

/**
 * Runs `swarmd cleanup` for a host whose swarmd is stopped, inside its network namespace: removes
 * its containers (processes, mounts, cgroups) and task networking. Returns what it printed.
 */
export async function cleanupHost(h: { netns: string; stateDir: string }, env: NodeJS.ProcessEnv): Promise<string> {
  const argv = [...findSwarmd(env), 'cleanup', '--state-dir', h.stateDir];
  const r = await run('nsenter', [`--net=${netnsPath(h.netns)}`, '--', ...argv], { env });
  return r.stdout.trim();
}
