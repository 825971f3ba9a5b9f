/**
 * The container service: overlayfs rootfs, an OCI bundle, runc under a root of its own, and
 * conmon as each container's monitor, the way CRI-O does it. Everything about a container is on
 * disk under `<root>/containers/<id>/`, so a new ContainerService on the same root (an agent
 * restart) finds its containers, their status and their exit codes:
 *
 *   config.json        the OCI bundle's spec
 *   rootfs/            the overlay mount (upper/, work/, snapshot.json: the snapshot)
 *   etc/               generated hosts, hostname, resolv.conf (bind-mounted)
 *   container.log      k8s-file log (conmon)
 *   exit/<id>          exit code (conmon), monitor/{exit,oom} (conmon's persist dir)
 *   conmon.pid, container.pid, conmon.log
 *   meta.json          what we asked for, and the exit once reaped
 *
 * Cgroups sit under one parent per instance (`/swarmd-<instance>/<id>`), so several swarmd on a
 * machine do not see each other's containers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import { cp, mkdir, readFile, readdir, rm, stat, writeFile, rename } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  SwarmError,
  ErrorCode,
  alreadyExists,
  describeError,
  failedPrecondition,
  invalidArgument,
  isSwarmError,
  notFound,
  nullLogger,
  type Logger,
} from '@swarmd/common';
import { Mounter, mountsUnder } from '../mount/mounter.js';
import { OverlaySnapshotter } from '../snapshots/overlay-snapshotter.js';
import { buildSpec, defaultSeccompProfile, ownNofileLimit, hostnameOf, hostsFile, normalizeSignal, planProcess, resolvConfFile } from '../oci/spec-builder.js';
import { resolveInRoot } from '../oci/rootfs-path.js';
import { resolveUser } from '../oci/user.js';
import type { ContainerSpec, ImageRuntimeConfig, MountSpec } from '../oci/types.js';
import { RuncCli } from '../runc/runc-cli.js';
import { isMonitorAlive, readMonitorExit, spawnMonitor, type MonitorFiles, type PendingMonitor } from '../monitor/conmon.js';
import { checkVolumeDriver, checkVolumeName, VolumeStore } from '../volumes/volume-store.js';
import { cgroupDirs, readCgroupStats, readOomKills, removeCgroup, type CgroupStats } from './cgroups.js';
import { readK8sLog, type LogEntry, type LogReadOptions } from './logs.js';
import { ChangeWaker } from './change-waker.js';

export type ContainerStatus = 'created' | 'running' | 'exited';

export interface ExitStatus {
  exitCode: number;
  /** The kernel OOM-killed a process of the container (its memory limit was hit). */
  oomKilled: boolean;
  exitedAt: Date;
  /** Set when the exit code could not be known (the monitor was gone). */
  error?: string;
}

export interface ImageInput {
  /** Unpacked layer directories, top first (the image store's layerDirs()). */
  layers: string[];
  config?: ImageRuntimeConfig;
}

export interface CreateContainerOptions {
  image: ImageInput;
  spec?: ContainerSpec;
  /** Join this network namespace (e.g. /run/netns/X); otherwise the container gets a new one. */
  netnsPath?: string;
  name?: string;
}

export interface ContainerInfo {
  id: string;
  name?: string;
  status: ContainerStatus;
  /** The container's init process (host pid namespace), while it runs. */
  pid?: number;
  createdAt: Date;
  startedAt?: Date;
  exit?: ExitStatus;
  image: ImageInput;
  spec: ContainerSpec;
  netnsPath?: string;
  stopSignal: string;
  hostname: string;
  bundle: string;
  rootfs: string;
  logPath: string;
  cgroupsPath: string;
  conmonPid?: number;
}

export interface ExecOptions {
  env?: string[];
  cwd?: string;
  /** uid[:gid]; the container's user by default. */
  user?: string;
  /** Kill the process (SIGKILL) and fail with DEADLINE_EXCEEDED after this long. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ContainerStats extends CgroupStats {
  id: string;
}

export interface ContainerServiceOptions {
  /** The runtime state dir (DESIGN.md: `<state>/runtime`). */
  root: string;
  /** Names the cgroup parent; by default derived from `root`, so a restarted agent gets the same one. */
  instance?: string;
  /** Absolute cgroup path all containers go under (default `/swarmd-<instance>`). */
  cgroupParent?: string;
  runc?: string;
  conmon?: string;
  logger?: Logger;
  /** The host's resolv.conf, copied (without loopback resolvers) into containers. */
  hostResolvConf?: string;
  /** How long conmon may take for `runc create`. */
  createTimeoutMs?: number;
}

interface ContainerMeta {
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
  exit?: { exitCode: number; oomKilled: boolean; exitedAt: string; error?: string };
  /** Named volumes the container mounts (for "in use" checks). */
  volumes: string[];
}

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Longest sleep of an exit wait or a log follow between checks when no change wakes it. */
const WAIT_POLL_MS = 1_000;

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

async function exists(p: string): Promise<boolean> {
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

export class ContainerService {
  readonly root: string;
  readonly instance: string;
  readonly cgroupParent: string;
  readonly runc: RuncCli;
  readonly volumes: VolumeStore;
  private readonly containersDir: string;
  private readonly snapshotter: OverlaySnapshotter;
  private readonly mounter: Mounter;
  private readonly log: Logger;
  private readonly conmonPath: string;
  private readonly runcPath: string;
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Created by this process and not started since: inspect knows their state without runc. */
  private readonly createdHere = new Set<string>();

  constructor(private readonly opts: ContainerServiceOptions) {
    this.root = resolve(opts.root);
    this.instance = opts.instance ?? createHash('sha256').update(this.root).digest('hex').slice(0, 10);
    this.cgroupParent = opts.cgroupParent ?? `/swarmd-${this.instance}`;
    if (!this.cgroupParent.startsWith('/')) throw invalidArgument(`cgroupParent ${this.cgroupParent} must be absolute`);
    this.log = (opts.logger ?? nullLogger).child({ component: 'runtime/containers' });
    this.runcPath = findBinary(opts.runc ?? 'runc');
    this.conmonPath = findBinary(opts.conmon ?? 'conmon');
    this.runc = new RuncCli(join(this.root, 'runc'), this.runcPath);
    this.containersDir = join(this.root, 'containers');
    this.snapshotter = new OverlaySnapshotter(this.containersDir);
    this.mounter = new Mounter(this.log);
    this.volumes = new VolumeStore(this.root, (name) => this.volumeInUse(name));
  }

  // ---- paths ----------------------------------------------------------------------------

  dir(id: string): string {
    if (!ID.test(id)) throw invalidArgument(`container id "${id}" is not valid (letters, digits, _ . -, at most 128)`);
    return join(this.containersDir, id);
  }

  private files(id: string): MonitorFiles & { meta: string; config: string; rootfs: string; etc: string } {
    const d = this.dir(id);
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

  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
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

  private async readMeta(id: string): Promise<ContainerMeta> {
    const f = this.files(id);
    try {
      return JSON.parse(await readFile(f.meta, 'utf8')) as ContainerMeta;
    } catch (err) {
      throw notFound(`container ${id} not found`, { cause: err });
    }
  }

  private writeMeta(m: ContainerMeta): Promise<void> {
    return writeJsonAtomic(this.files(m.id).meta, m);
  }

  // ---- create ---------------------------------------------------------------------------

  /**
   * Makes the rootfs, the bundle and the monitor; the container is then created in runc,
   * waiting for start(). On any error nothing is left behind (no mount, dir, cgroup, process,
   * or volume this call made).
   */
  async create(id: string, o: CreateContainerOptions): Promise<ContainerInfo> {
    const f = this.files(id);
    return this.withLock(id, async () => {
      if (await exists(f.bundle)) throw alreadyExists(`container ${id} already exists`);
      const spec = o.spec ?? {};
      const image = { layers: [...o.image.layers], config: o.image.config ?? {} };
      // Everything that can be checked before touching the disk.
      if (image.layers.length === 0) throw invalidArgument(`container ${id}: the image has no layers (no rootfs to run)`);
      for (const l of image.layers) {
        if (!(await stat(l).then((s) => s.isDirectory(), () => false))) {
          throw notFound(`container ${id}: rootfs layer ${l} does not exist (is the image unpacked?)`);
        }
      }
      planProcess(image.config, spec);
      const stopSignal = normalizeSignal(spec.stopSignal ?? (image.config.StopSignal || 'SIGTERM'));
      if (o.netnsPath !== undefined && !(await exists(o.netnsPath))) {
        throw invalidArgument(`container ${id}: network namespace ${o.netnsPath} does not exist`);
      }
      await this.checkMounts(spec.mounts ?? []);

      const hostname = hostnameOf(id, spec);
      const meta: ContainerMeta = {
        version: 1,
        id,
        ...(o.name !== undefined ? { name: o.name } : {}),
        createdAt: new Date().toISOString(),
        image,
        spec,
        ...(o.netnsPath !== undefined ? { netnsPath: o.netnsPath } : {}),
        stopSignal,
        hostname,
        cgroupsPath: `${this.cgroupParent}/${id}`,
        volumes: (spec.mounts ?? []).filter((m) => m.type === 'volume').map((m) => m.source),
      };
      const createdVolumes: string[] = [];
      let monitor: PendingMonitor | undefined;
      const phases: Record<string, number> = {};
      let t0 = performance.now();
      const phase = (name: string) => {
        const t1 = performance.now();
        phases[name] = Math.round((t1 - t0) * 10) / 10;
        t0 = t1;
      };
      await mkdir(this.containersDir, { recursive: true });
      await mkdir(f.bundle);
      try {
        // conmon starts up while we mount and write the bundle; it runs runc on go().
        monitor = spawnMonitor({
          id,
          files: f,
          conmon: this.conmonPath,
          runc: this.runcPath,
          runcRoot: this.runc.root,
          timeoutMs: this.opts.createTimeoutMs ?? 30_000,
        });
        await Promise.all([f.rootfs, f.etc, f.exitDir, f.persistDir, f.socketDir].map((d) => mkdir(d, { recursive: true })));
        const mounts = await this.snapshotter.prepare(id, image.layers);
        phase('prepare');
        const etcFiles = { hosts: join(f.etc, 'hosts'), hostname: join(f.etc, 'hostname'), resolvConf: join(f.etc, 'resolv.conf') };
        const writeEtc = async () => {
          const hostResolv = await readFile(this.opts.hostResolvConf ?? '/etc/resolv.conf', 'utf8').catch(() => '');
          await Promise.all([
            writeFile(etcFiles.hosts, hostsFile(hostname, spec.extraHosts)),
            writeFile(etcFiles.hostname, hostname + '\n'),
            writeFile(etcFiles.resolvConf, resolvConfFile(spec.dns, hostResolv)),
          ]);
        };
        const mountAll = async () => {
          for (const m of mounts) await this.mounter.mount(m, f.rootfs);
        };
        // Both finish before an error is handled, so cleanup never races a mount in flight.
        const settled = await Promise.allSettled([mountAll(), writeEtc()]);
        for (const r of settled) if (r.status === 'rejected') throw r.reason;
        phase('mount');
        const user = await resolveUser(f.rootfs, spec.user ?? image.config.User ?? '');

        const mountSources: (string | undefined)[] = [];
        for (const m of spec.mounts ?? []) {
          if (m.type === 'bind') mountSources.push(resolve(m.source));
          else if (m.type === 'volume') {
            const { volume, created } = await this.volumes.ensure(m.source, { ...(m.driver ? { driver: m.driver } : {}) });
            if (created) {
              createdVolumes.push(m.source);
              if (!m.noCopy) await this.copyUp(f.rootfs, m.target, volume.mountpoint);
            }
            mountSources.push(volume.mountpoint);
          } else mountSources.push(undefined);
        }

        const oci = buildSpec({
          id,
          rootfs: f.rootfs,
          image: image.config,
          spec,
          user,
          ...(o.netnsPath !== undefined ? { netnsPath: o.netnsPath } : {}),
          cgroupsPath: meta.cgroupsPath,
          etcFiles,
          mountSources,
          seccomp: defaultSeccompProfile(),
          defaultNofile: ownNofileLimit(),
        });
        await writeFile(f.config, JSON.stringify(oci, null, 1));
        await this.writeMeta(meta);
        phase('bundle');

        const started = await monitor.go();
        phase('runcCreate');
        meta.conmonPid = started.conmonPid;
        meta.pid = started.containerPid;
        await this.writeMeta(meta);
        phase('meta');
        this.createdHere.add(id);
        this.log.info('container created', { id, pid: started.containerPid });
        this.log.debug('create phases (ms)', phases);
      } catch (err) {
        this.log.warn('create failed, cleaning up', { id, err: describeError(err) });
        monitor?.abort();
        await this.destroy(id, meta).catch((e2: unknown) => this.log.error('cleanup after failed create', { id, err: describeError(e2) }));
        for (const v of createdVolumes) await this.volumes.remove(v, { force: true }).catch(() => undefined);
        throw err;
      }
      return this.infoOf(meta, 'created');
    });
  }

  private async checkMounts(mounts: readonly MountSpec[]): Promise<void> {
    for (const m of mounts) {
      const t = m.target as string | undefined;
      if (!t || !t.startsWith('/')) throw invalidArgument(`mount target "${t ?? ''}" must be an absolute path`);
      switch (m.type) {
        case 'bind':
          if (!m.source || !m.source.startsWith('/')) throw invalidArgument(`bind mount ${t}: source "${m.source}" must be an absolute host path`);
          if (!(await exists(m.source))) throw invalidArgument(`bind mount ${t}: source ${m.source} does not exist`);
          break;
        case 'volume':
          checkVolumeDriver(m.driver, m.source);
          checkVolumeName(m.source);
          break;
        case 'tmpfs':
          break;
        default:
          throw invalidArgument(`mount ${t}: type "${(m as { type: string }).type}" is not supported (bind, volume, tmpfs)`);
      }
    }
  }

  /** A new volume starts with what the image has at the mount point (Docker's copy-up). */
  private async copyUp(rootfs: string, target: string, data: string): Promise<void> {
    const src = await resolveInRoot(rootfs, target);
    const st = await stat(src).catch(() => undefined);
    if (!st?.isDirectory()) return;
    const entries = await readdir(src);
    for (const e of entries) await cp(join(src, e), join(data, e), { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  }

  // ---- start / signals / exit -----------------------------------------------------------

  /** Starts a created container; resolves with its init pid once the process runs. */
  async start(id: string): Promise<number> {
    return this.withLock(id, async () => {
      const meta = await this.readMeta(id);
      if (meta.startedAt || meta.exit) throw failedPrecondition(`container ${id} was already started`);
      this.createdHere.delete(id);
      try {
        await this.runc.start(id); // runc refuses a container that is not in the created state
      } catch (err) {
        const st = await this.runc.state(id).catch(() => undefined);
        throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `start ${id}: not startable (runc: ${st?.status ?? 'gone'})`, { cause: err });
      }
      meta.startedAt = new Date().toISOString();
      await this.writeMeta(meta);
      this.log.info('container started', { id, pid: meta.pid });
      return meta.pid!;
    });
  }

  async kill(id: string, signal: string | number = 'SIGKILL'): Promise<void> {
    const sig = normalizeSignal(signal);
    const info = await this.inspect(id);
    if (info.status === 'exited') throw failedPrecondition(`container ${id} is not running`);
    await this.runc.kill(id, sig);
  }

  /**
   * Stops a container: its stop signal (spec, else image StopSignal, else SIGTERM), then
   * SIGKILL once `timeoutMs` (default 10 s) has passed. Resolves with the exit.
   */
  async stop(id: string, o: { signal?: string | number; timeoutMs?: number } = {}): Promise<ExitStatus> {
    const info = await this.inspect(id);
    if (info.exit) return info.exit;
    const sig = normalizeSignal(o.signal ?? info.stopSignal);
    const timeoutMs = o.timeoutMs ?? 10_000;
    if (info.status === 'created') {
      // Never started: there is nothing to ask politely.
      await this.runc.kill(id, 'SIGKILL');
      return this.wait(id);
    }
    await this.runc.kill(id, sig);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      return await this.wait(id, { signal: ac.signal });
    } catch (err) {
      if (!ac.signal.aborted) throw err;
    } finally {
      clearTimeout(timer);
    }
    this.log.info('stop timed out, killing', { id, signal: sig, timeoutMs });
    await this.runc.kill(id, 'SIGKILL', { all: true });
    return this.wait(id);
  }

  /**
   * Resolves when the container has exited, with its exit code and whether it was OOM-killed.
   * Woken when conmon writes the exit; the polls between (`pollMs` apart, default 1 s) only
   * catch a monitor that died without writing it.
   */
  async wait(id: string, o: { signal?: AbortSignal; pollMs?: number } = {}): Promise<ExitStatus> {
    const f = this.files(id);
    const waker = new ChangeWaker([f.exitDir, f.persistDir]);
    const delay = o.pollMs ?? WAIT_POLL_MS;
    try {
      for (;;) {
        const exit = await this.withLock(id, () => this.reap(id));
        if (exit) return exit;
        if (o.signal?.aborted) throw new SwarmError(ErrorCode.CANCELLED, `wait ${id}: cancelled`);
        await waker.wait(delay, o.signal);
      }
    } finally {
      waker.close();
    }
  }

  /**
   * Records the exit once conmon has written it (with the OOM verdict, read before the cgroup
   * is gone), then deletes runc's state and so the cgroups. Idempotent; call under the lock.
   */
  private async reap(id: string): Promise<ExitStatus | undefined> {
    const meta = await this.readMeta(id);
    if (meta.exit) return exitOf(meta);
    const f = this.files(id);
    let exit = await readMonitorExit(id, f);
    let error: string | undefined;
    if (!exit) {
      if (await isMonitorAlive(meta.conmonPid ?? 0, id)) return undefined;
      // conmon is gone: it may have just written the exit, or have been killed.
      exit = await readMonitorExit(id, f);
      if (!exit) {
        const st = await this.runc.state(id).catch(() => undefined);
        if (st && st.status !== 'stopped') return undefined; // still runs, unmonitored
        error = 'the monitor (conmon) exited without recording an exit code';
        exit = { exitCode: 255, exitedAt: new Date(), oom: false };
      }
    }
    const oomKills = await readOomKills(meta.cgroupsPath).catch(() => undefined);
    meta.exit = {
      exitCode: exit.exitCode,
      oomKilled: exit.oom || (oomKills ?? 0) > 0,
      exitedAt: exit.exitedAt.toISOString(),
      ...(error ? { error } : {}),
    };
    await this.writeMeta(meta);
    await this.runc.delete(id, { force: true }).catch((err: unknown) => this.log.warn('runc delete after exit', { id, err: describeError(err) }));
    this.log.info('container exited', { id, ...meta.exit });
    return exitOf(meta);
  }

  // ---- exec / stats / logs --------------------------------------------------------------

  /** Runs a process in a running container (health checks use this). */
  async exec(id: string, argv: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
    if (argv.length === 0) throw invalidArgument('exec: no command');
    const info = await this.inspect(id);
    if (info.status !== 'running') throw failedPrecondition(`container ${id} is not running (${info.status})`);
    const pidFile = join(this.dir(id), `exec-${randomBytes(4).toString('hex')}.pid`);
    let timedOut = false;
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            void this.killExec(pidFile);
          }, o.timeoutMs);
    const onAbort = () => void this.killExec(pidFile);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await this.runc.exec(id, argv, {
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

  private async killExec(pidFile: string): Promise<void> {
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

  async stats(id: string): Promise<ContainerStats> {
    const info = await this.inspect(id);
    if (info.status === 'exited') throw failedPrecondition(`container ${id} is not running`);
    const s = await readCgroupStats(info.cgroupsPath);
    if (!s) throw notFound(`container ${id}: cgroup ${info.cgroupsPath} not found`);
    return { id, ...s };
  }

  /** The container's output, line by line; with `follow`, until it exits. */
  async *logs(id: string, o: LogReadOptions = {}): AsyncGenerator<LogEntry> {
    const f = this.files(id);
    await this.readMeta(id);
    const isDone = async () => {
      try {
        return (await this.withLock(id, () => this.reap(id))) !== undefined;
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

  // ---- list / inspect / remove ----------------------------------------------------------

  async inspect(id: string): Promise<ContainerInfo> {
    return this.withLock(id, async () => {
      const exit = await this.reap(id);
      const meta = await this.readMeta(id);
      if (exit) return this.infoOf(meta, 'exited');
      if (meta.startedAt) return this.infoOf(meta, 'running'); // no runc call for the common case
      if (this.createdHere.has(id)) return this.infoOf(meta, 'created'); // nor for one we created and did not start
      // Not recorded as started: ask runc (an agent may have died between `runc start` and meta).
      const st = await this.runc.state(id);
      return this.infoOf(meta, st === undefined || st.status === 'created' ? 'created' : 'running');
    });
  }

  async list(): Promise<ContainerInfo[]> {
    const ids = await readdir(this.containersDir).catch(() => [] as string[]);
    const out: ContainerInfo[] = [];
    for (const id of ids.sort()) {
      if (!ID.test(id)) continue;
      try {
        out.push(await this.inspect(id));
      } catch (err) {
        if (!isSwarmError(err, ErrorCode.NOT_FOUND)) throw err;
      }
    }
    return out;
  }

  /**
   * Removes a container and everything it had: runc state, cgroups, monitor, mounts and its
   * directory (named volumes stay). A running one needs `force` (it is killed first).
   */
  async remove(id: string, o: { force?: boolean } = {}): Promise<void> {
    const dir = this.dir(id);
    if (!(await exists(dir))) throw notFound(`container ${id} not found`);
    await this.withLock(id, async () => {
      const meta = await this.readMeta(id).catch(() => undefined);
      if (meta) {
        let exit = await this.reap(id);
        if (!exit) {
          if (!o.force) throw failedPrecondition(`container ${id} is running: stop it first or remove with force`);
          await this.runc.kill(id, 'SIGKILL', { all: true }).catch(() => undefined);
          for (let i = 0; i < 100 && !exit; i++) {
            await sleep(Math.min(10 * (i + 1), 100));
            exit = await this.reap(id);
          }
        }
      }
      await this.destroy(id, meta);
    });
    this.log.info('container removed', { id });
  }

  /** Tears down whatever exists of a container; each step tolerates what is already gone. */
  private async destroy(id: string, meta: ContainerMeta | undefined): Promise<void> {
    const f = this.files(id);
    this.createdHere.delete(id);
    await this.runc.delete(id, { force: true });
    const conmonPid = meta?.conmonPid ?? Number((await readFile(f.conmonPidFile, 'utf8').catch(() => '0')).trim());
    if (await isMonitorAlive(conmonPid, id)) {
      try {
        process.kill(conmonPid, 'SIGKILL');
      } catch {
        /* gone */
      }
      for (let i = 0; i < 100 && (await isMonitorAlive(conmonPid, id)); i++) await sleep(10);
    }
    await this.mounter.unmountAll(f.bundle);
    const left = await mountsUnder(f.bundle);
    if (left.length) throw new SwarmError(ErrorCode.INTERNAL, `container ${id}: still mounted: ${left.join(', ')}`);
    const cg = meta?.cgroupsPath ?? `${this.cgroupParent}/${id}`;
    const busy = await removeCgroup(cg);
    if (busy.length) this.log.warn('cgroup left behind (busy)', { id, dirs: busy });
    await rm(f.bundle, { recursive: true, force: true });
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
  async layerDirsInUse(): Promise<Set<string>> {
    const out = new Set<string>();
    const ids = await readdir(this.containersDir).catch(() => [] as string[]);
    for (const id of ids) {
      const meta = await this.readMeta(id).catch(() => undefined);
      for (const l of meta?.image.layers ?? []) out.add(l);
    }
    return out;
  }

  /** True when a container uses `dir` as a lowerdir (for the image gc's isSnapshotInUse). */
  async usesLowerdir(dir: string): Promise<boolean> {
    return (await this.layerDirsInUse()).has(dir);
  }

  private async volumeInUse(name: string): Promise<boolean> {
    const ids = await readdir(this.containersDir).catch(() => [] as string[]);
    for (const id of ids) {
      const meta = await this.readMeta(id).catch(() => undefined);
      if (meta?.volumes.includes(name)) return true;
    }
    return false;
  }

  private infoOf(meta: ContainerMeta, status: ContainerStatus): ContainerInfo {
    const f = this.files(meta.id);
    return {
      id: meta.id,
      ...(meta.name !== undefined ? { name: meta.name } : {}),
      status,
      ...(status !== 'exited' && meta.pid ? { pid: meta.pid } : {}),
      createdAt: new Date(meta.createdAt),
      ...(meta.startedAt ? { startedAt: new Date(meta.startedAt) } : {}),
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

function exitOf(meta: ContainerMeta): ExitStatus {
  const e = meta.exit!;
  return { exitCode: e.exitCode, oomKilled: e.oomKilled, exitedAt: new Date(e.exitedAt), ...(e.error ? { error: e.error } : {}) };
}

