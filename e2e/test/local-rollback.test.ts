// Rollback on a real local cluster (1 manager + 1 worker): an update whose new tasks fail is
// rolled back on its own with --update-failure-action rollback, and `service rollback` goes back
// to the previous spec by hand. Root, netns, runc.
import { clusterTest, RUNNING, startLocalCluster } from './helpers/local-cluster.js';

interface SvcJson {
  spec?: { task?: { container?: { env?: string[]; args?: string[] } } };
  updateStatus?: { state?: string; message?: string };
}

clusterTest('an update whose new tasks fail is rolled back on its own (--update-failure-action rollback)', async (t) => {
  const NAME = `rba${process.pid % 10000}`;
  const c = await startLocalCluster(t, NAME, '10.254.43', 1, 1);
  await c.ok('service', 'create', '--name', 'web', '--replicas', '2', '--update-failure-action', 'rollback', '--update-monitor', '10s', '--rollback-monitor', '1s', c.image);
  // The new spec's tasks exit at once: a failure within the monitor period.
  const r = await c.ctl('service', 'update', '--args', 'sh -c "exit 1"', '--timeout', '120s', 'web');
  t.not(r.code, 0, 'the update command fails');
  t.regex(r.stderr, /update rolled back due to failure or early termination of task/);
  const s = (JSON.parse(await c.ok('service', 'inspect', 'web', '--format', 'json')) as SvcJson[])[0];
  t.is(s.updateStatus?.state, 'ROLLBACK_COMPLETED');
  t.deepEqual(s.spec?.task?.container?.args ?? [], [], 'the previous spec (no args) runs again');
  const running = await c.running('web');
  t.is(running.length, 2);
});

clusterTest('service rollback returns to the previous spec and waits until the rollback completes', async (t) => {
  const NAME = `rbm${process.pid % 10000}`;
  const c = await startLocalCluster(t, NAME, '10.254.44', 1, 1);
  await c.ok('service', 'create', '--name', 'web', '--replicas', '2', '--update-monitor', '1s', '--rollback-monitor', '1s', '--rollback-parallelism', '2', c.image);
  await c.ok('service', 'update', '--env-add', 'V=2', '--timeout', '120s', 'web');
  const r = await c.ctl('service', 'rollback', '--timeout', '120s', 'web');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /verify: Service converged \(rollback completed\)\n$/);
  const s = (JSON.parse(await c.ok('service', 'inspect', 'web', '--format', 'json')) as SvcJson[])[0];
  t.is(s.updateStatus?.state, 'ROLLBACK_COMPLETED');
  t.false((s.spec?.task?.container?.env ?? []).includes('V=2'), 'V=2 is gone');
  const tasks = (await c.tasks('web')).filter((x) => x.desiredState === RUNNING && x.status?.state === RUNNING);
  t.is(tasks.length, 2);
  t.true(tasks.every((x) => !(x.spec?.container?.env ?? []).includes('V=2')));
  const again = await c.ctl('service', 'rollback', 'web');
  t.is(again.code, 0, 'a second rollback goes back to the spec with V=2 (Docker swaps the two specs)');
});
