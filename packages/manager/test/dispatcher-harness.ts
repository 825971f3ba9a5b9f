// Shared by dispatcher, controlapi and caserver tests: a cluster CA, a store with the cluster
// object and a leader manager node, a fake clock, a real grpc-js server with mutual TLS, and
// certificates for each kind of caller.
import * as grpc from '@grpc/grpc-js';
import type { ExecutionContext } from 'ava';
import { ManagerStatus_Reachability, NodeAvailability, NodeRole, NodeState } from '@swarmd/proto';
import {
  ClusterCa,
  CertRole,
  clientCredentials,
  createKeyAndCsr,
  expectServerRole,
  makeObject,
  type MemoryStore,
  type TlsMaterial,
} from '../src/index.js';
import { nodeServerCredentials } from '../src/caserver/credentials.js';
import { testStore } from './helpers/store-backend.js';

export class FakeClock {
  private sleepers: { at: number; resolve(): void }[] = [];
  constructor(public t: number) {}
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('aborted'));
      const s = { at: this.t + ms, resolve };
      this.sleepers.push(s);
      signal?.addEventListener('abort', () => {
        this.sleepers = this.sleepers.filter((x) => x !== s);
        reject(new Error('aborted'));
      });
    });
  }
  /** Number of pending sleeps (to know a loop is waiting). */
  get waiting(): number {
    return this.sleepers.length;
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.sleepers.filter((s) => s.at <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.resolve();
  }
}

export const CLUSTER_ID = 'c1';
export const LEADER_ID = 'mgr1';
export const LEADER_ADDR = '10.0.0.1:4242';

export interface Harness {
  ca: ClusterCa;
  store: MemoryStore;
  clock: FakeClock;
  state: { leader: boolean; leaderAddr: string | undefined };
  serverTls: TlsMaterial;
  /** Issues node certificate material (CN = id, OU = role). */
  issue(role: CertRole, id: string): Promise<TlsMaterial>;
  issueAdmin(id: string): Promise<TlsMaterial>;
  /** Serves `add` on 127.0.0.1 with the node's TLS credentials (client certificate optional). */
  serve(t: ExecutionContext, add: (s: grpc.Server) => void): Promise<number>;
  /** A generated client to 127.0.0.1:port, checking the server holds a manager certificate. */
  client<C extends grpc.Client>(Ctor: new (addr: string, creds: grpc.ChannelCredentials, opts?: Partial<grpc.ClientOptions>) => C, port: number, tls?: TlsMaterial): C;
}

export async function harness(opts: { heartbeatPeriodMs?: number } = {}): Promise<Harness> {
  const clock = new FakeClock(Date.now());
  const ca = await ClusterCa.create({ clusterId: CLUSTER_ID, now: clock.now() });
  const store = await testStore({ clock });
  await store.update((tx) => {
    tx.create(
      'cluster',
      makeObject('cluster', {
        id: CLUSTER_ID,
        spec: {
          annotations: { name: 'default', labels: {} },
          raft: undefined,
          dispatcher: { heartbeatPeriodMs: opts.heartbeatPeriodMs ?? 1000 },
          caConfig: undefined,
          autolockManagers: false, orchestration: undefined,
        },
        rootCa: ca.toRootCa(),
      }),
    );
    tx.create(
      'node',
      makeObject('node', {
        id: LEADER_ID,
        role: NodeRole.NODE_ROLE_MANAGER,
        spec: { annotations: { name: '', labels: {} }, desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
        description: { hostname: 'm1', platform: undefined, resources: undefined, engineVersion: '', volumes: [], engineLabels: {} },
        status: { state: NodeState.NODE_STATE_READY, message: '', addr: '10.0.0.1' },
        managerStatus: { raftId: 1, addr: LEADER_ADDR, leader: true, reachability: ManagerStatus_Reachability.REACHABLE, problem: '', learner: false },
      }),
    );
  });
  const issue = async (role: CertRole, id: string): Promise<TlsMaterial> => {
    const { keyPem, csrPem } = await createKeyAndCsr();
    const { certPem } = await ca.issueNodeCertificate(csrPem, role, id, { now: clock.now(), addresses: ['127.0.0.1'] });
    return { keyPem, certPem, caCertPem: ca.certPem };
  };
  const serverTls = await issue(CertRole.MANAGER, LEADER_ID);
  return {
    ca,
    store,
    clock,
    state: { leader: true, leaderAddr: LEADER_ADDR },
    serverTls,
    issue,
    issueAdmin: async (id) => {
      const { keyPem, csrPem } = await createKeyAndCsr();
      const { certPem } = await ca.issueAdminCertificate(csrPem, id, { now: clock.now() });
      return { keyPem, certPem, caCertPem: ca.certPem };
    },
    serve: async (t, add) => {
      const server = new grpc.Server();
      add(server);
      t.teardown(() => server.forceShutdown());
      return new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', nodeServerCredentials(serverTls), (err, port) => (err ? reject(err) : resolve(port))),
      );
    },
    client: (Ctor, port, tls) => {
      const creds = tls ? clientCredentials(tls) : grpc.credentials.createSsl(Buffer.from(ca.certPem));
      return new Ctor(`127.0.0.1:${port}`, creds, expectServerRole(CertRole.MANAGER));
    },
  };
}

/** A unary call as a promise: `unary<Res>((cb) => client.method(req, cb))`. */
export function unary<Res>(fn: (cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    fn((err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Reads a server stream message by message. */
export class StreamReader<T> {
  private queue: T[] = [];
  private waiters: { resolve(v: T): void; reject(e: unknown): void }[] = [];
  error: grpc.ServiceError | undefined;
  ended = false;
  constructor(readonly stream: grpc.ClientReadableStream<T>) {
    stream.on('data', (m: T) => {
      const w = this.waiters.shift();
      if (w) w.resolve(m);
      else this.queue.push(m);
    });
    stream.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      for (const w of this.waiters.splice(0)) w.reject(e);
    });
    stream.on('end', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error('stream ended'));
    });
  }
  next(): Promise<T> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.reject(new Error('stream ended'));
    return new Promise<T>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  /** Resolves with the final status error (or undefined on a clean end). */
  done(): Promise<grpc.ServiceError | undefined> {
    if (this.error || this.ended) return Promise.resolve(this.error);
    return new Promise((resolve) => {
      this.stream.on('error', (e: grpc.ServiceError) => resolve(e));
      this.stream.on('end', () => resolve(this.error));
    });
  }
  cancel(): void {
    this.stream.cancel();
  }
}

export async function refusedWith(t: ExecutionContext, p: Promise<unknown>, code: grpc.status, re?: RegExp): Promise<void> {
  const err = await t.throwsAsync<grpc.ServiceError>(p);
  t.is(err?.code, code, err?.message);
  if (re && err) t.regex(err.details, re);
}
