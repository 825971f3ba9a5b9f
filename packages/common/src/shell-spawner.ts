/**
 * Programs started by a small long-lived shell instead of by this process.
 *
 * Why: Node starts a program with fork + exec, and fork copies the page tables of the whole
 * process. A swarmd holds 100-200 MB, so each program it starts costs it 7-17 ms of CPU on its
 * main thread (measured on these VMs: 6.8 ms of Node CPU per `/bin/true` at 209 MB RSS; Python's
 * vfork-based spawn at 150 MB takes 2 ms against 17.5 ms for fork + exec), and the agent starts
 * several per task (mount, ip, nft, runc). A `dash` of about 1 MB forks in well under a
 * millisecond: swarmd writes it one line per program and reads one line back when it ended
 * (0.5 ms of Node CPU per program in the same measurement).
 *
 * Protocol (all on the helper's stdin/stdout): each call is one line, a background job
 *   jobs >/dev/null; { 'cmd' 'arg'... <IN >OUT 2>ERR & echo "p ID $!"; wait $!; echo "e ID $?"; } &
 * (`jobs` reaps the jobs that ended since the last line)
 * with every word single-quoted; the input, stdout and stderr go through files in a private
 * directory on a tmpfs (read and removed when the job ends). The pid line lets a timeout or an
 * abort signal the program itself. A helper that dies leaves its jobs running: they still report
 * (they hold its stdout); the next call starts a new helper; a call whose job is gone too fails. After ROLLOVER calls the helper is replaced (its stdin closed: it finishes
 * its jobs and exits), so no shell's job table grows without bound.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A finished program: its exit code, and the signal when a timeout or an abort killed it. */
export interface ShellResult {
  code: number;
  signal: NodeJS.Signals | undefined;
  stdout: string;
  stderr: string;
}

export interface ShellRunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

const ROLLOVER = 1000;

/** A word for the shell: single-quoted, a quote inside as '\''. */
export function shellQuote(w: string): string {
  return `'${w.replace(/'/g, "'\\''")}'`;
}

interface Call {
  resolve(r: { code: number; pid: number | undefined }): void;
  reject(err: Error): void;
  pid?: number;
  /** A kill asked before the pid was known. */
  killWith?: NodeJS.Signals;
}

interface Helper {
  proc: ChildProcessWithoutNullStreams;
  calls: Map<number, Call>;
  started: number;
  dead?: Error;
}

const SIGNALS: Record<number, NodeJS.Signals> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 13: 'SIGPIPE', 15: 'SIGTERM' };

export class ShellSpawner {
  private helper: Helper | undefined;
  private nextId = 1;
  private readonly dir: string;

  private readonly shell: string;
  private readonly rollover: number;

  constructor(o: { shell?: string; rollover?: number } = {}) {
    this.shell = o.shell ?? 'sh';
    this.rollover = o.rollover ?? ROLLOVER;
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    this.dir = mkdtempSync(join(base, 'swarmd-run-'));
  }

  /** Runs `cmd args` through the helper; resolves when it ended (whatever its exit code). */
  async run(cmd: string, args: readonly string[], o: ShellRunOptions = {}): Promise<ShellResult> {
    try {
      return await this.runOnce(cmd, args, o);
    } catch (err) {
      // Sent to a helper that died before it started the job: the program never ran, so once more.
      if (err instanceof NotStarted) return this.runOnce(cmd, args, o);
      throw err;
    }
  }

  private async runOnce(cmd: string, args: readonly string[], o: ShellRunOptions): Promise<ShellResult> {
    const id = this.nextId++;
    const base = join(this.dir, String(id));
    const files = { in: `${base}.in`, out: `${base}.out`, err: `${base}.err` };
    if (o.input !== undefined) await writeFile(files.in, o.input);
    const words = [cmd, ...args].map(shellQuote).join(' ');
    const env = o.env ? `env -i ${Object.entries(o.env).filter(([, v]) => v !== undefined).map(([k, v]) => shellQuote(`${k}=${v}`)).join(' ')} ` : '';
    const cd = o.cwd ? `cd ${shellQuote(o.cwd)} && ` : '';
    const stdin = o.input !== undefined ? shellQuote(files.in) : '/dev/null';
    // The subshell execs the program, so $! is the program's own pid. `jobs` first: a shell that
    // only starts background jobs never reaps them (dash waits for children only around a
    // foreground command, or in `wait`/`jobs`), so each ended job would stay a zombie until the
    // helper retires; the builtin reaps the ones that ended (no fork).
    const line = `jobs >/dev/null; { ( ${cd}exec ${env}${words} ) <${stdin} >${shellQuote(files.out)} 2>${shellQuote(files.err)} & echo "p ${id} $!"; wait $!; echo "e ${id} $?"; } &\n`;
    const h = this.current();
    const done = new Promise<{ code: number; pid: number | undefined }>((resolve, reject) => h.calls.set(id, { resolve, reject }));
    this.hold(h);
    h.started++;
    h.proc.stdin.write(line);
    if (h.started >= this.rollover) this.retire(h);
    let killed: NodeJS.Signals | undefined;
    const kill = (sig: NodeJS.Signals) => {
      const c = h.calls.get(id);
      if (!c) return;
      killed = sig;
      if (c.pid) killQuietly(c.pid, sig);
      else c.killWith = sig;
    };
    const timer = o.timeoutMs ? setTimeout(() => kill('SIGTERM'), o.timeoutMs) : undefined;
    const onAbort = () => kill('SIGTERM');
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();
    try {
      const { code } = await done;
      const [stdout, stderr] = await Promise.all([readFile(files.out, 'utf8').catch(() => ''), readFile(files.err, 'utf8').catch(() => '')]);
      // 128 + n is how the shell reports a program killed by signal n; only trusted for a kill of ours
      // (a program may exit 137 by itself).
      const signal = killed && code > 128 ? (SIGNALS[code - 128] ?? killed) : undefined;
      return { code, signal, stdout, stderr };
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      void Promise.all([rm(files.in, { force: true }), rm(files.out, { force: true }), rm(files.err, { force: true })]).catch(() => undefined);
    }
  }

  /** Ends the helper (its running programs go on) and removes the directory once they are done. */
  close(): void {
    if (this.helper) this.retire(this.helper);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // a program still writing there: the tmpfs is cleared at boot
    }
  }

  private current(): Helper {
    if (this.helper && !this.helper.dead) return this.helper;
    const proc = spawn(this.shell, ['-s'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const h: Helper = { proc, calls: new Map(), started: 0 };
    this.helper = h;
    let buf = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const [kind, idText, value] = buf.slice(0, i).split(' ');
        buf = buf.slice(i + 1);
        const c = h.calls.get(Number(idText));
        if (!c) continue;
        if (kind === 'p') {
          c.pid = Number(value) || undefined;
          if (c.pid && c.killWith) killQuietly(c.pid, c.killWith);
        } else if (kind === 'e') {
          h.calls.delete(Number(idText));
          this.hold(h);
          c.resolve({ code: Number(value), pid: c.pid });
        }
      }
    });
    proc.stderr.resume();
    proc.stdin.on('error', () => undefined);
    const fail = (why: string) => {
      if (h.dead) return;
      h.dead = new Error(`the program helper (${this.shell}) ${why}`);
      if (this.helper === h) this.helper = undefined;
      for (const c of h.calls.values()) c.reject(c.pid ? h.dead : new NotStarted(h.dead.message));
      h.calls.clear();
    };
    proc.on('error', (e) => fail(`could not run: ${e.message}`));
    // New calls go to a new helper at once; the jobs of this one still report until they end.
    proc.on('exit', () => {
      if (this.helper === h) this.helper = undefined;
    });
    // 'close', not 'exit': a retired helper exits at the end of its input while its jobs, which
    // hold its stdout, still run and report; they are done when the last of them closes it.
    proc.on('close', (code, sig) => fail(`exited (${sig ?? code})`));
    proc.unref();
    (proc.stderr as unknown as { unref?: () => void }).unref?.();
    (proc.stdin as unknown as { unref?: () => void }).unref?.();
    this.hold(h);
    return h;
  }

  /** The helper keeps this process alive only while a call waits on it. */
  private hold(h: Helper): void {
    const out = h.proc.stdout as unknown as { ref?: () => void; unref?: () => void };
    if (h.calls.size > 0) out.ref?.();
    else out.unref?.();
  }

  /** No new calls go to `h`; it exits once its jobs are done (its stdin ends). */
  private retire(h: Helper): void {
    if (this.helper === h) this.helper = undefined;
    h.proc.stdin.end();
  }
}

/** The helper died before it started this call's program. */
class NotStarted extends Error {}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
