import test from 'ava';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { AssignmentChange_Action, AssignmentsMessage_Type, Node, Task, TaskState, type SessionMessage } from '@swarmd/proto';
import { nullLogger, type Logger } from '@swarmd/common';
import { startAgent, type Agent, type AgentOptions } from '../src/index.js';
import { createPki, type TestPki, type Pems } from './helpers/certs.js';
import { startFakeDispatcher, type FakeDispatcher, type FakeDispatcherScript } from './helpers/fake-dispatcher.js';

let pki: TestPki;
let mgrPems: Pems;
let nodePems: Pems;
test.before(async () => {
  pki = await createPki();
  mgrPems = await pki.issue('mgr1', 'swarm-manager');
  nodePems = await pki.issue('node1', 'swarm-worker');
});
test.after.always(async () => pki.destroy());

const hello = (sessionId: string, managers: string[] = []): SessionMessage => ({
  sessionId,
  node: undefined,
  managers: managers.map((addr, i) => ({ nodeId: `m${i}`, addr, weight: 1 })),
  redirectAddr: '',
  networks: [],
});

async function setup(t: { teardown(fn: () => unknown): void }, scripts: FakeDispatcherScript[]) {
  const dir = await mkdtemp(join(tmpdir(), 'agent-session-'));
  const servers: FakeDispatcher[] = [];
  for (const s of scripts) servers.push(await startFakeDispatcher(pki.caPem, mgrPems, s));
  const agents: Agent[] = [];
  t.teardown(async () => {
    for (const a of agents) await a.stop();
    for (const s of servers) s.kill();
    await rm(dir, { recursive: true, force: true });
  });
  const start = async (o: Partial<AgentOptions> & { managers: string[] }) => {
    const a = await startAgent({
      stateDir: dir,
      tls: { ...nodePems, caPem: pki.caPem },
      logger: nullLogger,
      backoff: { baseMs: 5, maxMs: 20 },
      rng: () => 0.5,
      ...o,
    });
    agents.push(a);
    return a;
  };
  return { dir, servers, start };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('session: describes the node, heartbeats, keeps the manager list, reports task status', async (t) => {
  const { servers, start, dir } = await setup(t, [{ onSession: () => [hello('s1', ['10.9.9.9:4242'])], periodMs: 20 }]);
  const [d] = servers;
  const agent = await start({ managers: [d.addr], hostname: 'h1', labels: { zone: 'a' }, statusFlushIntervalMs: 10 });
  t.is(agent.nodeId, 'node1');
  const s = await agent.whenConnected();
  t.is(s.sessionId, 's1');
  t.is(s.manager, d.addr);
  const desc = d.sessions[0].description!;
  t.is(desc.hostname, 'h1');
  t.deepEqual(desc.engineLabels, { zone: 'a' });
  t.true(desc.resources!.nanoCpus >= 1e9 && desc.resources!.nanoCpus % 1e9 === 0);
  t.true(desc.resources!.memoryBytes > 0);
  t.is(desc.platform!.os, 'linux');
  await until(() => d.heartbeats.length >= 3, 'heartbeats');
  t.true(d.heartbeats.every((h) => h.sessionId === 's1'));
  // the manager's list replaces the one we started with, and is kept in DIR/agent/managers.json
  t.deepEqual(agent.managers(), ['10.9.9.9:4242']);
  const saved = async () => (JSON.parse(await readFile(join(dir, 'agent', 'managers.json'), 'utf8')) as { managers: string[] }).managers;
  let onDisk: string[] = [];
  for (let i = 0; i < 500 && onDisk.length === 0; i++) onDisk = await saved().catch(() => (sleep(10).then(() => [])));
  t.deepEqual(onDisk, ['10.9.9.9:4242']);
  agent.reportTaskStatus('t1', { state: TaskState.TASK_STATE_RUNNING, message: 'started', timestamp: 1, err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined });
  await until(() => d.statuses.length > 0, 'status');
  t.is(d.statuses[0].sessionId, 's1');
  t.deepEqual(d.statuses[0].updates.map((u) => [u.taskId, u.status?.state]), [['t1', TaskState.TASK_STATE_RUNNING]]);
  await agent.stop();
  await until(() => d.cancelled === 1, 'the server to see the session cancelled');
  t.pass();
});

test('session: follows redirect_addr to the leader', async (t) => {
  const { servers, start } = await setup(t, [{ onSession: () => [hello('leader-s')] }]);
  const [leader] = servers;
  // a follower redirects every session to the leader
  const f2 = await startFakeDispatcher(pki.caPem, mgrPems, { onSession: () => [{ ...hello(''), redirectAddr: leader.addr }] });
  t.teardown(() => f2.kill());
  const agent = await start({ managers: [f2.addr] });
  const s = await agent.whenConnected();
  t.is(s.manager, leader.addr);
  t.is(f2.sessions.length, 1);
  t.is(leader.sessions.length, 1);
});

test('session: when its manager goes, reconnects to the next one from the last list, with backoff', async (t) => {
  const lines: { msg: string; f?: Record<string, unknown> }[] = [];
  const logger: Logger = {
    error: () => undefined,
    warn: () => undefined,
    info: (msg, f) => void lines.push({ msg, f }),
    debug: (msg, f) => void lines.push({ msg, f }),
    child: () => logger,
  };
  const b = await startFakeDispatcher(pki.caPem, mgrPems, { onSession: () => [hello('b1')] });
  t.teardown(() => b.kill());
  const dead = '127.0.0.1:1'; // nothing listens there
  const list: string[] = [];
  const { servers, start } = await setup(t, [{ onSession: () => [hello('a1', list)] }]);
  const [aScript] = servers;
  // a's list: itself, a dead manager, then b
  list.push(aScript.addr, dead, b.addr);
  const agent = await start({ managers: [aScript.addr], logger });
  await agent.whenConnected();
  t.deepEqual(agent.managers(), [aScript.addr, dead, b.addr]);
  const next = once(agent.events, 'session');
  aScript.kill();
  const [s] = (await next) as [{ manager: string; sessionId: string }];
  t.is(s.manager, b.addr);
  t.is(s.sessionId, 'b1');
  const reconnects = lines.filter((l) => l.msg.startsWith('session with manager ended')).map((l) => [l.f?.manager, l.f?.next, l.f?.delayMs]);
  // first the manager that went (backoff attempt 0), then the dead one (attempt 1)
  t.deepEqual(reconnects, [
    [aScript.addr, dead, 4],
    [dead, b.addr, 8],
  ]);
});

test('session: a manager that closes the session is left for the next; a restart starts from managers.json', async (t) => {
  const list: string[] = [];
  const { servers, start } = await setup(t, [{ onSession: (_r, n) => [hello(`x${n}`, list)] }, { onSession: (_r, n) => [hello(`y${n}`, list)] }]);
  const [xs, y] = servers;
  list.push(xs.addr, y.addr);
  const agent = await start({ managers: [xs.addr] });
  await agent.whenConnected();
  const next = once(agent.events, 'session');
  xs.endSessions();
  const [s] = (await next) as [{ manager: string }];
  t.is(s.manager, y.addr);
  await agent.stop();
  // a new agent given a dead address still finds y through managers.json
  const again = await start({ managers: ['127.0.0.1:1'] });
  const s2 = await again.whenConnected();
  t.true([xs.addr, y.addr].includes(s2.manager));
});

test('session: consumes Assignments (COMPLETE then INCREMENTAL) into the worker', async (t) => {
  const task = (id: string) => Task.fromJSON({ id, desiredState: 'TASK_STATE_RUNNING' });
  const up = (id: string) => ({ assignment: { item: { $case: 'task' as const, task: task(id) } }, action: AssignmentChange_Action.UPDATE });
  const { servers, start } = await setup(t, [
    {
      onSession: () => [hello('s1')],
      assignments: () => [
        { type: AssignmentsMessage_Type.COMPLETE, appliesTo: '', resultsIn: '1', changes: [up('a'), up('b')], networkState: undefined },
        { type: AssignmentsMessage_Type.INCREMENTAL, appliesTo: '1', resultsIn: '2', changes: [up('c'), { ...up('a'), action: AssignmentChange_Action.REMOVE }], networkState: undefined },
      ],
    },
  ]);
  const agent = await start({ managers: [servers[0].addr] });
  await until(() => agent.worker.tasks().length === 2 && agent.worker.tasks()[0].id === 'b', 'assignments');
  t.deepEqual(agent.worker.tasks().map((x) => x.id), ['b', 'c']);
});

test('startAgent refuses a certificate without a CN', async (t) => {
  await t.throwsAsync(
    startAgent({ stateDir: tmpdir(), managers: ['127.0.0.1:1'], tls: { keyPem: '', certPem: 'nope', caPem: '' }, logger: nullLogger }),
    { message: /not a PEM certificate/ },
  );
});

test('session: reconnect() and updateTls(…, { reconnect }) open a new session with the same manager; node events', async (t) => {
  const node = Node.fromJSON({ id: 'node1' });
  const { servers, start } = await setup(t, [{ onSession: (_r, n) => [{ ...hello(`s${n}`), node }] }]);
  const [d] = servers;
  const agent = await start({ managers: [d.addr] });
  const nodes: string[] = [];
  agent.events.on('node', (n) => nodes.push(n.id));
  await agent.whenConnected();
  const second = once(agent.events, 'session');
  agent.reconnect();
  const [s2] = (await second) as [{ manager: string; sessionId: string }];
  t.deepEqual([s2.manager, s2.sessionId], [d.addr, 's2']);
  t.is(d.sessions[1].sessionId, 's1'); // the previous session id is offered for resumption
  const renewed = await pki.issue('node1', 'swarm-manager');
  const third = once(agent.events, 'session');
  agent.updateTls({ ...renewed, caPem: pki.caPem }, { reconnect: true });
  const [s3] = (await third) as [{ manager: string; sessionId: string }];
  t.deepEqual([s3.manager, s3.sessionId], [d.addr, 's3']);
  t.true(nodes.length >= 2 && nodes.every((id) => id === 'node1'));
});
