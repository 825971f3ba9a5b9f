// Failure detection with the default settings (5 s heartbeat, grace 3), on a real local cluster
// (a manager and two workers): when a worker host dies (SIGKILL to its swarmd, then `local stop
// --kill` for every other process of the host, as a power loss), its session stream breaks, the
// leader marks the node DOWN once it has not reconnected within the disconnect grace (2 s), and its
// tasks run on the other worker. Heartbeat expiry alone would take 15 s to notice. Root, netns,
// runc; skipped while swarmd is not built (never under CI).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

const NAME = `fd${process.pid % 10000}`;
const NET = '10.254.66';

clusterTest('a killed worker host is DOWN from its broken session and its tasks run elsewhere well before heartbeat expiry', async (t) => {
  const c = await startLocalCluster(t, NAME, NET, 1, 2);
  const { ok, running, until } = c;
  const cluster = JSON.parse(await ok('cluster', 'inspect', '--format', 'json')) as { spec?: { dispatcher?: { heartbeatPeriodMs?: number } } };
  t.is(cluster.spec?.dispatcher?.heartbeatPeriodMs || 5000, 5000, 'the default heartbeat period (5 s)');

  await ok('service', 'create', '--name', 'web', '--replicas', '4', '--constraint', 'node.role==worker', c.image);
  const w1 = await c.nodeOf('w1');
  const w2 = await c.nodeOf('w2');
  const before = await running('web');
  t.is(before.length, 4);
  t.true(before.some((x) => x.nodeId === w1), 'w1 runs a task before it dies');

  // The power loss: SIGKILL to w1's swarmd first (timed here), then `local stop --kill` kills the
  // rest of the host (its containers) and cleans it up, as a reboot would, while we watch.
  const state = JSON.parse(await readFile(join(c.dir, 'cluster.json'), 'utf8')) as { hosts: { name: string; pid?: number }[] };
  const pid = state.hosts.find((h) => h.name === 'w1')?.pid;
  if (!pid) throw new Error('no pid for w1 in cluster.json');
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');
  const stopped = ok('local', 'stop', '--name', NAME, '--kill', 'w1');
  stopped.catch(() => undefined); // awaited below
  let downAt = 0;
  await until(
    'web back at 4, all on w2',
    async () => {
      if (!downAt && (await c.nodes()).find((n) => n.id === w1)?.status?.state === 'NODE_STATE_DOWN') downAt = Date.now();
      const r = await running('web');
      return r.length === 4 && r.every((x) => x.nodeId === w2);
    },
    30,
  );
  const movedAt = Date.now();
  const node = (await c.nodes()).find((n) => n.id === w1) as { status?: { state?: string; message?: string } } | undefined;
  t.is(node?.status?.state, 'NODE_STATE_DOWN');
  t.regex(node?.status?.message ?? '', /^session lost/, 'marked DOWN by the broken session, not by heartbeat expiry');
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  t.log(`after SIGKILL of w1's swarmd: w1 DOWN within ${s((downAt || movedAt) - killedAt)}, its tasks running on w2 after ${s(movedAt - killedAt)} (heartbeat expiry alone: 15 s to DOWN)`);
  // Generous, and still proves the new path: heartbeat expiry could not have done it this fast.
  t.true(movedAt - killedAt < 12_000, `tasks ran elsewhere after ${s(movedAt - killedAt)}`);
  await stopped;
  t.is((await running('web')).length, 4);
});
