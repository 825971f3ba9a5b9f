/**
 * Simulated nodes for `bench:scale`: one child process (forked by scale-bench.ts) runs a slice of
 * the fleet. Each node joins with the worker token (the real NodeCa join: key, CSR, certificate)
 * and then runs the real node agent (`startAgent` of @swarmd/node-agent: mTLS session, heartbeats,
 * assignments, batched status reports). Only the executor is fake: a task assigned to the node is
 * reported RUNNING after `runDelayMs`, and one the manager wants stopped is reported SHUTDOWN;
 * no container, no network.
 *
 * Messages (IPC, both ways):
 *   parent → child  { type: 'start', ... } (SimStart); { type: 'mark' } (sessions count from now)
 *   child → parent  { type: 'stats', ... } (SimStats) every 500 ms; { type: 'error', message }
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger, describeError } from '@swarmd/common';
import { startAgent, type Agent } from '@swarmd/node-agent';
import { TaskState, type Task, type TaskStatus } from '@swarmd/proto';
import { fetchPinnedRootCa, pinnedNodeCaClient, requestNodeCertificate } from '@swarmd/swarmd';

export interface SimStart {
  type: 'start';
  /** Index of the first node of this slice (hostnames sim-<index>). */
  first: number;
  count: number;
  managers: string[];
  token: string;
  /** Where each node keeps DIR/agent/ (a tmpfs). */
  stateRoot: string;
  /** Joins in flight at once. */
  joinConcurrency: number;
  runDelayMs: number;
}

export interface SimStats {
  type: 'stats';
  joined: number;
  /** Agents with an established session now. */
  connected: number;
  /** Agents that established a session after the last mark. */
  sinceMark: number;
  /** Tasks this slice reported RUNNING (and still holds). */
  running: number;
  /** Sessions established in total (reconnects included). */
  sessions: number;
}

const status = (state: TaskState, message: string): TaskStatus => ({
  timestamp: Date.now(),
  state,
  message,
  err: '',
  container: undefined,
  portStatus: undefined,
  appliedAt: 0,
  canaryCheck: undefined,
});

/** One simulated node: the real agent, a fake executor. */
class SimNode {
  connected = false;
  lastSessionAt = 0;
  sessions = 0;
  /** task id → the state we reported (RUNNING or SHUTDOWN). */
  readonly reported = new Map<string, TaskState>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    readonly agent: Agent,
    private readonly runDelayMs: number,
  ) {
    agent.events.on('session', () => {
      this.connected = true;
      this.lastSessionAt = Date.now();
      this.sessions++;
    });
    agent.events.on('disconnected', () => (this.connected = false));
    agent.worker.on('assignments', ({ updated, removed }: { updated: Task[]; removed: string[] }) => {
      for (const t of updated) this.apply(t);
      for (const id of removed) this.reported.delete(id);
    });
  }

  private apply(t: Task): void {
    if (t.desiredState <= TaskState.TASK_STATE_RUNNING) {
      if (this.reported.has(t.id)) return;
      this.reported.set(t.id, TaskState.TASK_STATE_STARTING); // started, not yet running
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.reported.get(t.id) !== TaskState.TASK_STATE_STARTING) return;
        this.reported.set(t.id, TaskState.TASK_STATE_RUNNING);
        this.agent.reportTaskStatus(t.id, status(TaskState.TASK_STATE_RUNNING, 'started (simulated)'));
      }, this.runDelayMs);
      this.timers.add(timer);
    } else if (this.reported.get(t.id) !== TaskState.TASK_STATE_SHUTDOWN) {
      this.reported.set(t.id, TaskState.TASK_STATE_SHUTDOWN);
      this.agent.reportTaskStatus(t.id, status(TaskState.TASK_STATE_SHUTDOWN, 'stopped (simulated)'));
    }
  }

  running(): number {
    let n = 0;
    for (const s of this.reported.values()) if (s === TaskState.TASK_STATE_RUNNING) n++;
    return n;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    await this.agent.stop();
  }
}

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]);
    }),
  );
}

async function run(o: SimStart, send: (m: SimStats | { type: 'error'; message: string }) => void): Promise<() => Promise<void>> {
  const logger = createLogger({ format: 'json', level: 'warn', component: 'sim-node' });
  const nodes: SimNode[] = [];
  let joined = 0;
  let mark = Infinity;
  process.on('message', (m: { type?: string }) => {
    if (m?.type === 'mark') mark = Date.now();
  });
  const stats = (): SimStats => ({
    type: 'stats',
    joined,
    connected: nodes.filter((n) => n.connected).length,
    sinceMark: nodes.filter((n) => n.connected && n.lastSessionAt >= mark).length,
    running: nodes.reduce((s, n) => s + n.running(), 0),
    sessions: nodes.reduce((s, n) => s + n.sessions, 0),
  });
  const timer = setInterval(() => send(stats()), 500);

  const indexes = Array.from({ length: o.count }, (_, i) => o.first + i);
  // Joins (certificates) first, all of them; then every agent starts at once: the bench times
  // "all nodes ready" from the first session, not the certificate issuance.
  const issued: { index: number; tls: { keyPem: string; certPem: string; caPem: string } }[] = [];
  // The CA pinned by the token once; one NodeCa channel per manager, shared by the joins.
  const caPem = await fetchPinnedRootCa(o.managers[0], o.token);
  const clients = o.managers.map((addr) => ({ addr, client: pinnedNodeCaClient(addr, caPem) }));
  try {
    await pool(indexes, o.joinConcurrency, async (index) => {
      for (let attempt = 1; ; attempt++) {
        const { addr, client } = clients[(index + attempt) % clients.length];
        try {
          const j = await requestNodeCertificate({ client, caPem, managerAddr: addr, token: o.token, advertiseAddr: '', timeoutMs: 120_000 });
          issued.push({ index, tls: { keyPem: j.tls.keyPem, certPem: j.tls.certPem, caPem: j.tls.caCertPem } });
          joined++;
          return;
        } catch (err) {
          if (attempt >= 10) throw new Error(`sim-${index} could not join`, { cause: err });
          logger.warn('join failed; retrying', { node: `sim-${index}`, attempt, err });
          await new Promise((r) => setTimeout(r, 500 * attempt));
        }
      }
    });
  } finally {
    for (const c of clients) c.client.close();
  }
  send(stats());
  await new Promise<void>((resolve) => {
    process.on('message', (m: { type?: string }) => {
      if (m?.type === 'connect') resolve();
    });
  });
  for (const { index, tls } of issued) {
    const stateDir = join(o.stateRoot, `sim-${index}`);
    await mkdir(stateDir, { recursive: true });
    const agent = await startAgent({
      stateDir,
      managers: [...o.managers.slice(index % o.managers.length), ...o.managers.slice(0, index % o.managers.length)],
      tls,
      hostname: `sim-${index}`,
      engineVersion: 'simulated',
      logger: logger.child({ node: `sim-${index}` }),
    });
    nodes.push(new SimNode(agent, o.runDelayMs));
  }
  return async () => {
    clearInterval(timer);
    await Promise.all(nodes.map((n) => n.stop().catch(() => undefined)));
  };
}

// ---- the child process --------------------------------------------------------------------------

if (process.send) {
  const send = (m: unknown): void => {
    if (process.connected) process.send!(m);
  };
  process.once('message', (m: SimStart) => {
    run(m, send).then(
      (stop) => {
        process.on('message', (x: { type?: string }) => {
          if (x?.type === 'stop') void stop().finally(() => process.exit(0));
        });
      },
      (err: unknown) => {
        send({ type: 'error', message: describeError(err) });
        process.exit(1);
      },
    );
  });
  process.on('disconnect', () => process.exit(0));
}
