/**
 * The container service: overlayfs rootfs, an OCI bundle, runc under a root of its own, and
 * conmon as each container's monitor, the way CRI-O does it. This file wires the parts and is
 * the API the node agent uses; each part has a file of its own:
 *
 *   container-records.ts   what is on disk per container (`<root>/containers/<id>/`), the lock
 *   bundle.ts              checks, rootfs mount, /etc files, volumes and copy-up, config.json
 *   lifecycle.ts           conmon and runc: create, start, kill, stop, wait/reap, inspect, remove
 *   container-io.ts        exec, stats, logs
 *
 * Cgroups sit under one parent per instance (`/swarmd-<instance>/<id>`), so several swarmd on a
 * machine do not see each other's containers.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { SwarmError, ErrorCode, invalidArgument } from '@swarmd/common/errors';
import { nullLogger } from '@swarmd/common/logger';
import { Mounter } from '../mount/mounter.js';
import { OverlaySnapshotter } from '../snapshots/overlay-snapshotter.js';
import { RuncCli } from '../runc/runc-cli.js';
import { VolumeStore } from '../volumes/volume-store.js';
import { cgroupDirs, removeCgroup } from './cgroups.js';
import type { LogEntry, LogReadOptions } from './logs.js';
import { BundleMaker } from './bundle.js';
import { ContainerRecords } from './container-records.js';
import { ContainerLifecycle } from './lifecycle.js';
import { ContainerIo } from './container-io.js';
import type {
  ContainerInfo,
  ContainerServiceOptions,
  ContainerStats,
  CreateContainerOptions,
  ExecOptions,
  ExecResult,
  ExitStatus,
} from './container-types.js';

/** Finds a program on PATH (and in the sbin dirs root's PATH may lack). */
export function findBinary(name: string): string {
  if (name.includes('/')) return name;
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const d of dirs) {
    if (!d) continue;
    try {
      accessSync(join(d, name), fsConstants.X_OK);
      return join(d, name);
    } catch {
      /* next */
    }
  }
  throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${name} not found on PATH (apt-get install ${name})`);
}

export class ContainerService {
  readonly root: string;
  readonly instance: string;
  readonly cgroupParent: string;
  readonly runc: RuncCli;
  readonly volumes: VolumeStore;
  private readonly records: ContainerRecords;
  private readonly lifecycle: ContainerLifecycle;
  private readonly io: ContainerIo;

  constructor(opts: ContainerServiceOptions) {
    this.root = resolve(opts.root);
    this.instance = opts.instance ?? createHash('sha256').update(this.root).digest('hex').slice(0, 10);
    this.cgroupParent = opts.cgroupParent ?? `/swarmd-${this.instance}`;
    if (!this.cgroupParent.startsWith('/')) throw invalidArgument(`cgroupParent ${this.cgroupParent} must be absolute`);
    const log = (opts.logger ?? nullLogger).child({ component: 'runtime/containers' });
    const runcPath = findBinary(opts.runc ?? 'runc');
    const conmonPath = findBinary(opts.conmon ?? 'conmon');
    this.runc = new RuncCli(join(this.root, 'runc'), runcPath);
    const records = new ContainerRecords(join(this.root, 'containers'));
    this.records = records;
    this.volumes = new VolumeStore(this.root, (name) => records.volumeInUse(name));
    const bundles = new BundleMaker({
      snapshotter: new OverlaySnapshotter(records.dir),
      mounter: new Mounter(log),
      volumes: this.volumes,
      ...(opts.hostResolvConf !== undefined ? { hostResolvConf: opts.hostResolvConf } : {}),
    });
    this.lifecycle = new ContainerLifecycle({
      records,
      bundles,
      runc: this.runc,
      volumes: this.volumes,
      log,
      conmonPath,
      runcPath,
      runtimeWrapperPath: join(this.root, 'runc-wrapper.sh'),
      cgroupParent: this.cgroupParent,
      ...(opts.createTimeoutMs !== undefined ? { createTimeoutMs: opts.createTimeoutMs } : {}),
    });
    this.io = new ContainerIo({
      records,
      runc: this.runc,
      inspect: (id) => this.lifecycle.inspect(id),
      exited: (id) => this.lifecycle.exited(id),
    });
  }

  /** A container's directory (its bundle). */
  dir(id: string): string {
    return this.records.dirOf(id);
  }

  /**
   * Makes the rootfs, the bundle and the monitor; the container is then created in runc,
   * waiting for start(), or, when `o.startNow()` returns true right before runc runs, created
   * and started by one runc process (`runc run --detach`): the result then says status
   * 'running' and `startedByCreate`, and start() is a no-op. On any error nothing is left
   * behind (no mount, dir, cgroup, process, or volume this call made).
   */
  create(id: string, o: CreateContainerOptions): Promise<ContainerInfo> {
    return this.lifecycle.create(id, o);
  }

  /**
   * Starts a created container; resolves with its init pid once the process runs. A container
   * create() started (`startedByCreate`) is left as it is: its pid.
   */
  start(id: string): Promise<number> {
    return this.lifecycle.start(id);
  }

  kill(id: string, signal: string | number = 'SIGKILL'): Promise<void> {
    return this.lifecycle.kill(id, signal);
  }

  /**
   * Stops a container: its stop signal (spec, else image StopSignal, else SIGTERM), then
   * SIGKILL once `timeoutMs` (default 10 s) has passed. Resolves with the exit.
   */
  stop(id: string, o: { signal?: string | number; timeoutMs?: number } = {}): Promise<ExitStatus> {
    return this.lifecycle.stop(id, o);
  }

  /** Resolves when the container has exited, with its exit code and whether it was OOM-killed. */
  wait(id: string, o: { signal?: AbortSignal; pollMs?: number } = {}): Promise<ExitStatus> {
    return this.lifecycle.wait(id, o);
  }

  /** Runs a process in a running container (health checks use this). */
  exec(id: string, argv: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
    return this.io.exec(id, argv, o);
  }

  stats(id: string): Promise<ContainerStats> {
    return this.io.stats(id);
  }

  /** The container's output, line by line; with `follow`, until it exits. */
  logs(id: string, o: LogReadOptions = {}): AsyncGenerator<LogEntry> {
    return this.io.logs(id, o);
  }

  inspect(id: string): Promise<ContainerInfo> {
    return this.lifecycle.inspect(id);
  }

  list(): Promise<ContainerInfo[]> {
    return this.lifecycle.list();
  }

  /**
   * Removes a container and everything it had: runc state, cgroups, monitor, mounts and its
   * directory (named volumes stay). A running one needs `force` (it is killed first).
   */
  remove(id: string, o: { force?: boolean } = {}): Promise<void> {
    return this.lifecycle.remove(id, o);
  }

  /** Removes this instance's (empty) cgroup parent; for shutdown of a whole node and tests. */
  async removeCgroupParent(): Promise<string[]> {
    return removeCgroup(this.cgroupParent);
  }

  /** Cgroup directories that exist for a container (empty once it is removed). */
  async cgroupDirsOf(id: string): Promise<string[]> {
    return cgroupDirs(`${this.cgroupParent}/${id}`);
  }

  /**
   * Layer directories some container (of any status) still mounts or may mount: the image
   * half's gc keeps their snapshots (ImageServiceOptions.isSnapshotInUse).
   */
  layerDirsInUse(): Promise<Set<string>> {
    return this.records.layerDirsInUse();
  }

  /** True when a container uses `dir` as a lowerdir (for the image gc's isSnapshotInUse). */
  async usesLowerdir(dir: string): Promise<boolean> {
    return (await this.layerDirsInUse()).has(dir);
  }
}
