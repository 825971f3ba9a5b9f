/**
 * The local cluster's registry: Debian's `docker-registry` (distribution 2.8) with its own config
 * and storage under the cluster dir, listening on the bridge's gateway address (every host
 * reaches it). Started detached so it outlives `swarmctl local up`.
 */
import { spawn } from 'node:child_process';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { unavailable } from '@swarmd/common/errors';
import { isAlive } from './processes.js';

export interface StartedRegistry {
  addr: string;
  dir: string;
  log: string;
  pid: number;
}

export async function startRegistry(o: { dir: string; address: string; port?: number; timeoutMs?: number }): Promise<StartedRegistry> {
  const port = o.port ?? 5000;
  await mkdir(join(o.dir, 'data'), { recursive: true });
  const config = join(o.dir, 'config.yml');
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(o.dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${o.address}:${port}`,
      '',
    ].join('\n'),
  );
  const log = join(o.dir, 'registry.log');
  const fh = await open(log, 'a');
  const child = spawn('docker-registry', ['serve', config], { detached: true, stdio: ['ignore', fh.fd, fh.fd] });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.unref();
  await fh.close();
  const addr = `${o.address}:${port}`;
  const deadline = Date.now() + (o.timeoutMs ?? 15_000);
  for (;;) {
    const err = await Promise.race([spawnError, sleep(100).then(() => undefined)]);
    if (err) throw unavailable(`docker-registry: ${err.message} (apt-get install docker-registry)`);
    try {
      const r = await fetch(`http://${addr}/v2/`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (!isAlive(child.pid) || Date.now() > deadline) throw unavailable(`docker-registry did not start on ${addr}; see ${log}`);
  }
  return { addr, dir: o.dir, log, pid: child.pid! };
}
