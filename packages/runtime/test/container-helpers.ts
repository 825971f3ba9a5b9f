/** Test helpers for the container half: a temp runtime root with busybox unpacked, torn down even on failure. */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@swarmd/common';
import { busyboxRootfsEntries, tarLayer, type Teardown } from '@swarmd/testkit';
import { ContainerService, mountsUnder, removeCgroup, type ContainerServiceOptions, type ImageInput } from '../src/index.js';

let busyboxTar: Promise<Buffer> | undefined;

/** Unpacks testkit's busybox layer (with system tar, until the image store does it) into `dir`. */
export async function unpackBusybox(dir: string): Promise<void> {
  busyboxTar ??= busyboxRootfsEntries().then((e) => tarLayer(e));
  await mkdir(dir, { recursive: true });
  await run('tar', ['-x', '-C', dir], { input: await busyboxTar });
}

export interface TestRuntime {
  root: string;
  svc: ContainerService;
  busybox: ImageInput;
  /** Another service on the same root (an agent restart). */
  reopen: () => ContainerService;
}

/** Kills every conmon (and its container) whose command line names `root`. */
export async function killConmonsUnder(root: string): Promise<void> {
  for (const p of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('conmon') || cmd.includes('/conmon\0')) {
      if (cmd.includes(root)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }
}

export async function newRuntime(t: Teardown, o: Partial<ContainerServiceOptions> = {}): Promise<TestRuntime> {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-rt-'));
  const instance = `t${randomBytes(4).toString('hex')}`;
  const layer = join(root, 'snapshots', 'busybox', 'fs');
  const make = () => new ContainerService({ root, instance, ...o });
  const svc = make();
  t.teardown(async () => {
    // Best effort, in an order that works even when the test failed halfway.
    for (const c of await svc.list().catch(() => [])) await svc.remove(c.id, { force: true }).catch(() => undefined);
    for (const r of await svc.runc.list().catch(() => [])) {
      await run(svc.runc.binary, ['--root', svc.runc.root, 'delete', '--force', r.id], { okCodes: [0, 1] }).catch(() => undefined);
    }
    await killConmonsUnder(root);
    for (const m of await mountsUnder(root).catch(() => [] as string[])) await run('umount', ['-l', m]).catch(() => undefined);
    await removeCgroup(svc.cgroupParent).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  await unpackBusybox(layer);
  return { root, svc, busybox: { layers: [layer], config: { Env: ['PATH=/bin'], Cmd: ['sh'] } }, reopen: make };
}

/** All log lines of a container, "stream: line". */
export async function logLines(svc: ContainerService, id: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of svc.logs(id)) out.push(`${e.stream}: ${e.line}`);
  return out;
}

/** Follows a container's log until a line matches (or the container exits). */
export async function waitForLog(svc: ContainerService, id: string, re: RegExp, timeoutMs = 20_000): Promise<string> {
  const signal = AbortSignal.timeout(timeoutMs);
  for await (const e of svc.logs(id, { follow: true, signal })) if (re.test(e.line)) return e.line;
  throw new Error(`container ${id}: no log line matching ${String(re)}`);
}

/** True while a process exists (zombies count as gone). */
export async function alive(pid: number): Promise<boolean> {
  const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return st !== undefined && st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
}

export interface RuncCall {
  /** The subcommand: the first argument that is no option and no value of `--root`. */
  sub: string;
  args: string[];
}

/**
 * runc behind a wrapper that logs each call's arguments (give `runc` to newRuntime); `calls()`
 * reads them back, optionally only those naming one container id (an argument equal to it).
 */
export async function loggingRunc(t: Teardown): Promise<{ runc: string; calls: (id?: string) => Promise<RuncCall[]> }> {
  const dir = await mkdtemp(join(tmpdir(), 'runc-calls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const log = join(dir, 'calls');
  const runc = join(dir, 'runc');
  const realRunc = (await run('sh', ['-c', 'command -v runc'])).stdout.trim();
  await writeFile(runc, `#!/bin/sh\necho "$*" >> ${log}\nexec ${realRunc} "$@"\n`, { mode: 0o755 });
  const calls = async (id?: string) => {
    const lines = (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean);
    return lines
      .map((l) => {
        const args = l.split(' ');
        const sub = args.find((a, i) => !a.startsWith('-') && args[i - 1] !== '--root') ?? '';
        return { sub, args };
      })
      .filter((c) => id === undefined || c.args.includes(id));
  };
  return { runc, calls };
}
