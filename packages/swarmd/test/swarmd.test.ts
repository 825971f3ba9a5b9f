import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSync, statSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, ManagerStatus_Reachability, type Node } from '@swarmd/proto';

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');
/** The installed command: runs the bundle (dist/bundle/main.js) that `npm run build` makes. */
const INSTALLED = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'swarmd.cjs');
const BUNDLE = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'bundle', 'main.js');
const BUILD_INFO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '.tsbuildinfo');

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

interface Proc {
  child: ChildProcess;
  exited: Promise<number | null>;
  log: string;
  out: string;
}

const procs = new Set<ChildProcess>();
function swarmd(args: string[], logDir: string, name: string, entry = MAIN): Proc {
  const log = join(logDir, `${name}.log`);
  const out = join(logDir, `${name}.out`);
  const child = spawn(process.execPath, [entry, ...args], { stdio: ['ignore', openSync(out, 'a'), openSync(log, 'a')], env: { ...process.env, SWARM_LOG_LEVEL: 'info' } });
  procs.add(child);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => (procs.delete(child), r(code))));
  return { child, exited, log, out };
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function control(dir: string): ControlClient {
  return new ControlClient(`unix://${join(dir, 'control.sock')}`, grpc.credentials.createInsecure());
}

function listNodes(dir: string): Promise<Node[]> {
  const c = control(dir);
  return new Promise<Node[]>((res, rej) =>
    c.listNodes({ filters: undefined }, new grpc.Metadata(), { deadline: Date.now() + 3000 }, (e, r) => (e ? rej(e) : res(r.nodes))),
  ).finally(() => c.close());
}

function labelNode(dir: string, n: Node, labels: Record<string, string>): Promise<Node> {
  const c = control(dir);
  const spec = { ...n.spec!, annotations: { name: n.spec?.annotations?.name ?? '', labels } };
  return new Promise<Node>((res, rej) =>
    c.updateNode({ nodeId: n.id, nodeVersion: n.meta!.version, spec }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? rej(e) : res(r.node!))),
  ).finally(() => c.close());
}

// Both tests start real processes tracked in `procs`, which each test's teardown kills: one at a time.
test.afterEach.always(() => {
  for (const c of procs) c.kill('SIGKILL');
});

test.serial('three real swarmd managers: init, joins, refused tokens, kill -9 the leader, a survivor takes a write, restart rejoins, SIGTERM is clean, force-new-cluster', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-'));
  t.teardown(async () => {
    for (const c of procs) c.kill('SIGKILL');
    if (!process.env.KEEP) await rm(root, { recursive: true, force: true });
    else console.log('kept', root);
  });
  const cfg = join(root, 'swarmd.yaml');
  await writeFile(cfg, 'raft:\n  tickMs: 50\n  electionTicks: 10\nlogLevel: info\n');
  const names = ['a', 'b', 'c'];
  const ports = new Map<string, number>();
  for (const n of names) ports.set(n, await freePort());
  const addr = (n: string) => `127.0.0.1:${ports.get(n)}`;
  const dir = (n: string) => join(root, n);
  const flags = (n: string) => ['--state-dir', dir(n), '--listen-addr', addr(n), '--hostname', n, '--config', cfg];
  const running = new Map<string, Proc>();

  running.set('a', swarmd(['init', ...flags('a')], root, 'a'));
  const out = await waitFor('init to print the join commands', async () => {
    const s = await readFile(join(root, 'a.out'), 'utf8').catch(() => '');
    return s.includes('To add a manager') ? s : undefined;
  });
  const tokens = [...out.matchAll(/--token (SWMTKN-1-\S+)/g)].map((m) => m[1]);
  t.is(tokens.length, 2);
  const [, managerToken] = tokens;

  // A wrong secret and a token of another CA are refused, with clear messages, before anything is written.
  const bad = managerToken.slice(0, -5) + '00000';
  const w = swarmd(['join', '--token', bad, ...flags('b'), addr('a')], root, 'bad1');
  t.is(await w.exited, 1);
  t.regex(await readFile(w.log, 'utf8'), /secret is wrong or the token was rotated/);
  const foreign = `SWMTKN-1-${'1'.repeat(50)}-${managerToken.split('-')[3]}`;
  const f = swarmd(['join', '--token', foreign, ...flags('b'), addr('a')], root, 'bad2');
  t.is(await f.exited, 1);
  t.regex(await readFile(f.log, 'utf8'), /CA digest does not match the join token/);
  const badCfg = join(root, 'bad.yaml');
  await writeFile(badCfg, 'raft:\n  tickMs: fast\nnope: 1\n');
  const bc = swarmd(['run', '--state-dir', dir('x'), '--config', badCfg], root, 'bad3');
  t.is(await bc.exited, 2);
  t.regex(await readFile(bc.log, 'utf8'), /raft\.tickMs: .*number/);

  for (const n of ['b', 'c']) running.set(n, swarmd(['join', '--token', managerToken, ...flags(n), addr('a')], root, n));
  const managers = await waitFor('three reachable managers', async () => {
    const ns = await listNodes(dir('a'));
    const ms = ns.filter((n) => n.managerStatus?.raftId && n.managerStatus.reachability === ManagerStatus_Reachability.REACHABLE);
    return ms.length === 3 ? ms : undefined;
  });
  // Both joiners are voters once the leader promoted them (learner → voter when caught up).
  await waitFor('two promotions', async () => ((await readFile(running.get('a')!.log, 'utf8')).match(/promoted a learner to voter/g)?.length === 2 ? true : undefined));
  const leaderNode = managers.find((n) => n.managerStatus!.leader)!;
  const leaderName = leaderNode.description?.hostname || names.find((n) => addr(n) === leaderNode.managerStatus!.addr)!;
  t.is(leaderName, 'a');

  // kill -9 the leader: the others elect a leader (both are voters) and a survivor's socket takes a write.
  running.get('a')!.child.kill('SIGKILL');
  await running.get('a')!.exited;
  const survivor = 'b';
  const updated = await waitFor('a write through a survivor', async () => {
    const ns = await listNodes(dir(survivor));
    const target = ns.find((n) => n.managerStatus?.addr === addr('c'))!;
    return labelNode(dir(survivor), target, { after: 'failover' });
  });
  t.is(updated.spec?.annotations?.labels.after, 'failover');

  // Restart a from its state dir: it rejoins and catches up.
  running.set('a', swarmd(['run', '--state-dir', dir('a'), '--config', cfg], root, 'a2'));
  await waitFor('a caught up', async () => {
    const ns = await listNodes(dir('a'));
    return ns.some((n) => n.spec?.annotations?.labels.after === 'failover') ? true : undefined;
  });

  // Clean shutdown on SIGTERM: exit 0, pid file and socket removed.
  for (const n of names) running.get(n)!.child.kill('SIGTERM');
  for (const n of names) t.is(await running.get(n)!.exited, 0, `${n} exits 0 on SIGTERM`);
  await t.throwsAsync(readFile(join(dir('b'), 'swarmd.pid')));
  await t.throwsAsync(readFile(join(dir('b'), 'control.sock')));

  // a and c are gone for good: b alone has no quorum, until --force-new-cluster makes it the
  // only manager, with its data.
  const fb = swarmd(['run', '--state-dir', dir('b'), '--config', cfg, '--force-new-cluster'], root, 'b-force');
  const relabelled = await waitFor('a write on the forced survivor', async () => {
    const ns = await listNodes(dir('b'));
    const target = ns.find((n) => n.managerStatus?.addr === addr('b'))!;
    t.true(ns.some((n) => n.spec?.annotations?.labels.after === 'failover'), 'data kept');
    return labelNode(dir('b'), target, { forced: 'yes' });
  });
  t.is(relabelled.spec?.annotations?.labels.forced, 'yes');
  fb.child.kill('SIGTERM');
  t.is(await fb.exited, 0);
});

test.serial('the installed swarmd (its bundle) inits a cluster, a manager run from the modules joins it, and the bundle answers as the modules do', async (t) => {
  const bundle = statSync(BUNDLE, { throwIfNoEntry: false });
  t.truthy(bundle, `no bundle at ${BUNDLE}: run npm run build`);
  t.true(bundle!.mtimeMs >= statSync(BUILD_INFO).mtimeMs, 'the bundle is current, so the installed command runs it');
  const root = await mkdtemp(join(tmpdir(), 'swarmd-bundle-'));
  t.teardown(async () => {
    for (const c of procs) c.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
  });
  const cfg = join(root, 'swarmd.yaml');
  await writeFile(cfg, 'raft:\n  tickMs: 50\n  electionTicks: 10\nlogLevel: info\n');
  const port = { a: await freePort(), b: await freePort() };
  const flags = (n: 'a' | 'b') => ['--state-dir', join(root, n), '--listen-addr', `127.0.0.1:${port[n]}`, '--hostname', n, '--config', cfg];

  // Bad input gets the same refusal from both.
  const badCfg = join(root, 'bad.yaml');
  await writeFile(badCfg, 'raft:\n  tickMs: fast\n');
  for (const entry of [MAIN, INSTALLED]) {
    const bad = swarmd(['run', '--state-dir', join(root, 'x'), '--config', badCfg], root, `bad-${basename(entry)}`, entry);
    t.is(await bad.exited, 2, entry);
    t.regex(await readFile(bad.log, 'utf8'), /raft\.tickMs: .*number/, entry);
  }

  const a = swarmd(['init', ...flags('a')], root, 'a', INSTALLED);
  const out = await waitFor('init to print the join commands', async () => {
    const s = await readFile(join(root, 'a.out'), 'utf8').catch(() => '');
    return s.includes('To add a manager') ? s : undefined;
  });
  const managerToken = [...out.matchAll(/--token (SWMTKN-1-\S+)/g)].map((m) => m[1])[1];
  const b = swarmd(['join', '--token', managerToken, ...flags('b'), `127.0.0.1:${port.a}`], root, 'b', MAIN);
  const seen = await waitFor('two reachable managers, seen through the bundle', async () => {
    const ns = await listNodes(join(root, 'a'));
    const up = ns.filter((n) => n.managerStatus?.reachability === ManagerStatus_Reachability.REACHABLE && n.description?.hostname);
    return up.length === 2 ? up : undefined;
  });
  t.deepEqual(seen.map((n) => n.description?.hostname).sort(), ['a', 'b']);
  t.is((await listNodes(join(root, 'b'))).length, 2, 'and through the modules');
  a.child.kill('SIGTERM');
  b.child.kill('SIGTERM');
  t.is(await a.exited, 0, 'the bundle exits 0 on SIGTERM');
  t.is(await b.exited, 0);
});
