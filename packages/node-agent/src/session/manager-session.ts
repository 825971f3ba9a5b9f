import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import {
  DispatcherClient,
  type AssignmentsMessage,
  type Node,
  type NodeDescription,
  type SessionMessage,
  type LogRecord,
  type TaskStatus,
  TaskState,
  type NodeVolume,
} from '@swarmd/proto';
import { describeError, unavailable } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { isAbortError, systemClock, type Clock } from '@swarmd/common/clock';
import { dispatcherLogSender } from '../logs/log-publisher.js';
import { Worker } from '../assignments/worker.js';
import { CoalescingReporter, type StatusUpdate } from '../status-reporter/coalescing-reporter.js';
import { backoffDelay, defaultBackoff, type BackoffOptions } from './backoff.js';
import { ManagerList } from './manager-list.js';
import { describeNode } from './node-description.js';
import { loadManagers, saveManagers } from './state-files.js';
import { certIdentity, channelCredentials, MANAGER_CHANNEL_OPTIONS, type AgentTls } from './tls.js';

export interface AgentOptions {
  /** The node's state dir: DIR/agent/ holds managers.json and assignments.json. */
  stateDir: string;
  /** Manager addresses (IP:PORT) to try first; DIR/agent/managers.json adds the ones last heard of. */
  managers: string[];
  tls: AgentTls;
  hostname?: string;
  labels?: Record<string, string>;
  engineVersion?: string;
  logger: Logger;
  clock?: Clock;
  /** Randomness for backoff jitter (Math.random by default). */
  rng?: () => number;
  backoff?: BackoffOptions;
  /** How long to wait for a manager's first SessionMessage before trying the next (default 10 s). */
  sessionTimeoutMs?: number;
  /** Task status batching (see CoalescingReporter). */
  statusFlushIntervalMs?: number;
  statusMaxBatch?: number;
  /** Extra gRPC channel options (tests). */
  channelOptions?: grpc.ChannelOptions;
}

export interface SessionInfo {
  manager: string;
  sessionId: string;
  node: Node | undefined;
}

export interface AgentEvents {
  /** A session is established with `manager` (after the first SessionMessage). */
  session: [SessionInfo];
  /** The session with `manager` ended; the agent reconnects. */
  disconnected: [{ manager: string; reason: string }];
  /** The manager sent the node object (first message, and whenever its spec or role changes). */
  node: [Node];
}

export interface Agent {
  /** From the node certificate's CN. */
  readonly nodeId: string;
  readonly events: EventEmitter<AgentEvents>;
  /** The assignments consumer: subscribe to its `assignments` event. */
  readonly worker: Worker;
  stop(): Promise<void>;
  /**
   * New certificates for the next connection. The current session keeps its own unless
   * `reconnect` is set, which ends it and reconnects to the same manager at once.
   */
  updateTls(tls: AgentTls, opts?: { reconnect?: boolean }): void;
  /** Ends the current session and reconnects to the same manager at once. */
  reconnect(): void;
  /** Where the node's named volumes come from: heartbeats carry them when they change. */
  reportVolumes(list: () => Promise<NodeVolume[]>): void;
  /**
   * On a manager's host: what is wrong with its manager (ManagerStatus.problem, e.g. "state disk
   * full"; undefined: nothing). Heartbeats carry it when it changes; the last call wins.
   */
  reportManagerProblem(problem: () => string | undefined): void;
  /** The current manager list (as the last session gave it), in dial order. */
  managers(): string[];
  /** The current session, if connected. */
  session(): SessionInfo | undefined;
  /** Resolves at the next established session (at once if connected). */
  whenConnected(signal?: AbortSignal): Promise<SessionInfo>;
  /** Reports a task's observed status (coalesced, batched UpdateTaskStatus). */
  reportTaskStatus(taskId: string, status: TaskStatus): void;
  /** Sends task log records on the current session (Dispatcher.PublishLogs); rejects when not connected. */
  publishLogs(records: LogRecord[]): Promise<void>;
  /** Tells the leader the network state of `version` (a results_in) is programmed here; best effort. */
  networkStateApplied(version: string): void;
  /**
   * Resolves once every node holds the network state this agent last received or a later one
   * (Dispatcher.WaitNetworkSync), or after `timeoutMs` with the nodes still behind; rejects when
   * not connected or the leader cannot answer.
   */
  waitNetworkSync(timeoutMs: number): Promise<{ synced: boolean; lagging: string[] }>;
}

type SessionEnd = { kind: 'redirect'; addr: string; established: boolean } | { kind: 'ended'; reason: string; established: boolean };

/** Starts the node agent's session with the managers (docs/cluster.md). Returns at once. */
export async function startAgent(opts: AgentOptions): Promise<Agent> {
  const identity = certIdentity(opts.tls.certPem);
  const persisted = await loadManagers(opts.stateDir);
  const list = new ManagerList([...opts.managers, ...persisted]);
  const worker = await Worker.open(opts.stateDir, opts.logger.child({ component: 'agent/worker' }));
  const agent = new AgentImpl(opts, identity.nodeId, list, worker);
  agent.start();
  return agent;
}

class AgentImpl implements Agent {
  readonly events = new EventEmitter<AgentEvents>();
  private tls: AgentTls;
  private readonly clock: Clock;
  private readonly rng: () => number;
  private readonly backoff: BackoffOptions;
  private readonly logger: Logger;
  private readonly description: NodeDescription;
  private readonly abort = new AbortController();
  private readonly reporter: CoalescingReporter;
  private loop: Promise<void> = Promise.resolve();
  private current: (SessionInfo & { client: DispatcherClient; abort: AbortController }) | undefined;
  private reconnectRequested = false;
  private lastSessionId = '';
  private saved: string;
  private saving: Promise<void> = Promise.resolve();
  private assignmentsUnimplemented = false;
  private volumeSource: (() => Promise<NodeVolume[]>) | undefined;
  private problemSource: (() => string | undefined) | undefined;

  constructor(
    private readonly opts: AgentOptions,
    readonly nodeId: string,
    private readonly list: ManagerList,
    readonly worker: Worker,
  ) {
    this.tls = opts.tls;
    this.clock = opts.clock ?? systemClock;
    this.rng = opts.rng ?? Math.random;
    this.backoff = opts.backoff ?? defaultBackoff;
    this.logger = opts.logger.child({ component: 'agent/session' });
    this.description = describeNode({ hostname: opts.hostname, labels: opts.labels, engineVersion: opts.engineVersion });
    this.saved = JSON.stringify(list.all());
    this.reporter = new CoalescingReporter({
      send: (u) => this.sendStatus(u),
      flushIntervalMs: opts.statusFlushIntervalMs,
      maxBatch: opts.statusMaxBatch,
      clock: this.clock,
      logger: this.logger,
    });
  }

  reportVolumes(list: () => Promise<NodeVolume[]>): void {
    this.volumeSource = list;
  }

  reportManagerProblem(problem: () => string | undefined): void {
    this.problemSource = problem;
  }

  /** The volumes to send with a heartbeat: set when they differ from what this session last sent. */
  private async volumesChange(lastSent: string | undefined): Promise<{ volumes: NodeVolume[]; key: string } | undefined> {
    if (!this.volumeSource) return undefined;
    try {
      const volumes = (await this.volumeSource()).map((v) => ({ name: v.name, driver: v.driver })).sort((a, b) => a.name.localeCompare(b.name));
      const key = JSON.stringify(volumes);
      return key === lastSent ? undefined : { volumes, key };
    } catch (err) {
      this.logger.warn('cannot list the node volumes', { err: describeError(err) });
      return undefined;
    }
  }

  start(): void {
    this.loop = this.run().catch((err: unknown) => this.logger.error('agent session loop failed', { err: describeError(err) }));
  }

  managers(): string[] {
    return this.list.all();
  }

  session(): SessionInfo | undefined {
    const c = this.current;
    return c ? { manager: c.manager, sessionId: c.sessionId, node: c.node } : undefined;
  }

  whenConnected(signal?: AbortSignal): Promise<SessionInfo> {
    const now = this.session();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const onSession = (s: SessionInfo) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(s);
      };
      const onAbort = () => {
        this.events.off('session', onSession);
        reject(Object.assign(new Error('whenConnected aborted'), { name: 'AbortError' }));
      };
      this.events.once('session', onSession);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  updateTls(tls: AgentTls, opts: { reconnect?: boolean } = {}): void {
    const id = certIdentity(tls.certPem);
    if (id.nodeId !== this.nodeId) this.logger.warn('new certificate names another node id', { old: this.nodeId, new: id.nodeId });
    this.tls = tls;
    if (opts.reconnect) this.reconnect();
  }

  reconnect(): void {
    const c = this.current;
    if (!c) return;
    this.reconnectRequested = true;
    c.abort.abort(new Error('reconnect requested'));
  }

  /** A task now running or ended is urgent: a rollout's next step may wait for it. */
  reportTaskStatus(taskId: string, status: TaskStatus): void {
    this.reporter.report(taskId, status, { urgent: status.state >= TaskState.TASK_STATE_RUNNING });
  }

  publishLogs(records: LogRecord[]): Promise<void> {
    return dispatcherLogSender(() => this.current)(records);
  }

  networkStateApplied(version: string): void {
    const c = this.current;
    if (!c || !version) return;
    c.client.networkStateApplied({ sessionId: c.sessionId, version }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
      if (err) this.logger.debug('network state acknowledgement not delivered', { version, err: describeError(err) });
    });
  }

  async waitNetworkSync(timeoutMs: number): Promise<{ synced: boolean; lagging: string[] }> {
    const c = this.current;
    const version = this.worker.version();
    if (!c) throw unavailable('no session with a manager');
    if (!version) throw unavailable('no assignments received yet');
    return new Promise((resolve, reject) => {
      c.client.waitNetworkSync({ sessionId: c.sessionId, version, timeoutMs }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs + 5_000 }, (err, res) =>
        err ? reject(err) : resolve({ synced: !!res?.synced, lagging: res?.laggingNodes ?? [] }),
      );
    });
  }

  async stop(): Promise<void> {
    if (this.abort.signal.aborted) return this.loop;
    await withTimeout(this.reporter.stop({ flush: this.current !== undefined }), 5_000);
    this.abort.abort();
    await this.loop;
    await this.saving;
  }

  private async sendStatus(updates: StatusUpdate[]): Promise<void> {
    const c = this.current;
    if (!c) throw unavailable('no session with a manager');
    await new Promise<void>((resolve, reject) => {
      c.client.updateTaskStatus(
        { sessionId: c.sessionId, updates: updates.map((u) => ({ taskId: u.taskId, status: u.status })) },
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let failures = 0;
    let redirects = 0;
    while (!signal.aborted) {
      const addr = this.list.current();
      const end = await this.runSession(addr, signal);
      if (signal.aborted) break;
      if (end.established) failures = 0;
      let delay: number;
      if (this.reconnectRequested) {
        this.reconnectRequested = false;
        this.logger.info('reconnecting to the same manager', { manager: addr });
        delay = 0;
      } else if (end.kind === 'redirect' && redirects < 3) {
        redirects++;
        this.list.redirect(end.addr);
        this.logger.info('manager redirects the session', { from: addr, to: end.addr });
        delay = 0;
      } else {
        redirects = 0;
        this.list.next();
        delay = backoffDelay(failures++, this.backoff, this.rng);
        const reason = end.kind === 'redirect' ? `redirect loop via ${end.addr}` : end.reason;
        this.logger[end.established ? 'info' : 'debug']('session with manager ended; reconnecting', {
          manager: addr,
          reason,
          next: this.list.current(),
          delayMs: delay,
        });
      }
      if (delay > 0) {
        try {
          await this.clock.sleep(delay, signal);
        } catch (err) {
          if (isAbortError(err)) break;
          throw err;
        }
      }
    }
  }

  /** One session with one manager, until it ends (never throws). */
  private async runSession(addr: string, outer: AbortSignal): Promise<SessionEnd> {
    const client = new DispatcherClient(addr, channelCredentials(this.tls), { ...MANAGER_CHANNEL_OPTIONS, ...this.opts.channelOptions });
    const ac = new AbortController();
    const onOuter = () => ac.abort(new Error('agent stopping'));
    outer.addEventListener('abort', onOuter, { once: true });
    const call = client.session({ description: this.description, sessionId: this.lastSessionId });
    ac.signal.addEventListener('abort', () => call.cancel(), { once: true });
    let established = false;
    let result: SessionEnd | undefined;
    const helpers: Promise<void>[] = [];
    // No first message in time: a blackholed or hung manager. Move on.
    const firstTimer = this.clock.sleep(this.opts.sessionTimeoutMs ?? 10_000, ac.signal).then(
      () => {
        if (!established) ac.abort(new Error('no session message in time'));
      },
      () => undefined,
    );
    try {
      for await (const m of call as AsyncIterable<SessionMessage>) {
        if (m.managers.length) this.updateManagers(m.managers.map((p) => p.addr));
        if (m.redirectAddr) {
          result = { kind: 'redirect', addr: m.redirectAddr, established };
          break;
        }
        if (!established) {
          established = true;
          this.lastSessionId = m.sessionId;
          this.current = { manager: addr, sessionId: m.sessionId, node: m.node, client, abort: ac };
          this.logger.info('session established', { manager: addr, sessionId: m.sessionId, nodeId: this.nodeId });
          helpers.push(this.heartbeatLoop(client, m.sessionId, ac));
          helpers.push(this.assignmentsLoop(client, m.sessionId, ac));
          this.events.emit('session', { manager: addr, sessionId: m.sessionId, node: m.node });
        } else if (this.current && m.node) {
          this.current.node = m.node;
        }
        if (m.node) this.events.emit('node', m.node);
      }
      result ??= { kind: 'ended', reason: ac.signal.aborted ? reasonOf(ac.signal) : 'the manager closed the session', established };
    } catch (err) {
      result = { kind: 'ended', reason: ac.signal.aborted ? reasonOf(ac.signal) : describeError(err), established };
    } finally {
      outer.removeEventListener('abort', onOuter);
      if (!ac.signal.aborted) ac.abort(new Error('session over'));
      await Promise.all([...helpers, firstTimer]);
      if (this.current?.client === client) this.current = undefined;
      client.close();
    }
    if (established) this.events.emit('disconnected', { manager: addr, reason: result.kind === 'redirect' ? `redirect to ${result.addr}` : result.reason });
    return result;
  }

  private async heartbeatLoop(client: DispatcherClient, sessionId: string, ac: AbortController): Promise<void> {
    let volumesSent: string | undefined; // per session: a new session sends them again
    let problemSent: string | undefined; // the same
    try {
      while (!ac.signal.aborted) {
        const change = await this.volumesChange(volumesSent);
        const problem = this.problemSource ? (this.problemSource() ?? '') : undefined;
        const problemSet = problem !== undefined && problem !== problemSent;
        const periodMs = await new Promise<number>((resolve, reject) => {
          const onAbort = () => call.cancel();
          const req = { sessionId, volumes: change?.volumes ?? [], volumesSet: !!change, managerProblem: problemSet ? problem : '', managerProblemSet: problemSet };
          const call = client.heartbeat(req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
            ac.signal.removeEventListener('abort', onAbort);
            if (err) reject(err);
            else {
              if (change) volumesSent = change.key;
              if (problemSet) problemSent = problem;
              resolve(res.periodMs);
            }
          });
          ac.signal.addEventListener('abort', onAbort, { once: true });
        });
        await this.clock.sleep(periodMs > 0 ? periodMs : 5_000, ac.signal);
      }
    } catch (err) {
      if (!ac.signal.aborted) ac.abort(new Error(`heartbeat failed: ${describeError(err)}`));
    }
  }

  private async assignmentsLoop(client: DispatcherClient, sessionId: string, ac: AbortController): Promise<void> {
    if (this.assignmentsUnimplemented) return;
    while (!ac.signal.aborted) {
      const call = client.assignments({ sessionId });
      const onAbort = () => call.cancel();
      ac.signal.addEventListener('abort', onAbort, { once: true });
      this.worker.streamStarted();
      let resync = false;
      try {
        for await (const m of call as AsyncIterable<AssignmentsMessage>) {
          const r = await this.worker.apply(m);
          if (!r.ok) {
            resync = true; // out of sequence: a new stream starts with a COMPLETE set
            call.cancel();
            break;
          }
        }
        if (!resync && !ac.signal.aborted) ac.abort(new Error('the manager closed the assignments stream'));
      } catch (err) {
        if (ac.signal.aborted) return;
        if ((err as grpc.ServiceError).code === grpc.status.UNIMPLEMENTED) {
          this.assignmentsUnimplemented = true;
          this.logger.warn('the manager does not serve Assignments; not consuming assignments');
          return;
        }
        ac.abort(new Error(`assignments stream failed: ${describeError(err)}`));
      } finally {
        ac.signal.removeEventListener('abort', onAbort);
      }
    }
  }

  private updateManagers(addrs: string[]): void {
    this.list.update(addrs);
    const now = JSON.stringify(this.list.all());
    if (now === this.saved) return;
    this.saved = now;
    const snapshot = this.list.all();
    this.saving = this.saving
      .then(() => saveManagers(this.opts.stateDir, snapshot))
      .catch((err: unknown) => this.logger.warn('cannot save the manager list', { err: describeError(err) }));
  }
}

function reasonOf(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error ? r.message : String(r);
}

async function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
