/**
 * What the cluster benches share: `swarmctl` as a child process under a private
 * SWARMD_LOCAL_ROOT / SWARMCTL_CONTEXT, a local cluster's state file, a Control client over a
 * manager's unix control socket, bounded waits that name what they waited for, and figures.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { describeError } from '@swarmd/common';
import { ControlClient, type Node, type NodeSpec, type Service, type ServiceSpec, type Task } from '@swarmd/proto';

const here = dirname(fileURLToPath(import.meta.url));
// bench/dist/src/lib → the workspace; BENCH_WS: another checkout's build (its swarmctl and swarmd)
export const WS = process.env.BENCH_WS ? resolve(process.env.BENCH_WS) : resolve(here, '..', '..', '..', '..');
export const SWARMCTL = join(WS, 'packages', 'cli', 'dist', 'src', 'swarmctl.cjs');
export const SWARMD = join(WS, 'packages', 'swarmd', 'dist', 'src', 'swarmd.cjs');

// ---- figures ---------------------------------------------------------------------------------

/** Milliseconds on a monotonic clock. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function p50(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.ceil(0.5 * s.length) - 1];
}

export const max = (xs: number[]) => Math.max(...xs);

/** VmRSS (or another /proc/PID/status field) in MiB; NaN when the process is gone. */
export async function rssMiB(pid: number | undefined, field = 'VmRSS'): Promise<number> {
  if (!pid) return NaN;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
}

/**
 * Polls `fn` until it returns a value; after `timeoutMs` throws naming `what` (a function: asked
 * then, so it can say how far things got) and the last error.
 */
export async function until<T>(what: string | (() => string), timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = ` (${(e as Error).message})`;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${typeof what === 'string' ? what : what()}${last}`);
}

// ---- the local cluster -----------------------------------------------------------------------

export interface Host {
  name: string;
  hostname: string;
  role: 'manager' | 'worker';
  netns: string;
  /** Its underlay veth in the root namespace (on the cluster's bridge). */
  veth: string;
  stateDir: string;
  log: string;
  pid?: number;
}

export interface State {
  dir: string;
  gateway: string;
  hosts: Host[];
}

export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

export const controlSock = (h: Host) => join(h.stateDir, 'control.sock');

/** One `swarmctl local` cluster under `root` (its SWARMD_LOCAL_ROOT), with a context file of its own. */
export class LocalCluster {
  readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly root: string,
    readonly name: string,
    readonly subnet: string,
  ) {
    this.env = { ...process.env, SWARMD_LOCAL_ROOT: root, SWARMCTL_CONTEXT: join(root, `${name}.context.json`), SWARMD_BIN: SWARMD };
  }

  get dir(): string {
    return join(this.root, this.name);
  }

  swarmctl(args: string[]): Promise<Output> {
    return new Promise((res, rej) => {
      const child = spawn(process.execPath, [SWARMCTL, ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', (e) => rej(new Error(`cannot run swarmctl ${args.join(' ')}`, { cause: e })));
      child.once('close', (code) => res({ code: code ?? 1, stdout, stderr }));
    });
  }

  async must(args: string[]): Promise<string> {
    const r = await this.swarmctl(args);
    if (r.code !== 0) throw new Error(`swarmctl ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async up(managers: number, workers: number, timeoutS = 120): Promise<State> {
    await this.must(['local', 'up', '--name', this.name, '--managers', String(managers), '--workers', String(workers), '--subnet', this.subnet, '--timeout', String(timeoutS)]);
    return this.state();
  }

  /** `local down`; a failure is reported, not thrown (this runs on the way out). */
  async down(): Promise<void> {
    const r = await this.swarmctl(['local', 'down', '--name', this.name]).catch((e: unknown) => ({ code: 1, stdout: '', stderr: String(e) }));
    if (r.code !== 0) process.stderr.write(`local down --name ${this.name} failed: ${r.stderr}\n`);
  }

  async state(): Promise<State> {
    return JSON.parse(await readFile(join(this.dir, 'cluster.json'), 'utf8')) as State;
  }

  /** A Control client on the first manager's socket. */
  async control(): Promise<Ctl> {
    const st = await this.state();
    return new Ctl(controlSock(st.hosts.find((h) => h.role === 'manager')!));
  }
}

// ---- a Control client over a unix socket, as promises ----------------------------------------

type Unary = (req: unknown, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (e: grpc.ServiceError | null, r: unknown) => void) => grpc.ClientUnaryCall;

export class Ctl {
  readonly client: ControlClient;
  constructor(readonly path: string) {
    this.client = new ControlClient(`unix://${path}`, grpc.credentials.createInsecure(), {
      // reconnect fast after the socket refused (the default backoff starts at 1 s)
      'grpc.initial_reconnect_backoff_ms': 10,
      'grpc.max_reconnect_backoff_ms': 50,
      // 10,000 tasks in one ListTasks answer
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
    });
  }
  private call<R>(method: string, req: unknown, timeoutMs: number): Promise<R> {
    const m = (this.client as unknown as Record<string, Unary>)[method];
    return new Promise((res, rej) => {
      m.call(this.client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) => (e ? rej(e) : res(r as R)));
    });
  }
  async listNodes(timeoutMs = 2_000): Promise<Node[]> {
    return (await this.call<{ nodes: Node[] }>('listNodes', { filters: undefined }, timeoutMs)).nodes;
  }
  async listTasks(serviceIds: string[] = [], timeoutMs = 5_000): Promise<Task[]> {
    const filters = { serviceIds, nodeIds: [], desiredStates: [], idPrefixes: [], names: [] };
    return (await this.call<{ tasks: Task[] }>('listTasks', { filters }, timeoutMs)).tasks;
  }
  async getNode(nodeId: string, timeoutMs: number): Promise<Node> {
    const r = await this.call<{ node?: Node }>('getNode', { nodeId }, timeoutMs);
    if (!r.node) throw new Error(`no node ${nodeId}`);
    return r.node;
  }
  async updateNode(nodeId: string, version: number, spec: NodeSpec, timeoutMs: number): Promise<Node> {
    const r = await this.call<{ node?: Node }>('updateNode', { nodeId, nodeVersion: version, spec }, timeoutMs);
    if (!r.node) throw new Error(`no node ${nodeId}`);
    return r.node;
  }
  async getService(serviceId: string, timeoutMs = 5_000): Promise<Service> {
    const r = await this.call<{ service?: Service }>('getService', { serviceId }, timeoutMs);
    if (!r.service) throw new Error(`no service ${serviceId}`);
    return r.service;
  }
  async updateService(serviceId: string, version: number, spec: ServiceSpec, timeoutMs = 10_000): Promise<Service> {
    const r = await this.call<{ service?: Service }>('updateService', { serviceId, serviceVersion: version, spec, rollback: false, noResolveImage: true }, timeoutMs);
    if (!r.service) throw new Error(`no service ${serviceId}`);
    return r.service;
  }
  close(): void {
    this.client.close();
  }
}

// ---- the way out -----------------------------------------------------------------------------

/** What to undo on the way out, by name; `all` runs what is left, newest first. */
export class Cleanups {
  private readonly fns = new Map<string, () => Promise<void>>();

  add(key: string, fn: () => Promise<void>): void {
    this.fns.set(key, fn);
  }

  /** Runs (once) what `key` names; a failure is reported, not thrown. */
  async release(key: string): Promise<void> {
    const fn = this.fns.get(key);
    this.fns.delete(key);
    await fn?.().catch((e: unknown) => process.stderr.write(`cleanup ${key}: ${String(e)}\n`));
  }

  async all(): Promise<void> {
    for (const key of [...this.fns.keys()].reverse()) await this.release(key);
  }
}

/** `local up` of a cluster under `root`, its `local down` registered first as `cluster NAME`. */
export async function upCluster(cleanups: Cleanups, root: string, name: string, subnet: string, managers: number, workers: number): Promise<LocalCluster> {
  const c = new LocalCluster(root, name, subnet);
  cleanups.add(`cluster ${name}`, () => c.down());
  await c.up(managers, workers);
  return c;
}

/**
 * Runs `main`, then `cleanup` once, also on SIGINT/SIGTERM (exit 130) and on error (exit 1,
 * the error printed with its causes as `<label> failed: ...`).
 */
export async function runBench(label: string, main: () => Promise<void>, cleanup: () => Promise<void>): Promise<void> {
  let cleaning: Promise<void> | undefined;
  const once = () => (cleaning ??= cleanup());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up\n`);
      void once().finally(() => process.exit(130));
    });
  }
  try {
    await main();
  } catch (e) {
    process.exitCode = 1;
    console.error(`${label} failed: ${describeError(e)}${e instanceof Error && e.stack ? `\n${e.stack}` : ''}`);
  } finally {
    await once();
  }
}
