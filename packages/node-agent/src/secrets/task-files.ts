/**
 * A task's secrets and configs on its node: written onto a tmpfs of the task's own
 * (DIR/secrets/TASKID, 0700, in memory only: never on disk) and bind-mounted read-only into the
 * container at each reference's target (/run/secrets/NAME by default for secrets). The data
 * comes from the assignments (only those of this node's tasks), held in the agent's memory.
 * Removing the task unmounts the tmpfs, and the data is gone from the node.
 */
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '@swarmd/common/exec';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import type { Config, Secret, Task } from '@swarmd/proto';
import type { MountSpec } from '@swarmd/runtime';
import { PermanentError } from '../executor/executor.js';

/** Where the data comes from: the worker's assignment set. */
export interface TaskDataSource {
  secret(id: string): Secret | undefined;
  config(id: string): Config | undefined;
}

export interface TaskFilesOptions {
  stateDir: string;
  source: TaskDataSource;
  logger?: Logger;
}

/** Does a task use secrets or configs (and so need a tmpfs)? */
export const usesData = (t: Task): boolean => (t.spec?.container?.secrets.length ?? 0) + (t.spec?.container?.configs.length ?? 0) > 0;

function owner(v: string | undefined, what: string, name: string): number {
  const s = v || '0';
  if (!/^\d+$/.test(s)) throw new PermanentError(`${name}: ${what} "${s}" must be numeric`);
  return Number(s);
}

export class TaskFiles {
  private readonly log: Logger;
  constructor(private readonly o: TaskFilesOptions) {
    this.log = o.logger ?? nullLogger;
  }

  dirOf(taskId: string): string {
    return join(this.o.stateDir, 'secrets', taskId);
  }

  /** Writes the task's files (a fresh tmpfs each time) and returns the container's bind mounts. */
  async prepare(t: Task): Promise<MountSpec[]> {
    const c = t.spec?.container;
    if (!c || !usesData(t)) return [];
    const items: { file: string; data: Uint8Array; target: string; uid: number; gid: number; mode: number }[] = [];
    c.secrets.forEach((r, i) => {
      const s = this.o.source.secret(r.secretId);
      if (!s) throw new Error(`secret ${r.secretName || r.secretId} has not reached this node (yet)`);
      items.push({ file: `secret-${i}`, data: s.spec?.data ?? new Uint8Array(), target: r.file?.name || `/run/secrets/${r.secretName}`, uid: owner(r.file?.uid, 'uid', r.secretName), gid: owner(r.file?.gid, 'gid', r.secretName), mode: r.file?.mode || 0o444 });
    });
    c.configs.forEach((r, i) => {
      const s = this.o.source.config(r.configId);
      if (!s) throw new Error(`config ${r.configName || r.configId} has not reached this node (yet)`);
      items.push({ file: `config-${i}`, data: s.spec?.data ?? new Uint8Array(), target: r.file?.name || `/${r.configName}`, uid: owner(r.file?.uid, 'uid', r.configName), gid: owner(r.file?.gid, 'gid', r.configName), mode: r.file?.mode || 0o444 });
    });
    const dir = this.dirOf(t.id);
    await this.remove(t.id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await run('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700,nosuid,nodev,noexec', 'tmpfs', dir]);
    for (const it of items) {
      const p = join(dir, it.file);
      await writeFile(p, it.data, { mode: 0o400 });
      await chown(p, it.uid, it.gid);
      await chmod(p, it.mode);
    }
    this.log.info('task secrets and configs written', { task: t.id, secrets: c.secrets.length, configs: c.configs.length });
    return items.map((it) => ({ type: 'bind' as const, source: join(dir, it.file), target: it.target, readOnly: true }));
  }

  /** Unmounts and removes the task's files; nothing to do when there are none. */
  async remove(taskId: string): Promise<void> {
    const dir = this.dirOf(taskId);
    await run('umount', [dir]).catch(() => run('umount', ['-l', dir]).catch(() => undefined));
    await rm(dir, { recursive: true, force: true });
  }
}
