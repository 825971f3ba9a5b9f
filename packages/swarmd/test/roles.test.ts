import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nullLogger, createLogger } from '@swarmd/common';
import { NodeRole } from '@swarmd/proto';
import { certificateFacts, cloneObject, type Manager } from '@swarmd/manager';
import { SwarmdConfigSchema, startDaemon, type Daemon } from '../src/index.js';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function setDesiredRole(m: Manager, nodeId: string, role: NodeRole): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await m.store.update((tx) => {
        const n = cloneObject('node', tx.get('node', nodeId)!);
        n.spec!.desiredRole = role;
        tx.update('node', n);
      });
      return;
    } catch (err) {
      if (i > 10) throw err;
    }
  }
}

const logger = process.env.TEST_LOG ? createLogger({ format: 'json', level: 'debug' }) : nullLogger;
const raft = { tickMs: 50, electionTicks: 10, heartbeatTicks: 1, fsync: false };

test('in-process swarmd: a worker joins, renews its certificate, is promoted to manager (joins raft) and demoted back', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-roles-'));
  const daemons: Daemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  const pa = await freePort();
  const a = await startDaemon({
    command: 'init',
    config: SwarmdConfigSchema.parse({ stateDir: join(root, 'a'), listenAddr: `127.0.0.1:${pa}`, hostname: 'a', nodeCertExpiryMs: 3_600_000 }),
    logger,
    print: () => undefined,
    managerOptions: { raft },
  });
  daemons.push(a);
  const am = a.manager()!;
  const pw = await freePort();
  const w = await startDaemon({
    command: 'join',
    joinAddr: `127.0.0.1:${pa}`,
    config: SwarmdConfigSchema.parse({ stateDir: join(root, 'w'), listenAddr: `127.0.0.1:${pw}`, hostname: 'w', token: am.joinTokens()!.worker }),
    logger,
    managerOptions: { raft },
  });
  daemons.push(w);
  t.is(certificateFacts(w.tls().certPem).role, 'swarm-worker');
  t.is(w.manager(), undefined);
  // The cluster's node certificate expiry (set at init) decides the lifetime: 1 h (+ 5 min backdating).
  const life = certificateFacts(w.tls().certPem);
  t.is(Math.round((life.notAfter - life.notBefore) / 60_000), 65);
  await waitFor('the worker has a session', () => w.agent()?.session() !== undefined);

  // Renewal: a new certificate (new key) for the same node.
  const before = w.tls();
  await w.renewNow();
  t.not(w.tls().certPem, before.certPem);
  t.not(w.tls().keyPem, before.keyPem);
  t.is(certificateFacts(w.tls().certPem).nodeId, w.nodeId);

  // A manager renews too: its server and channels take the new certificate without a restart.
  const aBefore = a.tls().certPem;
  await a.renewNow();
  t.not(a.tls().certPem, aBefore);
  t.is(certificateFacts(a.tls().certPem).role, 'swarm-manager');
  t.is(am.tls().certPem, a.tls().certPem);

  // Promotion: desiredRole = manager → the session shows it → renewal gives a manager
  // certificate → swarmd starts a manager that joins raft and is promoted to voter.
  await setDesiredRole(am, w.nodeId, NodeRole.NODE_ROLE_MANAGER);
  await waitFor('the worker runs a manager', () => w.manager() !== undefined);
  const wm = w.manager()!;
  await waitFor('two voters', () => am.raft!.status().confState.voters.includes(wm.raftId) && am.raft!.status().confState.voters.length === 2);
  t.is(certificateFacts(w.tls().certPem).role, 'swarm-manager');

  // Demotion: the leader removes it from raft; its swarmd stops the manager and renews as a worker.
  await setDesiredRole(am, w.nodeId, NodeRole.NODE_ROLE_WORKER);
  await waitFor('the manager stopped on the demoted node', () => w.manager() === undefined);
  await waitFor('a worker certificate again', () => certificateFacts(w.tls().certPem).role === 'swarm-worker');
  t.deepEqual(am.raft!.status().confState.voters, [am.raftId]);
  t.true((await readdir(join(root, 'w'))).some((f) => f.startsWith('raft.retired-')));
});
