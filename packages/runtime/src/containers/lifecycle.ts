/**
 * A container's life under conmon and runc: create (the monitor spawned first, the bundle made
 * while it starts up, then `runc create` through it, or `runc run --detach` when the caller may
 * start at once), start, signals, stop, wait for the exit and reap it (exit code and OOM
 * verdict recorded, then `runc delete`), status, and removal of everything a container had.
 * conmon is never our child, so all of it works as well from an agent that did not create the
 * container.
 */
import { constants as osConstants } from 'node:os';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SwarmError, ErrorCode, alreadyExists, describeError, failedPrecondition, isSwarmError, notFound } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { phaseTimer } from '@swarmd/common/phases';
import { hostnameOf, normalizeSignal } from '../oci/spec-builder.js';
import type { RuncCli } from '../runc/runc-cli.js';
import {
  ensureRuntimeWrapper,
  isMonitorAlive,
  readMonitorExit,
  spawnMonitor,
  START_NOW_MARKER,
  STARTED_BY_RUN,
  type PendingMonitor,
} from '../monitor/conmon.js';
import type { VolumeStore } from '../volumes/volume-store.js';
import { processInCgroup, readOomKills, removeCgroup } from './cgroups.js';
import { ChangeWaker, WAIT_POLL_MS } from './change-waker.js';
import type { BundleMaker } from './bundle.js';
import { exitOf, pathExists, type ContainerMeta, type ContainerRecords } from './container-records.js';
import type { ContainerInfo, CreateContainerOptions, ExitStatus } from './container-types.js';

export interface LifecycleDeps {
  records: ContainerRecords;
  bundles: BundleMaker;
  runc: RuncCli;
  volumes: VolumeStore;
  log: Logger;
  conmonPath: string;
  runcPath: string;
  /**
   * Where the runtime wrapper (monitor/conmon.ts's runtimeWrapperScript) is written, once, for
   * conmon to run instead of runc when the caller may start at once (`<root>/runc-wrapper.sh`).
   */
  runtimeWrapperPath: string;
  cgroupParent: string;
  /** How long conmon may take for `runc create` (default 30 s). */
  createTimeoutMs?: number;
}

export class ContainerLifecycle {
  private readonly records: ContainerRecords;
  private readonly runc: RuncCli;
  private readonly log: Logger;
  /** Created by this process and not started since: inspect knows their state without runc. */
  private readonly createdHere = new Set<string>();
  /**
   * `runc delete`s started when an exit was recorded, off the exit's path; destroy waits for
   * them, and runs none of its own after one that succeeded (true).
   */
  private readonly deleting = new Map<string, Promise<boolean>>();
  /** The runtime wrapper, written (or found up to date) once per process. */
  private wrapper: Promise<string> | undefined;

  constructor(private readonly d: LifecycleDeps) {
    this.records = d.records;
    this.runc = d.runc;
    this.log = d.log;
  }

  // ---- create ---------------------------------------------------------------------------

  /** conmon's runtime when a create may start at once: the wrapper, written on first use. */
  private runtimeWrapper(): Promise<string> {
    this.wrapper ??= ensureRuntimeWrapper(this.d.runtimeWrapperPath, this.d.runcPath).catch((err: unknown) => {
      this.wrapper = undefined;
      throw err;
    });
    return this.wrapper;
  }

  /**
   * Makes the rootfs, the bundle and the monitor; the container is then created in runc,
   * waiting for start(), or, when `o.startNow()` says so right before runc runs, created and
   * started by one `runc run --detach` (status 'running', `startedByCreate`). On any error
   * nothing is left behind (no mount, dir, cgroup, process, or volume this call made).
   */
  async create(id: string, o: CreateContainerOptions): Promise<ContainerInfo> {
    const f = this.records.files(id);
    return this.records.locked(id, async () => {
      if (await pathExists(f.bundle)) throw alreadyExists(`container ${id} already exists`);
      const { image, spec, stopSignal } = await this.d.bundles.check(id, o);
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
        cgroupsPath: `${this.d.cgroupParent}/${id}`,
        volumes: (spec.mounts ?? []).filter((m) => m.type === 'volume').map((m) => m.source),
      };
      // Whether the rest of the network is there yet (then one `runc run` may create and start).
      let networkDone = !o.networkReady;
      o.networkReady?.then(
        () => (networkDone = true),
        () => undefined,
      );
      const createdVolumes: string[] = [];
      let monitor: PendingMonitor | undefined;
      const { phase, phases } = phaseTimer();
      await mkdir(this.records.dir, { recursive: true });
      await mkdir(f.bundle);
      let startedByCreate = false;
      try {
        // A caller that may start at once gets conmon with the wrapper as its runtime, which
        // runs `runc run --detach` instead of `runc create` if the marker is there on go().
        const runtime = o.startNow ? await this.runtimeWrapper() : this.d.runcPath;
        // conmon starts up while we mount and write the bundle; it runs runc on go().
        monitor = spawnMonitor({
          id,
          files: f,
          conmon: this.d.conmonPath,
          runc: runtime,
          runcRoot: this.runc.root,
          timeoutMs: this.d.createTimeoutMs ?? 30_000,
        });
        await Promise.all([f.rootfs, f.etc, f.exitDir, f.persistDir, f.socketDir].map((dir) => mkdir(dir, { recursive: true })));
        const net = await this.d.bundles.prepare(
          f,
          {
            id,
            image,
            spec,
            hostname,
            cgroupsPath: meta.cgroupsPath,
            ...(o.netnsPath !== undefined ? { netnsPath: o.netnsPath } : {}),
            ...(o.network ? { network: o.network } : {}),
          },
          createdVolumes,
          phase,
        );
        if (net.netnsPath !== undefined) meta.netnsPath = net.netnsPath;
        if (net.dns) meta.spec = { ...meta.spec, dns: net.dns };
        await this.records.write(meta);
        phase('bundle');

        const startNow = networkDone && o.startNow?.() === true;
        if (startNow) await writeFile(join(f.bundle, START_NOW_MARKER), '');
        const started = await monitor.go();
        phase(startNow ? 'runcRun' : 'runcCreate');
        meta.conmonPid = started.conmonPid;
        meta.pid = started.containerPid;
        let startLater = false;
        if (!startNow && o.networkReady) {
          await o.networkReady;
          phase('networkReady');
          startLater = o.startNow?.() === true;
          if (startLater) {
            await this.runc.start(id, { ...(meta.pid ? { initPid: meta.pid } : {}) });
            phase('fifoStart');
          }
        }
        if (startNow || startLater) {
          if (startNow && !(await pathExists(join(f.bundle, STARTED_BY_RUN)))) {
            // The wrapper did not see conmon's `create` where it expected it: only created.
            this.log.warn('runtime wrapper ran runc create, not run: starting with runc start', { id });
            await this.runc.start(id, { ...(meta.pid ? { initPid: meta.pid } : {}) });
            phase('runcStart');
          }
          meta.startedAt = new Date().toISOString();
          meta.startedByCreate = true;
          startedByCreate = true;
        }
        await this.records.write(meta);
        phase('meta');
        if (!startedByCreate) this.createdHere.add(id);
        this.log.info(startedByCreate ? 'container created and started' : 'container created', { id, pid: started.containerPid });
        this.log.debug('create phases (ms)', phases);
      } catch (err) {
        this.log.warn('create failed, cleaning up', { id, err: describeError(err) });
        monitor?.abort();
        await this.destroy(id, meta).catch((e2: unknown) => this.log.error('cleanup after failed create', { id, err: describeError(e2) }));
        for (const v of createdVolumes) await this.d.volumes.remove(v, { force: true }).catch(() => undefined);
        throw err;
      }
      return this.records.infoOf(meta, startedByCreate ? 'running' : 'created');
    });
  }

  // ---- start / signals / exit -----------------------------------------------------------

  /**
   * Starts a created container; resolves with its init pid once the process runs. For one that
   * create() started (`startedByCreate`), nothing to do: its pid, even if it has exited since.
   */
  async start(id: string): Promise<number> {
    return this.records.locked(id, async () => {
      const meta = await this.records.read(id);
      if (meta.startedByCreate) return meta.pid!;
      if (meta.startedAt || meta.exit) throw failedPrecondition(`container ${id} was already started`);
      this.createdHere.delete(id);
      try {
        // Through runc's exec fifo (no runc process), else `runc start`, which refuses a
        // container that is not in the created state.
        await this.runc.start(id, { ...(meta.pid ? { initPid: meta.pid } : {}) });
      } catch (err) {
        const st = await this.runc.state(id).catch(() => undefined);
        throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `start ${id}: not startable (runc: ${st?.status ?? 'gone'})`, { cause: err });
      }
      meta.startedAt = new Date().toISOString();
      await this.records.write(meta);
      this.log.info('container started', { id, pid: meta.pid });
      return meta.pid!;
    });
  }

  async kill(id: string, signal: string | number = 'SIGKILL'): Promise<void> {
    const sig = normalizeSignal(signal);
    const info = await this.inspect(id);
    if (info.status === 'exited') throw failedPrecondition(`container ${id} is not running`);
    await this.signal(info, sig);
  }

  /**
   * Sends `sig` to a running container's init: straight from here (no runc process) when
   * /proc/<pid>/cgroup shows the recorded pid still in this container's cgroup (its path is
   * unique to the container id, so a reused pid does not pass); a pid that is gone (ESRCH) has
   * exited, and its exit is on the way, as runc kill's "container not running" is taken. In
   * any other case, and for a container only created (its init is `runc init` waiting on the
   * exec fifo: runc knows what to do with it), `runc kill` as before.
   */
  private async signal(info: ContainerInfo, sig: string): Promise<void> {
    const num = (osConstants.signals as Record<string, number | undefined>)[sig];
    if (info.status === 'running' && info.pid && num !== undefined && (await processInCgroup(info.pid, info.cgroupsPath))) {
      try {
        process.kill(info.pid, num);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
        this.log.warn('signal to the container init failed, asking runc', { id: info.id, signal: sig, err: describeError(err) });
      }
    }
    await this.runc.kill(info.id, sig);
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
    await this.signal(info, sig);
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
    const f = this.records.files(id);
    const waker = new ChangeWaker([f.exitDir, f.persistDir]);
    const delay = o.pollMs ?? WAIT_POLL_MS;
    try {
      for (;;) {
        const exit = await this.exited(id);
        if (exit) return exit;
        if (o.signal?.aborted) throw new SwarmError(ErrorCode.CANCELLED, `wait ${id}: cancelled`);
        await waker.wait(delay, o.signal);
      }
    } finally {
      waker.close();
    }
  }

  /** The exit if the container has exited (reaping it then), else undefined. */
  exited(id: string): Promise<ExitStatus | undefined> {
    return this.records.locked(id, () => this.reap(id));
  }

  /**
   * Records the exit once conmon has written it (with the OOM verdict, read before the cgroup
   * is gone), then deletes runc's state and so the cgroups, without waiting for that: whoever
   * waits for the exit (a task's stop, a rolling update's next step) has it one `runc` process
   * sooner; `remove` waits for the delete. Idempotent; call under the lock.
   */
  private async reap(id: string): Promise<ExitStatus | undefined> {
    const meta = await this.records.read(id);
    if (meta.exit) return exitOf(meta);
    const f = this.records.files(id);
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
    await this.records.write(meta);
    const del: Promise<boolean> = this.runc.delete(id, { force: true }).then(
      () => true,
      (err: unknown) => {
        this.log.warn('runc delete after exit', { id, err: describeError(err) });
        return false;
      },
    );
    this.deleting.set(id, del);
    this.log.info('container exited', { id, ...meta.exit });
    return exitOf(meta);
  }

  // ---- inspect / list / remove ----------------------------------------------------------

  async inspect(id: string): Promise<ContainerInfo> {
    return this.records.locked(id, async () => {
      const exit = await this.reap(id);
      const meta = await this.records.read(id);
      if (exit) return this.records.infoOf(meta, 'exited');
      if (meta.startedAt) return this.records.infoOf(meta, 'running'); // no runc call for the common case
      if (this.createdHere.has(id)) return this.records.infoOf(meta, 'created'); // nor for one we created and did not start
      // Not recorded as started: ask runc (an agent may have died between `runc start` and meta).
      const st = await this.runc.state(id);
      return this.records.infoOf(meta, st === undefined || st.status === 'created' ? 'created' : 'running');
    });
  }

  async list(): Promise<ContainerInfo[]> {
    const out: ContainerInfo[] = [];
    for (const id of await this.records.ids()) {
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
    const dir = this.records.dirOf(id);
    if (!(await pathExists(dir))) throw notFound(`container ${id} not found`);
    await this.records.locked(id, async () => {
      const meta = await this.records.read(id).catch(() => undefined);
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
    const f = this.records.files(id);
    this.createdHere.delete(id);
    const deleted = await this.deleting.get(id);
    this.deleting.delete(id);
    if (!deleted) await this.runc.delete(id, { force: true });
    const conmonPid = meta?.conmonPid ?? Number((await readFile(f.conmonPidFile, 'utf8').catch(() => '0')).trim());
    if (await isMonitorAlive(conmonPid, id)) {
      try {
        process.kill(conmonPid, 'SIGKILL');
      } catch {
        /* gone */
      }
      for (let i = 0; i < 100 && (await isMonitorAlive(conmonPid, id)); i++) await sleep(10);
    }
    await this.d.bundles.unmount(id, f);
    const cg = meta?.cgroupsPath ?? `${this.d.cgroupParent}/${id}`;
    const busy = await removeCgroup(cg);
    if (busy.length) this.log.warn('cgroup left behind (busy)', { id, dirs: busy });
    await rm(f.bundle, { recursive: true, force: true });
  }
}
