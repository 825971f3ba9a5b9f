/**
 * A real local OCI registry for tests: Debian's `docker-registry` (distribution 2.8) with its own
 * config and storage under a temp dir, listening on a loopback (or test-host) address.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Teardown } from './teardown.js';

export interface LocalRegistry {
  /** host:port, as used in image references. */
  readonly host: string;
  /** http://host:port */
  readonly url: string;
  readonly dir: string;
  stop(): Promise<void>;
}

export interface StartRegistryOptions {
  /** Address to listen on; loopback by default. */
  address?: string;
  port?: number;
  /** Extra top-level config sections in YAML (e.g. an `auth:` block). */
  extraConfig?: string;
  /** Registers stop() so the registry goes away even when the test fails. */
  t?: Teardown;
}

export async function freePort(address = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, address, () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<LocalRegistry> {
  const address = opts.address ?? '127.0.0.1';
  const dir = await mkdtemp(join(tmpdir(), 'swarmd-registry-'));
  const port = opts.port ?? (await freePort(address));
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${address}:${port}`,
    opts.extraConfig ?? '',
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);
  const logs: string[] = [];
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => logs.push(d.toString()));
  child.stderr?.on('data', (d: Buffer) => logs.push(d.toString()));
  let exited = false;
  const exitedP = new Promise<void>((res) => child.once('exit', () => ((exited = true), res())));
  child.once('error', (e) => logs.push(String(e)));

  const host = `${address}:${port}`;
  const url = `http://${host}`;
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await Promise.race([exitedP, sleep(3000)]);
      if (!exited) child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  };
  opts.t?.teardown(stop);

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`testkit: docker-registry exited at start: ${logs.join('').slice(-500)}`);
    }
    try {
      const r = await fetch(`${url}/v2/`);
      // 200 (open) or 401 (auth configured) both mean it is serving.
      if (r.status === 200 || r.status === 401) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`testkit: docker-registry did not start on ${host}: ${logs.join('').slice(-500)}`);
    }
    await sleep(50);
  }
  return { host, url, dir, stop };
}
