/**
 * runc, driven through its command line under a `--root` of our own (one per runtime instance,
 * so several swarmd on one machine keep separate container lists).
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { run } from '@swarmd/common/exec';
import { startThroughExecFifo } from './exec-fifo.js';
import { isSwarmError, SwarmError, ErrorCode, notFound, wrapError } from '@swarmd/common/errors';

export type RuncStatus = 'creating' | 'created' | 'running' | 'pausing' | 'paused' | 'stopped';

export interface RuncState {
  id: string;
  pid: number;
  status: RuncStatus;
  bundle: string;
  created: string;
}

export interface RuncExecOptions {
  env?: string[];
  cwd?: string;
  /** uid[:gid] */
  user?: string;
  /** Where runc writes the exec'd process' pid (to kill it on a timeout). */
  pidFile?: string;
  signal?: AbortSignal;
  /** Most bytes kept of each of stdout and stderr. */
  maxOutput?: number;
}

export interface RuncExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** runc's message when the container is not there. */
const NOT_EXIST = /does not exist|not exist|no such file/i;

export class RuncCli {
  constructor(
    readonly root: string,
    readonly binary: string = 'runc',
  ) {}

  private args(a: string[]): string[] {
    return ['--root', this.root, ...a];
  }

  private async call(a: string[], what: string): Promise<string> {
    try {
      return (await run(this.binary, this.args(a))).stdout;
    } catch (err) {
      const msg = isSwarmError(err) ? String((err.details.stderr as string | undefined) ?? err.message) : String(err);
      if (NOT_EXIST.test(msg)) throw notFound(`${what}: the container does not exist in runc`, { cause: err });
      throw wrapError(ErrorCode.INTERNAL, what, err);
    }
  }

  /** The container's state, or undefined when runc does not know it. */
  async state(id: string): Promise<RuncState | undefined> {
    try {
      return JSON.parse(await this.call(['state', id], `runc state ${id}`)) as RuncState;
    } catch (err) {
      if (isSwarmError(err, ErrorCode.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  async list(): Promise<RuncState[]> {
    const out = await this.call(['list', '--format', 'json'], 'runc list');
    return (JSON.parse(out || 'null') as RuncState[] | null) ?? [];
  }

  /**
   * Starts a created container. Given its init's pid, through the exec fifo as runc start does,
   * without a runc process (exec-fifo.ts); else, or when there is no fifo, `runc start`.
   */
  async start(id: string, o: { initPid?: number } = {}): Promise<void> {
    if (o.initPid && (await startThroughExecFifo(this.root, id, o.initPid))) return;
    await this.call(['start', id], `runc start ${id}`);
  }

  /** Sends a signal; a container that is already stopped is not an error. */
  async kill(id: string, signal: string, opts: { all?: boolean } = {}): Promise<void> {
    try {
      await this.call(['kill', ...(opts.all ? ['--all'] : []), id, signal], `runc kill ${id} ${signal}`);
    } catch (err) {
      if (err instanceof SwarmError && /not running|process already finished|container not running/i.test(err.message)) return;
      throw err;
    }
  }

  /** Deletes runc's state (and the cgroups); a container runc does not know is not an error. */
  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    try {
      await this.call(['delete', ...(opts.force ? ['--force'] : []), id], `runc delete ${id}`);
    } catch (err) {
      if (isSwarmError(err, ErrorCode.NOT_FOUND)) return;
      throw err;
    }
  }

  /** Pids of the container's processes (host pid namespace). */
  async ps(id: string): Promise<number[]> {
    const out = await this.call(['ps', '--format', 'json', id], `runc ps ${id}`);
    return (JSON.parse(out || 'null') as number[] | null) ?? [];
  }

  /** One `runc events --stats` sample. */
  async eventsStats(id: string): Promise<Record<string, unknown>> {
    const out = await this.call(['events', '--stats', id], `runc events --stats ${id}`);
    return JSON.parse(out) as Record<string, unknown>;
  }

  /** Runs a process in the container and collects its output. */
  exec(id: string, argv: readonly string[], o: RuncExecOptions = {}): Promise<RuncExecResult> {
    const a = ['exec'];
    for (const e of o.env ?? []) a.push('--env', e);
    if (o.cwd) a.push('--cwd', o.cwd);
    if (o.user) a.push('--user', o.user);
    if (o.pidFile) a.push('--pid-file', o.pidFile);
    a.push(id, ...argv);
    const max = o.maxOutput ?? 1 << 20;
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, this.args(a), { stdio: ['ignore', 'pipe', 'pipe'], signal: o.signal });
      const collect = () => {
        const chunks: Buffer[] = [];
        let size = 0;
        return {
          push: (b: Buffer) => {
            if (size >= max) return;
            chunks.push(b.subarray(0, max - size));
            size += b.length;
          },
          text: () => Buffer.concat(chunks).toString(),
        };
      };
      const out = collect();
      const err = collect();
      child.stdout.on('data', out.push);
      child.stderr.on('data', err.push);
      child.on('error', (e) => reject(wrapError(ErrorCode.INTERNAL, `runc exec ${id}`, e)));
      child.on('close', (code, sig) => {
        const stderr = err.text();
        // runc's own failures (no such container, bad cwd) come with its log line and exit 1 or 255.
        if (code !== 0 && /level=error msg=/.test(stderr) && /exec failed|not exist|not running|cannot exec/i.test(stderr)) {
          const e = NOT_EXIST.test(stderr) && /container/.test(stderr)
            ? notFound(`runc exec ${id}: ${stderr.trim()}`)
            : new SwarmError(ErrorCode.FAILED_PRECONDITION, `runc exec ${id}: ${stderr.trim()}`);
          return reject(e);
        }
        resolve({ exitCode: code ?? 128 + signalNumber(sig), stdout: out.text(), stderr });
      });
    });
  }
}

function signalNumber(sig: NodeJS.Signals | null): number {
  return sig ? ((osConstants.signals as Record<string, number>)[sig] ?? 9) : 127;
}
