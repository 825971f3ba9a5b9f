/**
 * A private dockerd for the benches that compare with Docker: its own --data-root, --exec-root,
 * unix socket, pidfile and cgroup parent under one directory, and its own (supervised) containerd
 * there, so nothing collides with another daemon on the machine. `stop` ends it (SIGTERM, SIGKILL
 * after 15 s), unmounts what is left below its directory and removes its cgroup.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, run, type RunResult } from '@swarmd/common';
import { mountsUnder, removeCgroup } from '@swarmd/runtime';

export interface DockerBinaries {
  dockerd: string;
  docker: string;
}

/** dockerd and the docker CLI, or undefined when either is missing. */
export function findDocker(): DockerBinaries | undefined {
  const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
  const docker = ['/usr/bin/docker', '/usr/local/bin/docker'].find((p) => existsSync(p));
  return dockerd && docker ? { dockerd, docker } : undefined;
}

export function mustFindDocker(): DockerBinaries {
  const d = findDocker();
  if (!d) throw failedPrecondition('docker is not installed: this bench needs /usr/sbin/dockerd and the docker CLI (apt-get install docker.io)');
  return d;
}

export interface DockerdOptions {
  /** Everything of this daemon lives below it. */
  dir: string;
  /** e.g. /swarmd-bench-docker */
  cgroupParent: string;
  /** More dockerd flags (networking, registries...). */
  args: string[];
  /** A network namespace (/run/netns/NAME) to run dockerd in (through `nsenter --net`); default the root one. */
  netns?: string;
}

export class Dockerd {
  private exited = false;

  private constructor(
    readonly bin: DockerBinaries,
    readonly o: DockerdOptions,
    private readonly child: ChildProcess,
  ) {
    child.on('exit', () => (this.exited = true));
  }

  get sock(): string {
    return join(this.o.dir, 'exec', 'docker.sock');
  }

  get log(): string {
    return join(this.o.dir, 'dockerd.log');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Starts dockerd and waits (60 s at most) until it answers. */
  static async start(bin: DockerBinaries, o: DockerdOptions): Promise<Dockerd> {
    const execRoot = join(o.dir, 'exec');
    await mkdir(execRoot, { recursive: true });
    const logFd = openSync(join(o.dir, 'dockerd.log'), 'a');
    // nsenter execs dockerd (no fork for a net namespace): the child is dockerd itself.
    const [cmd, pre] = o.netns ? ['nsenter', [`--net=${o.netns}`, '--', bin.dockerd]] : [bin.dockerd, []];
    // prettier-ignore
    const child = spawn(cmd, [
      ...pre,
      '--data-root', join(o.dir, 'data'),
      '--exec-root', execRoot,
      '--pidfile', join(execRoot, 'dockerd.pid'),
      '-H', `unix://${join(execRoot, 'docker.sock')}`,
      '--storage-driver', 'overlay2',
      '--cgroup-parent', o.cgroupParent,
      ...o.args,
    ], { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    const d = new Dockerd(bin, o, child);
    try {
      for (let i = 0; ; i++) {
        if (d.exited) throw new Error(`dockerd exited: ${await d.logTail()}`);
        if (await d.cli(['version']).then(() => true, () => false)) break;
        if (i > 300) throw new Error(`dockerd did not answer in 60 s: ${await d.logTail()}`);
        await sleep(200);
      }
    } catch (e) {
      await d.stop();
      throw e;
    }
    return d;
  }

  async logTail(chars = 800): Promise<string> {
    return (await readFile(this.log, 'utf8').catch(() => '')).slice(-chars);
  }

  cli(args: string[]): Promise<RunResult> {
    return run(this.bin.docker, ['-H', `unix://${this.sock}`, ...args]);
  }

  /** GET on the Engine API over the unix socket (POST with `body` as JSON when given), as JSON. */
  api<T>(path: string, timeoutMs = 5_000, body?: unknown): Promise<T> {
    const method = body === undefined ? 'GET' : 'POST';
    const what = `docker API ${method} ${path}`;
    return new Promise((res, rej) => {
      const headers = body === undefined ? {} : { 'Content-Type': 'application/json' };
      const req = request({ socketPath: this.sock, path, method, headers, timeout: timeoutMs }, (r) => {
        let text = '';
        r.on('data', (d: Buffer) => (text += d.toString()));
        r.on('end', () => {
          if ((r.statusCode ?? 500) >= 400) return rej(new Error(`${what}: ${r.statusCode} ${text.trim()}`));
          try {
            res(JSON.parse(text) as T);
          } catch (e) {
            rej(new Error(`${what}: not JSON`, { cause: e }));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${what}: no answer in ${timeoutMs} ms`)));
      req.on('error', rej);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  /** Ends dockerd (and its containerd), unmounts what is left below its directory, removes its cgroup. */
  async stop(): Promise<void> {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      for (let i = 0; i < 150 && !this.exited; i++) await sleep(100);
      if (!this.exited) this.child.kill('SIGKILL');
      for (let i = 0; i < 50 && !this.exited; i++) await sleep(100);
    }
    // What it started and left behind (its containerd, shims): their command lines name our dir.
    for (const pid of await processesNaming(this.o.dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const m of await mountsUnder(this.o.dir)) await run('umount', ['-l', m]).catch(() => undefined);
    await removeCgroup(this.o.cgroupParent);
  }
}

async function processesNaming(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(`${dir}/`)) out.push(Number(e));
  }
  return out;
}
