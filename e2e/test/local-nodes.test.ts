// Services as nodes come and go, on a real local cluster (3 managers and a worker, then a second
// worker joins): a global service reaches the node that joins later and follows label changes;
// constraints and placement preferences hold; an unhealthy task is replaced; a killed worker
// host's tasks run elsewhere; a node whose agent comes back stops its stale containers; kill -9 of
// the leader during a scale still converges with no duplicate or lost slot. Root, netns, runc; skipped while swarmd is not
// built (never under CI).
import { readdir, readFile } from 'node:fs/promises';
import { clusterTest, perNode, RUNNING, startLocalCluster, type TaskJson } from './helpers/local-cluster.js';

const NAME = `nod${process.pid % 10000}`;
const NET = '10.254.21';
/** In the command line of this file's containers, to count them on the whole machine. */
const MARK = `mark-${NAME}`;
/** Observed states from which a task may still run a container. */
const MAY_RUN = new Set(['NEW', 'PENDING', 'ASSIGNED', 'ACCEPTED', 'PREPARING', 'READY', 'STARTING', 'RUNNING'].map((x) => `TASK_STATE_${x}`));

/** Processes on this machine running one of this file's `sh -c ': MARK ...'` containers. */
async function markedContainers(): Promise<number> {
  let n = 0;
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('sh\0-c\0') && cmd.includes(`: ${MARK};`)) n++;
  }
  return n;
}

/** Each slot 1..n has exactly one task desired RUNNING, and it runs. */
function slotsExactly(tasks: readonly TaskJson[], n: number): boolean {
  const desired = tasks.filter((x) => x.desiredState === RUNNING);
  const slots = desired.map((x) => x.slot ?? 0).sort((a, b) => a - b);
  return desired.length === n && slots.every((s, i) => s === i + 1) && desired.every((x) => x.status?.state === RUNNING);
}

clusterTest('nodes come and go: late joiner, constraints, placement prefs, health, killed worker, stale tasks, leader killed during scale', async (t) => {
  const c = await startLocalCluster(t, NAME, NET, 3, 1);
  const { ok, running, tasks, until } = c;
  const hostname = (h: string) => `${NAME}-${h}`;
  // A node is DOWN after 3 missed heartbeats: 3 s instead of Swarm's 15.
  await ok('cluster', 'update', '--dispatcher-heartbeat', '1s');

  // 1. a global service runs on every node, and on a node that joins later
  await ok('service', 'create', '--name', 'g', '--mode', 'global', c.image);
  t.is((await running('g')).length, 4);
  await ok('local', 'add', '--name', NAME, '--workers', '1');
  const w2 = await c.nodeOf('w2');
  await until('the global task on the node that joined', async () => (await running('g')).some((x) => x.nodeId === w2));
  t.is((await running('g')).length, 5);
  t.is(perNode(await running('g')).size, 5, 'one task per node');
  await ok('service', 'rm', 'g');

  // 2. constraints and placement preferences
  for (const h of ['m1', 'm2']) await ok('node', 'update', '--label-add', 'zone=a', hostname(h));
  for (const h of ['m3', 'w1', 'w2']) await ok('node', 'update', '--label-add', 'zone=b', hostname(h));
  const workers = new Set([await c.nodeOf('w1'), w2]);
  const zoneA = new Set([await c.nodeOf('m1'), await c.nodeOf('m2')]);
  await ok('service', 'create', '--name', 'onw', '--replicas', '4', '--constraint', 'node.role==worker', c.image);
  const onw = await running('onw');
  t.is(onw.length, 4);
  t.true(onw.every((x) => workers.has(x.nodeId ?? '')), 'node.role==worker holds');
  t.deepEqual([...perNode(onw).values()], [2, 2], 'spread over the two workers');
  await ok('service', 'create', '--name', 'zoned', '--replicas', '4', '--placement-pref', 'spread=node.labels.zone', c.image);
  const zoned = await running('zoned');
  t.is(zoned.length, 4);
  t.is(zoned.filter((x) => zoneA.has(x.nodeId ?? '')).length, 2, 'half the tasks in zone a (2 nodes), half in zone b (3 nodes)');
  await ok('service', 'create', '--name', 'nowhere', '--detach', '--constraint', 'node.labels.zone==c', c.image);
  await until('the reason a task cannot be placed', async () => (await tasks('nowhere')).some((x) => /constraint/.test(`${x.status?.err ?? ''} ${x.status?.message ?? ''}`)));
  const pending = (await tasks('nowhere'))[0];
  t.is(pending.status?.state, 'TASK_STATE_PENDING');
  t.is(pending.nodeId ?? '', '', 'not placed');
  // a global service follows label changes: one task per node that matches, no more
  await ok('service', 'create', '--name', 'ga', '--mode', 'global', '--constraint', 'node.labels.zone==a', c.image);
  const onNodes = async () => new Set((await running('ga')).map((x) => x.nodeId ?? ''));
  const sorted = (ids: Iterable<string>) => [...ids].sort();
  t.deepEqual(sorted(await onNodes()), sorted(zoneA));
  await ok('node', 'update', '--label-add', 'zone=a', hostname('w2'));
  await until('ga on w2 once it is in zone a', async () => (await onNodes()).has(w2));
  await ok('node', 'update', '--label-rm', 'zone', hostname('m1'));
  const m1 = await c.nodeOf('m1');
  await until('ga off m1 once it left zone a', async () => {
    const desired = (await tasks('ga')).filter((x) => x.desiredState === RUNNING);
    return desired.length === 2 && !desired.some((x) => x.nodeId === m1) && (await onNodes()).size === 2;
  });
  t.deepEqual(sorted(await onNodes()), sorted([await c.nodeOf('m2'), w2]));
  await ok('service', 'rm', 'onw', 'zoned', 'nowhere', 'ga');

  // 3. an unhealthy task is replaced; a task counts as running only once healthy
  const sick = `: ${MARK}; touch /tmp/ok; sleep 6; rm /tmp/ok; sleep 1000`;
  await ok('service', 'create', '--name', 'sick', '--replicas', '1', '--health-cmd', 'test -f /tmp/ok', '--health-interval', '1s', '--health-retries', '1', c.image, '--', 'sh', '-c', sick);
  const first = await running('sick');
  t.is(first.length, 1);
  await until('the unhealthy task replaced', async () => {
    const all = await tasks('sick');
    const old = all.find((x) => x.id === first[0].id);
    return old?.desiredState !== RUNNING && /unhealthy/i.test(`${old?.status?.err ?? ''} ${old?.status?.message ?? ''}`) && all.some((x) => x.id !== first[0].id && x.slot === first[0].slot && x.desiredState === RUNNING);
  });
  // A replacement the health check asked for may be assigned but not started yet when the
  // service goes: it starts, then stops (its shell ignores SIGTERM: the stop grace). Wait until no
  // task of the service can still run, then for its containers.
  const sickId = first[0].serviceId;
  await ok('service', 'rm', 'sick');
  await until('no sick task that may still run, and no sick container left', async () => {
    const all = JSON.parse(await ok('task', 'ls', '--format', 'json')) as TaskJson[];
    const live = all.filter((x) => x.serviceId === sickId && MAY_RUN.has(x.status?.state ?? 'TASK_STATE_NEW'));
    return live.length === 0 && (await markedContainers()) === 0;
  });

  // 4. kill a worker host: its tasks run elsewhere; it comes back empty
  const busy = `: ${MARK}; while true; do sleep 1; done`;
  await ok('service', 'create', '--name', 'web', '--replicas', '6', c.image, '--', 'sh', '-c', busy);
  const w1 = await c.nodeOf('w1');
  t.true((await running('web')).some((x) => x.nodeId === w1), 'w1 runs a task before it dies');
  await ok('local', 'stop', '--name', NAME, '--kill', 'w1');
  await until('web back at 6 without w1', async () => {
    const r = await running('web');
    return r.length === 6 && r.every((x) => x.nodeId !== w1) && slotsExactly(await tasks('web'), 6);
  });
  t.is((await c.nodes()).find((n) => n.id === w1)?.status?.state, 'NODE_STATE_DOWN');
  await ok('local', 'start', '--name', NAME, 'w1');
  t.is(await markedContainers(), 6, 'the killed host left no container');

  // 5. an agent that was stopped (its containers kept running) comes back and stops its stale tasks
  await ok('service', 'scale', 'web=8');
  t.true((await running('web')).some((x) => x.nodeId === w2), 'w2 runs a task');
  const onW2 = (await running('web')).filter((x) => x.nodeId === w2).length;
  await ok('local', 'stop', '--name', NAME, 'w2');
  await until('web back at 8 without w2', async () => {
    const r = await running('web');
    return r.length === 8 && r.every((x) => x.nodeId !== w2);
  });
  t.is(await markedContainers(), 8 + onW2, "w2's containers outlived its agent");
  await ok('local', 'start', '--name', NAME, 'w2');
  await until('the stale containers on w2 stopped', async () => (await markedContainers()) === 8);
  t.true(slotsExactly(await tasks('web'), 8));

  // 6. kill -9 the leader's host during a scale: the service converges, no slot twice or lost
  const leader = (await c.nodes()).find((n) => n.managerStatus?.leader);
  const leaderHost = leader?.description?.hostname?.slice(NAME.length + 1) ?? '';
  t.regex(leaderHost, /^m\d$/);
  await ok('service', 'scale', '--detach', 'web=14');
  await ok('local', 'stop', '--name', NAME, '--kill', leaderHost);
  // Its node is DOWN once a new leader has missed its heartbeats; its tasks then run elsewhere.
  await until('web at 14 off the dead host', async () => {
    const down = (await c.nodes()).find((n) => n.id === leader?.id)?.status?.state === 'NODE_STATE_DOWN';
    const r = await running('web');
    return down && r.length === 14 && r.every((x) => x.nodeId !== leader?.id) && slotsExactly(await tasks('web'), 14);
  }, 120);
  await until('exactly 14 containers on the machine', async () => (await markedContainers()) === 14);
  await ok('local', 'start', '--name', NAME, leaderHost);
  t.true(slotsExactly(await tasks('web'), 14));
  t.is(await markedContainers(), 14);
  await ok('service', 'rm', 'web');
  await until('no container left', async () => (await markedContainers()) === 0);
});
