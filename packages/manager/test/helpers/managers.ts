import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, nullLogger, type Logger } from '@swarmd/common';
import { ClusterCa, createKeyAndCsr, newId, startManager, type Manager, type ManagerOptions, type TlsMaterial } from '../../src/index.js';

export function testLogger(): Logger {
  return process.env.TEST_LOG ? createLogger({ format: 'json', level: 'debug' }) : nullLogger;
}

/** A free TCP port on loopback (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export async function tempDir(t: { teardown(fn: () => unknown): void }, prefix = 'mgr-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

export const FAST_RAFT = { tickMs: 50, electionTicks: 10, heartbeatTicks: 1, fsync: false };

export interface TestManager {
  m: Manager;
  dir: string;
  addr: string;
  tls: TlsMaterial;
}

export async function startTestManager(
  t: { teardown(fn: () => unknown): void },
  o: Partial<ManagerOptions> & Pick<ManagerOptions, 'bootstrap'> & { dir?: string; port?: number },
): Promise<TestManager> {
  const dir = o.dir ?? (await tempDir(t));
  const port = o.port ?? (await freePort());
  const addr = `127.0.0.1:${port}`;
  const m = await startManager({
    stateDir: dir,
    listenAddr: addr,
    advertiseAddr: addr,
    logger: testLogger(),
    raft: FAST_RAFT,
    controlSocket: false,
    joinTimeoutMs: 20_000,
    ...o,
  });
  t.teardown(() => m.stop());
  return { m, dir, addr, tls: m.tls() };
}

/** A certificate for a new node, signed by the cluster CA held in `leader`'s store. */
export async function issueCert(leader: Manager, role: 'swarm-manager' | 'swarm-worker', addr: string, nodeId = newId()): Promise<TlsMaterial> {
  const ca = await ClusterCa.fromCluster(leader.cluster()!);
  const { keyPem, csrPem } = await createKeyAndCsr(nodeId);
  const c = await ca.issueNodeCertificate(csrPem, role, nodeId, { now: Date.now(), addresses: [addr] });
  return { caCertPem: ca.certPem, certPem: c.certPem, keyPem };
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function voters(m: Manager): number[] {
  return [...m.raft!.status().confState.voters].sort((a, b) => a - b);
}

/** store.update retried on CONFLICT (controllers write the same objects). */
export async function updateRetry(m: Manager, fn: Parameters<Manager['store']['update']>[0]): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await m.store.update(fn);
      return;
    } catch (err) {
      if (i < 10 && (err as { code?: string }).code === 'CONFLICT') continue;
      throw err;
    }
  }
}
