/**
 * Looking into a container that runs: exec a process in it (`runc exec`, with the container's
 * seccomp, capabilities and no-new-privileges; killed on timeout), read its cgroup stats, and
 * read its log (following it until the container exits).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SwarmError, ErrorCode, failedPrecondition, invalidArgument, notFound } from '@swarmd/common/errors';
import type { RuncCli } from '../runc/runc-cli.js';
import { readCgroupStats } from './cgroups.js';
import { ChangeWaker, WAIT_POLL_MS } from './change-waker.js';
import { readK8sLog, type LogEntry, type LogReadOptions } from './logs.js';
import type { ContainerRecords } from './container-records.js';
import type { ContainerInfo, ContainerStats, ExecOptions, ExecResult, ExitStatus } from './container-types.js';

export interface ContainerIoDeps {
  records: ContainerRecords;
  runc: RuncCli;
  /** The container's status (the lifecycle's inspect). */
  inspect(id: string): Promise<ContainerInfo>;
  /** The exit once the container has exited (the lifecycle's reap), else undefined. */
  exited(id: string): Promise<ExitStatus | undefined>;
}

export class ContainerIo {
  constructor(private readonly d: ContainerIoDeps) {}

  /** Runs a process in a running container (health checks use this). */
  async exec(id: string, argv: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
    if (argv.length === 0) throw invalidArgument('exec: no command');
    const info = await this.d.inspect(id);
    if (info.status !== 'running') throw failedPrecondition(`container ${id} is not running (${info.status})`);
    const pidFile = join(this.d.records.dirOf(id), `exec-${randomBytes(4).toString('hex')}.pid`);
    let timedOut = false;
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            void killExec(pidFile);
          }, o.timeoutMs);
    const onAbort = () => void killExec(pidFile);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await this.d.runc.exec(id, argv, {
        ...(o.env ? { env: o.env } : {}),
        ...(o.cwd ? { cwd: o.cwd } : {}),
        ...(o.user ? { user: o.user } : {}),
        pidFile,
      });
      if (timedOut) {
        throw new SwarmError(ErrorCode.DEADLINE_EXCEEDED, `exec in ${id}: ${argv.join(' ')} did not finish in ${o.timeoutMs} ms`, {
          details: { stdout: r.stdout, stderr: r.stderr },
        });
      }
      if (o.signal?.aborted) throw new SwarmError(ErrorCode.CANCELLED, `exec in ${id}: cancelled`);
      return r;
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      await rm(pidFile, { force: true });
    }
  }

  async stats(id: string): Promise<ContainerStats> {
    const info = await this.d.inspect(id);
    if (info.status === 'exited') throw failedPrecondition(`container ${id} is not running`);
    const s = await readCgroupStats(info.cgroupsPath);
    if (!s) throw notFound(`container ${id}: cgroup ${info.cgroupsPath} not found`);
    return { id, ...s };
  }

  /** The container's output, line by line; with `follow`, until it exits. */
  async *logs(id: string, o: LogReadOptions = {}): AsyncGenerator<LogEntry> {
    const f = this.d.records.files(id);
    await this.d.records.read(id);
    const isDone = async () => {
      try {
        return (await this.d.exited(id)) !== undefined;
      } catch {
        return true; // removed
      }
    };
    // Woken when the log grows (conmon writes it in the bundle dir) or the exit is written.
    const waker = o.follow ? new ChangeWaker([f.bundle, f.exitDir]) : undefined;
    try {
      yield* readK8sLog(f.logPath, o, isDone, 100, waker && (() => waker.wait(WAIT_POLL_MS, o.signal)));
    } finally {
      waker?.close();
    }
  }
}

/** SIGKILLs an exec'd process once runc has written its pid (it may not have yet). */
async function killExec(pidFile: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      return;
    }
    await sleep(20);
  }
}
