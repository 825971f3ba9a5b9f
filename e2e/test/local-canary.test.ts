// Canary rollouts on a real local cluster: exact traffic weights through a service's VIP and its
// published port, promote and abort under load, gates that abort on their own (a failing health
// check, an HTTP check answering 500), and a rollout that survives kill -9 of the leader.
// Root, netns, runc. Containers are entered with nsenter (their own busybox).
import * as http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { pidsOf } from './helpers/containers.js';
import { clusterTest, RUNNING, startLocalCluster, type LocalCluster, type TaskJson } from './helpers/local-cluster.js';

interface SvcJson {
  specVersion?: string;
  spec?: { task?: { container?: { env?: string[] } } };
  updateStatus?: { state?: string; message?: string };
  rollout?: { state?: string; step?: number; weight?: number; message?: string; replicas?: string };
}
type CanaryTask = TaskJson & { canary?: { path?: string } };

/**
 * A web server answering `/` with `version $V on HOSTNAME` on port 8080, and /cgi-bin/healthz
 * with 200, or 500 when HEALTH=500. `mark` finds its processes.
 */
const web = (mark: string): string[] => [
  '--',
  'sh',
  '-c',
  [
    `: ${mark}`,
    'mkdir -p /www/cgi-bin',
    'f=/www/cgi-bin/healthz',
    `echo '#!/bin/sh' > $f`,
    `echo 'if [ "$HEALTH" = 500 ]; then printf "HTTP/1.0 500 Internal Server Error\\r\\n\\r\\nbroken\\n"; else printf "HTTP/1.0 200 OK\\r\\n\\r\\nok\\n"; fi' >> $f`,
    'chmod +x $f',
    'echo "version $V on $(hostname)" > /www/index.html',
    "httpd -f -p 8080 -h /www & pid=$!; trap 'kill $pid; exit 0' TERM INT; wait $pid",
  ].join('; '),
];

async function inContainer(pid: number, script: string, timeoutMs = 120_000): Promise<string> {
  return (await run('nsenter', ['-t', String(pid), '-m', '-n', '--', '/bin/sh', '-c', script], { timeoutMs })).stdout;
}

/** `n` requests to `url` from the test (a new connection each, `parallel` at a time): answers by version, and failures. */
async function meshCounts(url: string, n: number, parallel = 16): Promise<{ v: Map<string, number>; failed: number; errors: string[] }> {
  const v = new Map<string, number>();
  let failed = 0;
  const errors: string[] = [];
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get(url, { agent: false, timeout: 5_000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => {
          const m = /^version (\S*) on/.exec(body);
          if (res.statusCode === 200 && m) v.set(m[1], (v.get(m[1]) ?? 0) + 1);
          else {
            failed++;
            if (errors.length < 10) errors.push(`HTTP ${res.statusCode}: ${body.slice(0, 60)}`);
          }
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => {
        failed++;
        if (errors.length < 10) errors.push(e.message);
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        next++;
        await one();
      }
    }),
  );
  return { v, failed, errors };
}

/**
 * `n` requests to VIP:8080 from inside a container (8 loops of busybox nc, one process per
 * request, the answers counted at the end): answers by version, and failures.
 */
async function vipCounts(pid: number, vip: string, n: number): Promise<{ v: Map<string, number>; failed: number }> {
  const per = Math.ceil(n / 8);
  const loop = (i: number) => `(j=0; while [ $j -lt ${per} ]; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${vip} 8080 || echo failed; j=$((j+1)); done) > /tmp/r${i} 2>&1 &`;
  const loops = Array.from({ length: 8 }, (_, i) => loop(i)).join(' ');
  const outText = await inContainer(pid, `${loops} wait; cat /tmp/r? | sed -n 's/^version \\([^ ]*\\) on.*/\\1/p; /^failed$/p'`, 300_000);
  const v = new Map<string, number>();
  let failed = 0;
  for (const l of outText.split('\n').filter(Boolean)) {
    if (l === 'failed') failed++;
    else v.set(l, (v.get(l) ?? 0) + 1);
  }
  const answered = [...v.values()].reduce((a, b) => a + b, 0);
  // A request that got no answer line at all (a connection cut) is a failure too.
  return { v, failed: Math.max(failed, per * 8 - answered) };
}

const share = (r: { v: Map<string, number> }, version: string): number => {
  const total = [...r.v.values()].reduce((a, b) => a + b, 0);
  return total ? (100 * (r.v.get(version) ?? 0)) / total : 0;
};

const inspect = async (c: LocalCluster, svc: string): Promise<SvcJson> => (JSON.parse(await c.ok('service', 'inspect', svc, '--format', 'json')) as SvcJson[])[0];
const canaries = async (c: LocalCluster, svc: string): Promise<CanaryTask[]> => ((await c.tasks(svc)) as CanaryTask[]).filter((x) => x.canary);

clusterTest('canary weights: at 20% the new version answers 20 ± 5 % of 2,000 requests through the VIP and through a published port; promoted to 50%, 50 ± 5 %', async (t) => {
  t.timeout(600_000);
  const NAME = `cnw${process.pid % 10000}`;
  const NET = '10.254.51';
  const c = await startLocalCluster(t, NAME, NET, 1, 2);
  await c.ok('network', 'create', 'front');
  await c.ok('service', 'create', '--name', 'web', '--replicas', '4', '--network', 'front', '--publish', '9000:8080', '--env', 'V=1', c.image, ...web(`${NAME}-web`));
  await c.ok('service', 'create', '--name', 'client', '--network', 'front', c.image, ...web(`${NAME}-client`));
  const r = await c.ctl('service', 'update', '--env-add', 'V=2', '--canary-steps', '20,50,100', '--timeout', '120s', 'web');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /canary: waiting at step 1 of 3 at 20%/);
  const s = await inspect(c, 'web');
  t.is(s.rollout?.state, 'WAITING');
  t.is(s.rollout?.weight, 20);
  const cs = (await canaries(c, 'web')).filter((x) => x.desiredState === RUNNING);
  t.is(cs.length, 1, 'one canary beside 4 old tasks (the fewest whose share is 20%)');
  t.is((await c.running('web')).length, 5);

  const url = `http://${NET}.3:9000/`;
  const [client] = await pidsOf(`${NAME}-client`);
  const vip = (await inContainer(client, `nslookup web 2>/dev/null | sed -n 's/^Address[^:]*: *\\([0-9.]*\\).*/\\1/p' | tail -1`)).trim();
  t.regex(vip, /^\d+\.\d+\.\d+\.\d+$/);

  const m20 = await meshCounts(url, 2000);
  const v20 = await vipCounts(client, vip, 2000);
  t.log(`20%: mesh ${share(m20, '2').toFixed(1)}% new (${m20.failed} failed), VIP ${share(v20, '2').toFixed(1)}% new (${v20.failed} failed)`);
  t.is(m20.failed, 0, m20.errors.join('; '));
  t.is(v20.failed, 0);
  t.true(Math.abs(share(m20, '2') - 20) <= 5, `mesh: ${share(m20, '2')}%`);
  t.true(Math.abs(share(v20, '2') - 20) <= 5, `VIP: ${share(v20, '2')}%`);

  const p = await c.ctl('service', 'promote', '--timeout', '120s', 'web');
  t.is(p.code, 0, p.stderr);
  t.is((await inspect(c, 'web')).rollout?.weight, 50);
  const m50 = await meshCounts(url, 2000);
  const v50 = await vipCounts(client, vip, 2000);
  t.log(`50%: mesh ${share(m50, '2').toFixed(1)}% new (${m50.failed} failed), VIP ${share(v50, '2').toFixed(1)}% new (${v50.failed} failed)`);
  t.is(m50.failed, 0, m50.errors.join('; '));
  t.is(v50.failed, 0);
  t.true(Math.abs(share(m50, '2') - 50) <= 5, `mesh: ${share(m50, '2')}%`);
  t.true(Math.abs(share(v50, '2') - 50) <= 5, `VIP: ${share(v50, '2')}%`);
});

clusterTest('canary abort under load: new connections all go to the old version within 2 s, no request fails, the canary is removed', async (t) => {
  const NAME = `cna${process.pid % 10000}`;
  const NET = '10.254.52';
  const c = await startLocalCluster(t, NAME, NET, 1, 2);
  await c.ok('service', 'create', '--name', 'web', '--replicas', '4', '--publish', '9000:8080', '--env', 'V=1', c.image, ...web(`${NAME}-web`));
  const old = (await c.running('web')).map((x) => x.id).sort();
  await c.ok('service', 'update', '--env-add', 'V=2', '--canary-weight', '50', '--canary-replicas', '2', '--timeout', '120s', 'web');
  const url = `http://${NET}.3:9000/`;
  const before = await meshCounts(url, 400);
  t.true(share(before, '2') > 30, `the canaries answer before the abort (${share(before, '2')}%)`);
  // Steady load while aborting; then, 2 s after the abort returned, only the old version answers.
  let stop = false;
  const bg = (async () => {
    const all = { v: new Map<string, number>(), failed: 0, errors: [] as string[] };
    while (!stop) {
      const r = await meshCounts(url, 40, 4);
      all.failed += r.failed;
      all.errors.push(...r.errors);
      for (const [k, n] of r.v) all.v.set(k, (all.v.get(k) ?? 0) + n);
    }
    return all;
  })();
  await sleep(1000);
  const a = await c.ctl('service', 'abort', '--detach', 'web');
  t.is(a.code, 0, a.stderr);
  await sleep(2000);
  const after = await meshCounts(url, 400);
  stop = true;
  const load = await bg;
  t.log(`during the abort: ${[...load.v.values()].reduce((x, y) => x + y, 0)} answered, ${load.failed} failed; 2 s after: ${share(after, '2')}% new of 400`);
  t.is(load.failed, 0, load.errors.join('; '));
  t.is(after.failed, 0, after.errors.join('; '));
  t.is(share(after, '2'), 0, 'no new connection reaches a canary 2 s after the abort');
  const s = await inspect(c, 'web');
  t.is(s.rollout?.state, 'ABORTED');
  t.false((s.spec?.task?.container?.env ?? []).includes('V=2'), 'the old spec is back');
  await c.until('the canaries are gone', async () => (await canaries(c, 'web')).every((x) => x.desiredState !== RUNNING && x.status?.state !== RUNNING), 30);
  t.deepEqual((await c.running('web')).map((x) => x.id).sort(), old, 'the old tasks never stopped');
});

for (const gate of ['health', 'http'] as const) {
  const what = gate === 'health' ? 'whose health check fails' : 'whose HTTP check answers 500';
  clusterTest(`a canary ${what} is aborted on its own, saying why; the old tasks never stop`, async (t) => {
    const NAME = `cn${gate === 'health' ? 'h' : 'x'}${process.pid % 10000}`;
    const NET = gate === 'health' ? '10.254.53' : '10.254.54';
    const c = await startLocalCluster(t, NAME, NET, 1, 1);
    await c.ok('service', 'create', '--name', 'web', '--replicas', '2', '--publish', '9000:8080', '--env', 'V=1', c.image, ...web(`${NAME}-web`));
    const old = (await c.running('web')).map((x) => x.id).sort();
    const args =
      gate === 'health'
        ? ['--health-cmd', 'false', '--health-interval', '500ms', '--health-retries', '2', '--canary-weight', '20']
        : ['--env-add', 'HEALTH=500', '--canary-steps', '20,100', '--canary-interval', '30s', '--canary-check-path', '/cgi-bin/healthz'];
    const r = await c.ctl('service', 'update', '--env-add', 'V=2', ...args, '--timeout', '120s', 'web');
    t.not(r.code, 0, 'the update command fails');
    t.regex(r.stderr, gate === 'health' ? /canary rollout aborted: gate failed at step 1 \(20%\): canary task \S+ .*(unhealthy|ended)/ : /canary rollout aborted: gate failed at step 1 \(20%\): HTTP check GET \/cgi-bin\/healthz .*HTTP 500/);
    const s = await inspect(c, 'web');
    t.is(s.rollout?.state, 'ABORTED');
    t.false((s.spec?.task?.container?.env ?? []).includes('V=2'), 'the old spec is back');
    await c.until('the canary is gone', async () => (await canaries(c, 'web')).every((x) => x.status?.state !== RUNNING), 30);
    t.deepEqual((await c.running('web')).map((x) => x.id).sort(), old, 'the old tasks never stopped');
  });
}

clusterTest('kill -9 of the leader during a manual rollout: the new leader keeps the weight and waits at the same step; promote continues it', async (t) => {
  const NAME = `cnl${process.pid % 10000}`;
  const NET = '10.254.55';
  const c = await startLocalCluster(t, NAME, NET, 3, 1);
  await c.ok('service', 'create', '--name', 'web', '--replicas', '2', '--publish', '9000:8080', '--constraint', 'node.role==worker', '--env', 'V=1', c.image, ...web(`${NAME}-web`));
  await c.ok('service', 'update', '--env-add', 'V=2', '--canary-steps', '25,60,100', '--timeout', '120s', 'web');
  const before = await inspect(c, 'web');
  t.is(before.rollout?.state, 'WAITING');
  const leader = (await c.nodes()).find((n) => n.managerStatus?.leader);
  const leaderHost = leader?.description?.hostname?.slice(NAME.length + 1) ?? '';
  t.regex(leaderHost, /^m\d$/);
  await c.ok('local', 'stop', '--name', NAME, '--kill', leaderHost);
  await c.until('a new leader', async () => (await c.nodes()).some((n) => n.managerStatus?.leader && n.id !== leader?.id), 60);
  // It stays at step 1, 25%, with its one canary (no second one, no step on its own).
  await sleep(3000);
  const after = await inspect(c, 'web');
  t.is(after.rollout?.state, 'WAITING');
  t.is(after.rollout?.step ?? 0, 0);
  t.is(after.rollout?.weight, 25);
  t.is((await canaries(c, 'web')).filter((x) => x.desiredState === RUNNING).length, 1);
  const url = `http://${NET}.5:9000/`;
  const w = await meshCounts(url, 1000);
  t.true(Math.abs(share(w, '2') - 25) <= 6, `the weight holds after the failover (${share(w, '2')}%)`);
  const p = await c.ctl('service', 'promote', '--timeout', '120s', 'web');
  t.is(p.code, 0, p.stderr);
  t.is((await inspect(c, 'web')).rollout?.weight, 60);
  const all = await c.ctl('service', 'promote', '--all', '--timeout', '180s', 'web');
  t.is(all.code, 0, all.stderr);
  t.regex(all.stderr, /canary rollout completed/);
  const done = await inspect(c, 'web');
  t.is(done.rollout?.state, 'COMPLETED');
  const runningNow = await c.running('web');
  t.is(runningNow.length, 2);
  t.true(runningNow.every((x) => (x.spec?.container?.env ?? []).includes('V=2')), 'every task runs the new spec');
});
