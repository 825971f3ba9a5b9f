/**
 * The Executor over @swarmd/runtime: ImageService (pull) + ContainerService (containers), with
 * the per-host networking plugged in. A task's container is named by the task id and labelled
 * with the task, service and node ids, so a restarted agent finds it again.
 */
import { cpus, hostname as osHostname, machine, platform, totalmem } from 'node:os';
import { HealthState, Mount_Type, type ContainerStatus, type NodeDescription, type PortConfig, type Task } from '@swarmd/proto';
import { describeError, ErrorCode, isSwarmError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { phaseTimer } from '@swarmd/common/phases';
import type { ContainerService, ImageService, MountSpec, ContainerSpec as RuntimeSpec, ImageConfig } from '@swarmd/runtime';
import { metrics, secondsSince } from '@swarmd/common/metrics';
import { systemClock, type Clock } from '@swarmd/common/clock';
import { healthSettings, runHealthChecks, type HealthSettings, type HealthStatus } from '../health/health-check.js';
import { usesData, type TaskFiles } from '../secrets/task-files.js';
import { openConnections } from './open-connections.js';
import { ContainerExitedError, PermanentError, UnhealthyError, type ContainerFacts, type Executor, type ExitInfo, type TaskController } from './executor.js';

export const LABEL_TASK = 'swarmd.task.id';
export const LABEL_SERVICE = 'swarmd.service.id';
export const LABEL_NODE = 'swarmd.node.id';
export const LABEL_SERVICE_NAME = 'swarmd.service.name';

/** What networking gives a task: a netns to join (none: a new empty one) and published ports. */
export interface TaskNetwork {
  netnsPath?: string;
  ports: PortConfig[];
  addresses: string[];
  /** The container's resolv.conf (overlay networks: the host's embedded resolver); default: the host's. */
  dns?: { nameservers: string[]; search?: string[]; options?: string[] };
}

/** A task's netns as soon as it exists, before its links: what a container create goes on with. */
export interface TaskNetns {
  netnsPath: string;
  dns?: TaskNetwork['dns'];
}

export interface AttachOptions {
  /**
   * Called once the task's netns exists, while its links, addresses and routes are still being
   * made, so `runc create` can join it meanwhile (the container's process starts only once the
   * attach resolves). Not called when there is no netns of the task's own (host mode).
   */
  onNetns?: (n: TaskNetns) => void;
}

/** Per-host networking (networking/): attach before create, detach after remove. Idempotent. */
export interface TaskNetworking {
  attach(task: Task, o?: AttachOptions): Promise<TaskNetwork>;
  detach(taskId: string): Promise<void>;
}

export interface ContainerExecutorOptions {
  images: ImageService;
  containers: ContainerService;
  nodeId: string;
  networking?: TaskNetworking;
  hostname?: string;
  labels?: Record<string, string>;
  engineVersion?: string;
  clock?: Clock;
  logger?: Logger;
  /** Stop grace when the spec has none (default 10 s, as Docker). */
  defaultStopGraceMs?: number;
  /** Secrets and configs on a tmpfs per task (without: a task that uses some is rejected). */
  taskFiles?: TaskFiles;
  /**
   * Waits until every node programs the network state this agent last received (the agent's
   * waitNetworkSync); without it, an endpoint's drain is its period alone.
   */
  networkSync?: (timeoutMs: number) => Promise<{ synced: boolean; lagging: string[] }>;
}

/** Errors of prepare that retrying will not fix. */
const PERMANENT = new Set<string>([
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.NOT_FOUND,
  ErrorCode.UNAUTHENTICATED,
  ErrorCode.PERMISSION_DENIED,
  ErrorCode.FAILED_PRECONDITION,
  ErrorCode.DATA_LOSS,
]);

function isPermanent(err: unknown): boolean {
  return err instanceof PermanentError || (err instanceof Error && 'code' in err && PERMANENT.has(String((err as { code: unknown }).code)));
}

export class ContainerExecutor implements Executor {
  private readonly logger: Logger;
  constructor(readonly o: ContainerExecutorOptions) {
    this.logger = o.logger ?? nullLogger;
  }

  describe(): Promise<NodeDescription> {
    return Promise.resolve({
      hostname: this.o.hostname ?? osHostname(),
      platform: { os: platform(), architecture: machine() },
      resources: { nanoCpus: cpus().length * 1e9, memoryBytes: totalmem() },
      engineVersion: this.o.engineVersion ?? '',
      engineLabels: this.o.labels ?? {},
      volumes: [],
    });
  }

  controller(t: Task): TaskController {
    return new ContainerController(t, this.o, this.logger.child({ task: t.id }));
  }

  async listTaskContainers(): Promise<{ taskId: string; serviceId: string }[]> {
    const out: { taskId: string; serviceId: string }[] = [];
    for (const c of await this.o.containers.list()) {
      const l = c.spec.labels ?? {};
      if (l[LABEL_NODE] === this.o.nodeId && l[LABEL_TASK]) out.push({ taskId: l[LABEL_TASK], serviceId: l[LABEL_SERVICE] ?? '' });
    }
    return out;
  }
}

/** How long an endpoint keeps running after it left the endpoints, before its stop signal. */
export const DEFAULT_DRAIN_MS = 2_000;
/** The longest a stopping endpoint waits for every host to stop sending it new connections. */
export const NETWORK_SYNC_WAIT_MS = 10_000;

/** Builds the runtime's ContainerSpec from the task (pure). */
export function runtimeSpec(t: Task, nodeId: string): RuntimeSpec {
  const c = t.spec?.container;
  if (!c) throw new PermanentError('task has no container spec');
  const res = t.spec?.resources;
  const mounts: MountSpec[] = c.mounts.map((m) => {
    switch (m.type) {
      case Mount_Type.VOLUME:
        return { type: 'volume', source: m.source, target: m.target, readOnly: m.readOnly, ...(m.volumeDriver ? { driver: m.volumeDriver } : {}) };
      case Mount_Type.TMPFS:
        return { type: 'tmpfs', target: m.target, ...(m.tmpfsSizeBytes ? { sizeBytes: Number(m.tmpfsSizeBytes) } : {}), ...(m.tmpfsMode ? { mode: m.tmpfsMode } : {}) };
      default:
        return { type: 'bind', source: m.source, target: m.target, readOnly: m.readOnly };
    }
  });
  const nanoCpus = Number(res?.limits?.nanoCpus ?? 0);
  const memoryBytes = Number(res?.limits?.memoryBytes ?? 0);
  const pidsLimit = Number(res?.pidsLimit ?? 0);
  const period = 100_000;
  return {
    ...(c.command.length ? { command: c.command } : {}),
    ...(c.args.length ? { args: c.args } : {}),
    ...(c.env.length ? { env: c.env } : {}),
    ...(c.dir ? { dir: c.dir } : {}),
    ...(c.user ? { user: c.user } : {}),
    ...(c.hostname ? { hostname: c.hostname } : {}),
    ...(c.stopSignal ? { stopSignal: c.stopSignal } : {}),
    readOnly: c.readOnly,
    mounts,
    resources: {
      ...(memoryBytes ? { memoryBytes } : {}),
      ...(nanoCpus ? { cpuQuotaUs: Math.max(1000, Math.round((nanoCpus / 1e9) * period)), cpuPeriodUs: period } : {}),
      ...(pidsLimit ? { pidsLimit } : {}),
    },
    labels: { ...c.labels, [LABEL_TASK]: t.id, [LABEL_SERVICE]: t.serviceId, [LABEL_SERVICE_NAME]: t.serviceAnnotations?.name ?? '', [LABEL_NODE]: nodeId },
  };
}

const HEALTH: Record<HealthStatus, HealthState> = {
  starting: HealthState.HEALTH_STATE_STARTING,
  healthy: HealthState.HEALTH_STATE_HEALTHY,
  unhealthy: HealthState.HEALTH_STATE_UNHEALTHY,
};

class ContainerController implements TaskController {
  private readonly id: string;
  private published: PortConfig[] = [];
  private addresses: string[] = [];
  private health: { settings: HealthSettings; status: HealthStatus; output: string; verdict: Promise<UnhealthyError>; healthy: Promise<void>; ac: AbortController } | undefined;
  private healthResolved = false;
  private readonly clock: Clock;

  constructor(
    private readonly task: Task,
    private readonly o: ContainerExecutorOptions,
    private readonly log: Logger,
  ) {
    this.id = task.id;
    this.clock = o.clock ?? systemClock;
  }

  ports(): PortConfig[] {
    return this.published;
  }

  address(): string | undefined {
    const a = this.task.networks[0]?.addresses[0] ?? this.addresses[0];
    return a?.split('/')[0];
  }

  private async imageConfig(): Promise<ImageConfig | undefined> {
    const ref = this.task.spec?.container?.image ?? '';
    const rec = await this.o.images.get(ref).catch(() => undefined);
    return rec ? this.o.images.config(rec) : undefined;
  }

  async prepare(signal: AbortSignal, o: { mayStart?: () => boolean } = {}): Promise<Partial<ContainerStatus>> {
    const { phase, phases } = phaseTimer();
    const existing = await this.o.containers.inspect(this.id).catch(() => undefined);
    phase('inspect');
    if (existing) {
      if (this.o.networking) {
        const net = await this.o.networking.attach(this.task);
        this.published = net.ports;
        this.addresses = net.addresses;
      }
      return { containerId: this.id };
    }
    const c = this.task.spec?.container;
    if (!c?.image) throw new PermanentError('task: no image in the container spec');
    const spec = runtimeSpec(this.task, this.o.nodeId);
    const auth = c.pullAuth?.username ? { username: c.pullAuth.username, password: c.pullAuth.password } : undefined;
    let rec;
    try {
      rec = await this.o.images.getOrPull(c.image, { ...(auth ? { auth } : {}), signal });
    } catch (err) {
      const msg = `pulling image ${c.image}: ${describeError(err)}`;
      if (isPermanent(err)) throw new PermanentError(msg, { cause: err });
      throw new Error(msg, { cause: err });
    }
    phase('image');
    const config = await this.o.images.config(rec);
    phase('imageConfig');
    if (usesData(this.task)) {
      if (!this.o.taskFiles) throw new PermanentError('this node cannot mount secrets or configs');
      try {
        spec.mounts = [...(spec.mounts ?? []), ...(await this.o.taskFiles.prepare(this.task))];
      } catch (err) {
        const msg = `secrets and configs: ${describeError(err)}`;
        if (err instanceof PermanentError) throw new PermanentError(msg, { cause: err });
        throw new Error(msg, { cause: err });
      }
    }
    // The network is attached while the runtime mounts the rootfs and starts conmon: it waits
    // for the netns and DNS settings only to write resolv.conf and config.json, and runs
    // `runc create` while the links are made; the process starts once the attach is done.
    let onNetns: (n: TaskNetns) => void = () => undefined;
    const netnsMade = new Promise<TaskNetns>((resolve) => (onNetns = resolve));
    const attached: Promise<Partial<TaskNetwork> & { ports: PortConfig[] }> = this.o.networking ? this.o.networking.attach(this.task, { onNetns }) : Promise.resolve({ ports: [] });
    const t0 = performance.now();
    const created = this.o.containers.create(this.id, {
      image: { layers: this.o.images.layerDirs(rec), config: config.config ?? {} },
      spec,
      name: this.task.annotations?.name || this.id,
      network: Promise.race<Partial<TaskNetns>>([netnsMade, attached]).then((n) => ({ ...(n.netnsPath ? { netnsPath: n.netnsPath } : {}), ...(n.dns ? { dns: n.dns } : {}) })),
      networkReady: attached,
      ...(o.mayStart ? { startNow: o.mayStart } : {}),
    });
    const [a, made] = await Promise.allSettled([attached, created]);
    phase('attachAndCreate');
    this.log.debug('prepare phases (ms)', phases);
    if (a.status === 'rejected') {
      // The create failed with it (it waits for the network), leaving nothing behind.
      await this.o.taskFiles?.remove(this.id).catch(() => undefined);
      const msg = `network: ${describeError(a.reason)}`;
      if (isPermanent(a.reason)) throw new PermanentError(msg, { cause: a.reason });
      throw new Error(msg, { cause: a.reason });
    }
    this.published = a.value.ports;
    this.addresses = a.value.addresses ?? [];
    if (made.status === 'rejected') {
      const err: unknown = made.reason;
      if (isSwarmError(err, ErrorCode.ALREADY_EXISTS)) return { containerId: this.id };
      await this.o.networking?.detach(this.id).catch(() => undefined);
      await this.o.taskFiles?.remove(this.id).catch(() => undefined);
      const msg = `creating container: ${describeError(err)}`;
      if (isPermanent(err)) throw new PermanentError(msg, { cause: err });
      throw new Error(msg, { cause: err });
    }
    if (made.value.startedByCreate) {
      metrics.containerStarts.inc({ result: 'ok' });
      metrics.containerStartSeconds.observe(secondsSince(t0));
    }
    return { containerId: this.id };
  }

  private async ensureHealth(): Promise<void> {
    if (this.health) return;
    const settings = healthSettings(this.task.spec?.container?.healthcheck, (await this.imageConfig())?.config?.Healthcheck);
    if (!settings || this.health) return;
    const ac = new AbortController();
    let onHealthy!: () => void;
    let onUnhealthy!: (e: UnhealthyError) => void;
    const healthy = new Promise<void>((r) => (onHealthy = r));
    const verdict = new Promise<UnhealthyError>((r) => (onUnhealthy = r));
    const h = { settings, status: 'starting' as HealthStatus, output: '', verdict, healthy, ac };
    this.health = h;
    void runHealthChecks({
      settings,
      clock: this.clock,
      signal: ac.signal,
      probe: async (argv, timeoutMs) => {
        const r = await this.o.containers.exec(this.id, argv, { timeoutMs });
        return { exitCode: r.exitCode, output: (r.stdout + r.stderr).slice(0, 4096) };
      },
      onChange: (status, out) => {
        h.status = status;
        h.output = out.trim().slice(0, 1024);
        this.log.info('health', { status, out });
        if (status === 'healthy') onHealthy();
        if (status === 'unhealthy') onUnhealthy(new UnhealthyError(out));
      },
    });
  }

  private healthState(): HealthState {
    return this.health ? HEALTH[this.health.status] : HealthState.HEALTH_STATE_NONE;
  }

  async start(signal: AbortSignal): Promise<Partial<ContainerStatus>> {
    let info = await this.o.containers.inspect(this.id);
    if (info.status === 'created') {
      const t0 = performance.now();
      try {
        await this.o.containers.start(this.id);
      } catch (err) {
        metrics.containerStarts.inc({ result: 'error' });
        throw err;
      }
      metrics.containerStarts.inc({ result: 'ok' });
      metrics.containerStartSeconds.observe(secondsSince(t0));
      info = await this.o.containers.inspect(this.id);
    }
    if (info.exit) throw new ContainerExitedError(info.exit);
    await this.ensureHealth();
    const h = this.health;
    if (h && !this.healthResolved) {
      const ac = new AbortController();
      const onAbort = () => ac.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) ac.abort(); // aborted during the awaits above: no event comes any more
      try {
        const r = await Promise.race([
          h.healthy.then(() => ({ kind: 'healthy' as const })),
          h.verdict.then((e) => ({ kind: 'unhealthy' as const, e })),
          this.o.containers.wait(this.id, { signal: ac.signal }).then((exit) => ({ kind: 'exit' as const, exit })),
        ]);
        if (r.kind === 'unhealthy') throw r.e;
        if (r.kind === 'exit') throw new ContainerExitedError(r.exit);
        this.healthResolved = true;
      } finally {
        ac.abort();
        signal.removeEventListener('abort', onAbort);
      }
    }
    return { containerId: this.id, pid: info.pid ?? 0, health: this.healthState(), ...(this.health ? { healthOutput: this.health.output } : {}) };
  }

  async wait(signal: AbortSignal): Promise<ExitInfo> {
    const info = await this.o.containers.inspect(this.id);
    if (info.status === 'running') await this.ensureHealth();
    const h = this.health;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) ac.abort(); // aborted during the awaits above: no event comes any more
    try {
      const waits: Promise<ExitInfo>[] = [this.o.containers.wait(this.id, { signal: ac.signal })];
      if (h) waits.push(h.verdict.then((e) => Promise.reject(e)));
      const exit = await Promise.race(waits);
      return { exitCode: exit.exitCode, oomKilled: exit.oomKilled, ...(exit.error ? { error: exit.error } : {}) };
    } finally {
      ac.abort();
      signal.removeEventListener('abort', onAbort);
    }
  }

  private stopHealth(): void {
    this.health?.ac.abort();
  }

  async shutdown(): Promise<ExitInfo | undefined> {
    this.stopHealth();
    await this.drain();
    return this.stopIfRunning();
  }

  /**
   * A task on overlay networks is an endpoint: the managers took it out of every host's DNS
   * answers, VIP endpoints and routing mesh when they wanted it stopped. It keeps running until
   * every host has programmed that (the leader counts the hosts' acknowledgements; at most
   * NETWORK_SYNC_WAIT_MS, a host still behind is logged), so that no new connection reaches a
   * stopped task, then for the drain period (default 2 s, bounded by the grace period) so that
   * connections in flight finish, and only then gets its stop signal.
   */
  private async drain(): Promise<void> {
    if (this.task.networks.length === 0) return;
    const c = this.task.spec?.container;
    const set = Number(c?.stopDrainPeriodMs ?? 0);
    if (set < 0) return;
    const grace = Number(c?.stopGracePeriodMs ?? 0) || (this.o.defaultStopGraceMs ?? 10_000);
    const ms = Math.min(set || DEFAULT_DRAIN_MS, grace);
    const info = await this.o.containers.inspect(this.id).catch(() => undefined);
    if (info?.status !== 'running') return;
    if (this.o.networkSync) {
      const t0 = this.clock.now();
      try {
        const r = await this.o.networkSync(NETWORK_SYNC_WAIT_MS);
        const took = this.clock.now() - t0;
        if (r.synced) this.log.debug('endpoint withdrawn on every host', { task: this.id, ms: took });
        else this.log.warn('endpoint withdrawal not confirmed by every host; stopping after the drain period anyway', { task: this.id, lagging: r.lagging, ms: took });
      } catch (err) {
        this.log.warn('could not confirm the endpoint left every host (no leader?); stopping after the drain period', { task: this.id, err: describeError(err) });
      }
    }
    await this.drainConnections(info.pid ?? 0, ms);
  }

  /**
   * Up to `ms` for the connections in flight: ends early once two reads 100 ms apart find no TCP
   * connection open in the task's network namespace (no new one comes once every host dropped
   * the endpoint); the whole period when they cannot be read.
   */
  private async drainConnections(pid: number, ms: number): Promise<void> {
    const end = this.clock.now() + ms;
    let idle = 0;
    while (this.clock.now() < end) {
      await this.clock.sleep(Math.min(100, end - this.clock.now()));
      const open = await openConnections(pid);
      if (open === undefined) {
        const left = end - this.clock.now();
        if (left > 0) await this.clock.sleep(left);
        return;
      }
      idle = open === 0 ? idle + 1 : 0;
      if (idle >= 2) return;
    }
  }

  /** Stop signal, SIGKILL after the grace period; undefined when there is no container. */
  private async stopIfRunning(): Promise<ExitInfo | undefined> {
    const info = await this.o.containers.inspect(this.id).catch((err: unknown) => {
      if (isSwarmError(err, ErrorCode.NOT_FOUND)) return undefined;
      throw err;
    });
    if (!info) return undefined;
    const grace = Number(this.task.spec?.container?.stopGracePeriodMs ?? 0) || (this.o.defaultStopGraceMs ?? 10_000);
    const exit = await this.o.containers.stop(this.id, { timeoutMs: grace });
    return { exitCode: exit.exitCode, oomKilled: exit.oomKilled };
  }

  async terminate(): Promise<void> {
    this.stopHealth();
    await this.o.containers.kill(this.id, 'SIGKILL').catch(() => undefined);
  }

  async release(): Promise<void> {
    this.stopHealth();
    await this.stopIfRunning();
    await this.o.networking?.detach(this.id);
    this.published = [];
  }

  async remove(): Promise<void> {
    this.stopHealth();
    await this.o.containers.remove(this.id, { force: true }).catch((err: unknown) => {
      if (!isSwarmError(err, ErrorCode.NOT_FOUND)) throw err;
    });
    await this.o.networking?.detach(this.id);
    if (usesData(this.task)) await this.o.taskFiles?.remove(this.id);
  }

  async inspect(): Promise<ContainerFacts> {
    try {
      const info = await this.o.containers.inspect(this.id);
      return {
        exists: true,
        status: info.status,
        container: { containerId: this.id, pid: info.pid ?? 0 },
        ...(info.exit ? { exit: { exitCode: info.exit.exitCode, oomKilled: info.exit.oomKilled, ...(info.exit.error ? { error: info.exit.error } : {}) } } : {}),
        ports: this.published,
      };
    } catch (err) {
      if (isSwarmError(err, ErrorCode.NOT_FOUND)) return { exists: false };
      throw err;
    }
  }
}
