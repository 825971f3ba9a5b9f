// `swarmctl events` on a real local cluster (3 managers): live events, filters, and the history
// `--since` replays, which every manager keeps, so it is still there after the leader is killed.
// Root, netns, runc; skipped while swarmd is not built (never under CI).
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

interface EventJson {
  time: string;
  timeMs: number;
  type: string;
  action: string;
  id: string;
  name: string;
  attributes: Record<string, string>;
}

const parse = (stdout: string): EventJson[] =>
  stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as EventJson);

clusterTest('events: live and filtered, and --since replays the history after the leader is killed', async (t) => {
  const name = `evt${process.pid % 10000}`;
  const c = await startLocalCluster(t, name, '10.253.172', 3, 0);
  await c.ok('cluster', 'update', '--dispatcher-heartbeat', '1s');
  const t0 = Date.now();

  // live: a stream opened before the changes sees them, filtered to services
  const live = c.ctl('events', '--filter', 'type=service', '--until', new Date(Date.now() + 12_000).toISOString(), '--format', 'json');
  await c.ok('network', 'create', 'evnet');
  await c.ok('service', 'create', '--name', 'web', '--replicas', '2', c.image);
  const lr = await live;
  t.is(lr.code, 0, lr.stderr);
  const liveEvents = parse(lr.stdout);
  t.true(liveEvents.length > 0);
  t.true(liveEvents.every((e) => e.type === 'service'), 'type=service only');
  t.true(liveEvents.some((e) => e.action === 'create' && e.name === 'web' && e.attributes.image?.includes('demo/web')), 'service create, live');

  // the leader (m1, which made the cluster) is killed: the others keep the same history
  const leader = (await c.nodes()).find((n) => n.managerStatus?.leader);
  t.is(leader?.description?.hostname, `${name}-m1`);
  await c.ok('local', 'stop', '--name', name, '--kill', 'm1');
  await c.until('m1 down', async () => (await c.byHost('m1'))?.status?.state === 'NODE_STATE_DOWN', 60);

  const r = await c.ctl('events', '--since', String(t0 / 1000), '--until', new Date().toISOString(), '--format', 'json');
  t.is(r.code, 0, r.stderr);
  const all = parse(r.stdout);
  t.true(all.every((e) => e.timeMs >= t0 - 1000), 'nothing before --since');
  t.true(all.some((e) => e.type === 'network' && e.action === 'create' && e.name === 'evnet'), 'network create');
  t.true(all.some((e) => e.type === 'service' && e.action === 'create' && e.name === 'web'), 'service create');
  const running = all.filter((e) => e.type === 'task' && e.action === 'state' && e.attributes['state.new'] === 'running' && e.attributes.service === 'web');
  t.is(new Set(running.map((e) => e.name)).size, 2, 'web.1 and web.2 reached running');
  t.true(running.every((e) => e.attributes.node?.startsWith(`${name}-m`)), 'task events name their node');
  t.true(
    all.some((e) => e.type === 'node' && e.action === 'state' && e.name === `${name}-m1` && e.attributes['state.new'] === 'down'),
    'the killed node went down',
  );

  // filters combine: one name, one action; human-readable lines name the object
  const f = await c.ctl('events', '--since', String(t0 / 1000), '--until', new Date().toISOString(), '--filter', 'name=web', '--filter', 'event=create');
  t.is(f.code, 0, f.stderr);
  const lines = f.stdout.trim().split('\n');
  t.true(lines.length >= 1);
  t.true(lines.every((l) => / (service|task) create \S+ \(name=web/.test(l)), f.stdout);

  // bad input is refused, naming what is wrong
  const bad = await c.ctl('events', '--filter', 'type=volume', '--until', new Date().toISOString());
  t.is(bad.code, 1);
  t.regex(bad.stderr, /unknown type "volume"/);
});
