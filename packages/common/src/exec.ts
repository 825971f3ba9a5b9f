import { spawn } from 'node:child_process';
import { SwarmError, ErrorCode } from './errors.js';
import { ShellSpawner } from './shell-spawner.js';

let spawner: ShellSpawner | undefined;

/**
 * From now on `run` starts programs through a small long-lived shell (shell-spawner.ts) instead
 * of forking this process: what a daemon of 100-200 MB does (swarmd), not a CLI. `false` goes
 * back to forking and lets the helper exit.
 */
export function startProgramsThroughShell(on: boolean, shell = 'sh'): void {
  if (on && !spawner) {
    spawner = new ShellSpawner({ shell });
    process.once('exit', () => startProgramsThroughShell(false));
  }
  if (!on && spawner) {
    spawner.close();
    spawner = undefined;
  }
}

export interface RunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Exit codes that are not errors (default [0]). */
  okCodes?: number[];
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program (no shell) and collects its output. A non-zero exit becomes a SwarmError that
 * names the command and carries its stderr, so callers never lose why a tool failed.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (spawner) return runThrough(spawner, cmd, args, opts);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: opts.signal,
      timeout: opts.timeoutMs,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => {
      reject(new SwarmError(ErrorCode.INTERNAL, `cannot run ${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      const res = { code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
      settle(cmd, args, opts, res, signal ?? undefined, resolve, reject);
    });
    // A child that exits without reading all its input closes the pipe: that is its exit status's
    // business, not an uncaught EPIPE in ours.
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** A finished program's result, or the SwarmError naming the command, its exit and its stderr. */
function settle(cmd: string, args: readonly string[], opts: RunOptions, res: RunResult, signal: string | undefined, resolve: (r: RunResult) => void, reject: (e: Error) => void): void {
  if ((opts.okCodes ?? [0]).includes(res.code)) return resolve(res);
  const why = signal ? `killed by ${signal}` : `exit ${res.code}`;
  const detail = (res.stderr.trim() || res.stdout.trim()).split('\n').slice(-5).join(' | ');
  reject(
    new SwarmError(ErrorCode.INTERNAL, `${cmd} ${args.join(' ')}: ${why}${detail ? `: ${detail}` : ''}`, {
      details: { cmd, args, ...res },
    }),
  );
}

async function runThrough(s: ShellSpawner, cmd: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  let r;
  try {
    r = await s.run(cmd, args, opts);
  } catch (e) {
    throw new SwarmError(ErrorCode.INTERNAL, `cannot run ${cmd}: ${(e as Error).message}`, { cause: e });
  }
  const res = { code: r.signal ? -1 : r.code, stdout: r.stdout, stderr: r.stderr };
  return new Promise((resolve, reject) => settle(cmd, args, opts, res, r.signal, resolve, reject));
}

/** True when `cmd` is found on PATH. */
export async function which(cmd: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${JSON.stringify(cmd)}`]);
    return true;
  } catch {
    return false;
  }
}
