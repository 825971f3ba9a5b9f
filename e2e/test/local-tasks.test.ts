// What `service ps` and `task inspect` tell about a task, on a real local cluster (one host):
// a registry that cannot be reached shows its pull error within seconds while the task is
// retried; a health-checked task shows `Running (healthy)` and its last probe output. Root,
// netns, runc; skipped while swarmd is not built (never under CI).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

clusterTest('a task whose registry cannot be reached shows the pull error in service ps within seconds and keeps being retried', async (t) => {
  const name = `pul${process.pid % 10000}`;
  const c = await startLocalCluster(t, name, '10.253.173', 1, 0);
  const created = Date.now();
  const r = await c.ctl('service', 'create', '--detach', '--name', 'bad', 'nosuchregistry.invalid/x:1');
  t.is(r.code, 0, r.stderr);
  let errAt = 0;
  let first = '';
  await c.until(
    'the pull error in service ps',
    async () => {
      const ps = await c.ok('service', 'ps', 'bad', '--no-trunc');
      const m = /"(pulling image nosuchregistry\.invalid\/x:1: [^"]+)"/.exec(ps);
      if (m) {
        errAt = Date.now();
        first = m[1]!;
      }
      return !!m;
    },
    30,
  );
  t.log(`the pull error showed ${((errAt - created) / 1000).toFixed(1)} s after create: ${first}`);
  // Still the same task, still preparing: it is retried (with back-off), not given up.
  const [task] = await c.tasks('bad');
  t.is(task?.status?.state, 'TASK_STATE_PREPARING');
  t.regex(task?.status?.message ?? '', /retrying in \d+s/);
  const inspect = await c.ok('task', 'inspect', task.id);
  t.regex(inspect, /Error:\s+pulling image nosuchregistry\.invalid\/x:1/);
  await c.until('a second attempt in the host log', async () => {
    const text = await readFile(join(c.dir, 'm1.log'), 'utf8');
    return (text.match(/task action failed; retrying/g)?.length ?? 0) >= 2;
  });
  t.is((await c.tasks('bad')).length, 1, 'retried in place: no new task');
});

clusterTest('service ps shows Running (healthy) and task inspect the health status with its last probe output', async (t) => {
  const name = `hlt${process.pid % 10000}`;
  const c = await startLocalCluster(t, name, '10.253.174', 1, 0);
  await c.ok('service', 'create', '--name', 'hc', '--health-cmd', 'echo probe-said-ok', '--health-interval', '1s', c.image);
  const ps = await c.ok('service', 'ps', 'hc');
  t.regex(ps, /hc\.1\s.*Running\s+Running \(healthy\)/);
  const [task] = await c.running('hc');
  const inspect = await c.ok('task', 'inspect', task.id);
  t.regex(inspect, /Health:\s+healthy/);
  t.regex(inspect, /Health output:\s+probe-said-ok/);
});
