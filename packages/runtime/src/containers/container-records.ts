/**
 * The record of each container on disk, under `<root>/containers/<id>/`, so a new
 * ContainerService on the same root (an agent restart) finds its containers, their status and
 * their exit codes:
 *
 *   config.json        the OCI bundle's spec
 *   rootfs/            the overlay mount (upper/, work/, snapshot.json: the snapshot)
 *   etc/               generated hosts, hostname, resolv.conf (bind-mounted)
 *   container.log      k8s-file log (conmon)
 *   exit/<id>          exit code (conmon), monitor/{exit,oom} (conmon's persist dir)
 *   conmon.pid, container.pid, conmon.log
 *   meta.json          what we asked for, and the exit once reaped
 *
 * Also the lock that lets one step at a time touch a container.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument, notFound } from '@swarmd/common/errors';
import type { MonitorFiles } from '../monitor/conmon.js';
import type { ContainerSpec } from '../oci/types.js';
import type { ContainerInfo, ContainerStatus, ExitStatus, ImageInput } from './container-types.js';

export interface ContainerMeta {
  version: 1;
  id: string;
  name?: string;
  createdAt: string;
  image: ImageInput;
  spec: ContainerSpec;
  netnsPath?: string;
  stopSignal: string;
  hostname: string;
  cgroupsPath: string;
  conmonPid?: number;
  pid?: number;
  startedAt?: string;
  /** Created and started by one runc process (`run --detach`): start() is a no-op. */
  startedByCreate?: true;
  exit?: { exitCode: number; oomKilled: boolean; exitedAt: string; error?: string };
  /** Named volumes the container mounts (for "in use" checks). */
  volumes: string[];
}

export interface ContainerFiles extends MonitorFiles {
  meta: string;
  config: string;
  rootfs: string;
  etc: string;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export async function pathExists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, JSON.stringify(value, null, 1));
  await rename(tmp, file);
}

export class ContainerRecords {
  private readonly locks = new Map<string, Promise<unknown>>();

  /** `dir` is `<root>/containers`. */
  constructor(readonly dir: string) {}

  /** A container's directory (its bundle); INVALID_ARGUMENT for a bad id. */
  dirOf(id: string): string {
    if (!ID.test(id)) throw invalidArgument(`container id "${id}" is not valid (letters, digits, _ . -, at most 128)`);
    return join(this.dir, id);
  }

  files(id: string): ContainerFiles {
    const d = this.dirOf(id);
    return {
      bundle: d,
      logPath: join(d, 'container.log'),
      exitDir: join(d, 'exit'),
      persistDir: join(d, 'monitor'),
      socketDir: join(d, 'sock'),
      conmonPidFile: join(d, 'conmon.pid'),
      containerPidFile: join(d, 'container.pid'),
      conmonLog: join(d, 'conmon.log'),
      meta: join(d, 'meta.json'),
      config: join(d, 'config.json'),
      rootfs: join(d, 'rootfs'),
      etc: join(d, 'etc'),
    };
  }

  /** Ids of the containers on disk, sorted (names that are not ids are skipped). */
  async ids(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => ID.test(n)).sort();
  }

  /** Runs `fn` when no other step of this container runs, and holds the others back meanwhile. */
  async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  async read(id: string): Promise<ContainerMeta> {
    const f = this.files(id);
    try {
      return JSON.parse(await readFile(f.meta, 'utf8')) as ContainerMeta;
    } catch (err) {
      throw notFound(`container ${id} not found`, { cause: err });
    }
  }

  write(m: ContainerMeta): Promise<void> {
    return writeJsonAtomic(this.files(m.id).meta, m);
  }

  /** Records of every container that has one (whatever its status). */
  private async all(): Promise<ContainerMeta[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: ContainerMeta[] = [];
    for (const id of names) {
      const meta = await this.read(id).catch(() => undefined);
      if (meta) out.push(meta);
    }
    return out;
  }

  /** Layer directories some container (of any status) still mounts or may mount. */
  async layerDirsInUse(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const meta of await this.all()) for (const l of meta.image.layers) out.add(l);
    return out;
  }

  async volumeInUse(name: string): Promise<boolean> {
    return (await this.all()).some((meta) => meta.volumes.includes(name));
  }

  infoOf(meta: ContainerMeta, status: ContainerStatus): ContainerInfo {
    const f = this.files(meta.id);
    return {
      id: meta.id,
      ...(meta.name !== undefined ? { name: meta.name } : {}),
      status,
      ...(status !== 'exited' && meta.pid ? { pid: meta.pid } : {}),
      createdAt: new Date(meta.createdAt),
      ...(meta.startedAt ? { startedAt: new Date(meta.startedAt) } : {}),
      ...(meta.startedByCreate ? { startedByCreate: true } : {}),
      ...(meta.exit ? { exit: exitOf(meta) } : {}),
      image: meta.image,
      spec: meta.spec,
      ...(meta.netnsPath !== undefined ? { netnsPath: meta.netnsPath } : {}),
      stopSignal: meta.stopSignal,
      hostname: meta.hostname,
      bundle: f.bundle,
      rootfs: f.rootfs,
      logPath: f.logPath,
      cgroupsPath: meta.cgroupsPath,
      ...(meta.conmonPid ? { conmonPid: meta.conmonPid } : {}),
    };
  }
}

export function exitOf(meta: ContainerMeta): ExitStatus {
  const e = meta.exit!;
  return { exitCode: e.exitCode, oomKilled: e.oomKilled, exitedAt: new Date(e.exitedAt), ...(e.error ? { error: e.error } : {}) };
}
