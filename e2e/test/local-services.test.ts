// Services on a real local cluster (3 managers, 2 workers: real swarmd processes in network
// namespaces, containers under runc): spread, scale, global with a published port, drain,
// restart policy, logs from several hosts, a rolling update and one that pauses. One cluster for
// the file; `local down` at the end leaves nothing behind. Skipped while packages/swarmd is not built (never under CI).

import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { clusterTest, perNode, startLocalCluster } from './helpers/local-cluster.js';

const NAME = `svc${process.pid % 10000}`;
const SUBNET = '10.254.19';

clusterTest('services on a local cluster: spread, scale, global + publish, drain, restart policy, logs, rolling update', async (t) => {
  const c = await startLocalCluster(t, NAME, SUBNET, 3, 2);
  const { ctl, ok, tasks, running, until } = c;
  const image = c.image;
  const nodes = await c.nodes();
  t.is(nodes.length, 5);
  const nodeOf = (host: string) => nodes.find((n) => n.description?.hostname === `${NAME}-${host}`)!.id;

  // 1. six replicas spread over the five nodes
  await ok('service', 'create', '--name', 'web', '--replicas', '6', image);
  const six = await running('web');
  t.is(six.length, 6);
  const spread = perNode(six);
  t.is(spread.size, 5, 'every node runs a replica');
  t.true([...spread.values()].every((n) => n >= 1 && n <= 2));

  // 2. scale to 10 (two per node), then to 2
  await ok('service', 'scale', 'web=10');
  await until('10 running', async () => (await running('web')).length === 10);
  t.true([...perNode(await running('web')).values()].every((n) => n === 2));
  await ok('service', 'scale', 'web=2');
  await until('2 running', async () => (await running('web')).length === 2 && (await tasks('web')).filter((x) => x.desiredState === 'TASK_STATE_RUNNING').length === 2);
  const slots = (await running('web')).map((x) => x.slot).sort();
  t.is(new Set(slots).size, 2, 'no duplicate slot');

  // 3. drain a worker: its tasks move, nothing runs on it
  await ok('service', 'scale', 'web=5');
  await until('5 running', async () => (await running('web')).length === 5);
  const w1 = nodeOf('w1');
  await ok('node', 'update', '--availability', 'drain', `${NAME}-w1`);
  await until('tasks off the drained node', async () => {
    const r = await running('web');
    return r.length === 5 && r.every((x) => x.nodeId !== w1);
  });
  await ok('node', 'update', '--availability', 'active', `${NAME}-w1`);
  await ok('service', 'rm', 'web');

  // 4. a global service publishing a host port: every host answers with its own task
  await ok('service', 'create', '--name', 'pub', '--mode', 'global', '--publish', 'mode=host,published=8090,target=8080', image);
  t.is((await running('pub')).length, 5);
  for (let i = 2; i <= 6; i++) {
    const r = await run('curl', ['-s', '-m', '5', `http://${SUBNET}.${i}:8090/`]);
    t.regex(r.stdout, /^hello from \w+/);
  }
  // stop-first update of it: each node's new task takes over the port its old one held
  await ok('service', 'update', '--env-add', 'V=2', 'pub');
  const updated = await running('pub');
  t.is(updated.length, 5);
  t.true(updated.every((x) => x.spec?.container?.env?.includes('V=2')));
  for (let i = 2; i <= 6; i++) {
    const r = await run('curl', ['-s', '-m', '5', `http://${SUBNET}.${i}:8090/`]);
    t.regex(r.stdout, /^hello from \w+/);
  }
  await ok('service', 'rm', 'pub');

  // 5. restart policy: on-failure with max attempts; none
  await ok('service', 'create', '--name', 'crash', '--detach', '--replicas', '1', '--restart-condition', 'on-failure', '--restart-max-attempts', '2', '--restart-delay', '1s', image, '--', 'sh', '-c', 'exit 3');
  await until('three failed attempts', async () => (await tasks('crash')).filter((x) => x.status?.state === 'TASK_STATE_FAILED').length === 3);
  await sleep(3000);
  const attempts = await tasks('crash');
  t.is(attempts.length, 3, 'no restart past max attempts');
  t.true(attempts.every((x) => x.status?.state === 'TASK_STATE_FAILED' && /exit \(3\)/.test(x.status.err ?? '')));
  await ok('service', 'create', '--name', 'once', '--detach', '--replicas', '1', '--restart-condition', 'none', image, '--', 'sh', '-c', 'exit 4');
  await until('one failed task', async () => (await tasks('once')).some((x) => x.status?.state === 'TASK_STATE_FAILED'));
  await sleep(3000);
  t.is((await tasks('once')).length, 1, 'restart condition none: no new task');
  await ok('service', 'rm', 'crash', 'once');

  // 6. logs come from tasks on different hosts
  await ok('service', 'create', '--name', 'talk', '--replicas', '5', image, '--', 'sh', '-c', 'while true; do echo "line from $(hostname)"; sleep 1; done');
  let hosts = new Set<string>();
  await until('log lines from 2+ hosts', async () => {
    const out = await ok('service', 'logs', '--tail', '20', 'talk');
    hosts = new Set([...out.matchAll(/@(\S+)\s+\| line from/g)].map((m) => m[1]));
    return hosts.size >= 2;
  });
  t.true(hosts.size >= 2, [...hosts].join(','));
  await ok('service', 'rm', 'talk');

  // 7. rolling update: every replica replaced by one of the new spec, two at a time; an update to
  // an image that cannot be pulled pauses after its first batch and the other replicas keep running
  await ok('service', 'create', '--name', 'roll', '--replicas', '4', '--update-parallelism', '2', image);
  const before = new Set((await running('roll')).map((x) => x.id));
  await ok('service', 'update', '--env-add', 'V=2', 'roll');
  const after = await running('roll');
  t.is(after.length, 4);
  t.true(after.every((x) => !before.has(x.id)), 'every task replaced');
  t.true(after.every((x) => x.spec?.container?.env?.includes('V=2')), 'the new spec runs');
  t.deepEqual(after.map((x) => x.slot).sort(), [1, 2, 3, 4]);
  const bad = await ctl('service', 'update', '--image', `${SUBNET}.1:5000/demo/nope:1`, '--update-monitor', '2s', 'roll');
  t.not(bad.code, 0, 'a paused update is an error');
  t.regex(bad.stderr, /paused|pause/i);
  const still = await running('roll');
  t.true(still.length >= 2, `at most a batch (2) down: ${still.length} running`);
  t.true(still.every((x) => x.spec?.container?.image?.includes('demo/web')), 'the old image keeps running');
  await ok('service', 'rm', 'roll');

  // 8. local down removes every container, netns and process of the cluster
  const down = await ctl('local', 'down', '--name', NAME);
  t.is(down.code, 0, down.stderr);
  const ns = await run('ip', ['netns', 'list']);
  t.false(ns.stdout.includes(`swl-${NAME}-`), 'host netns removed');
  const ps = await run('ps', ['-eo', 'args']);
  t.false(ps.stdout.includes('line from'), 'no container left running');
});
