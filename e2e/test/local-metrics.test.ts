// Prometheus metrics on a real local cluster (1 manager, 1 worker): every host serves
// http://ADDR:9323/metrics; the text passes Debian's `promtool check metrics` and holds the
// cluster's series with values that match what swarmctl shows. Root, netns, runc; promtool comes
// from Debian's prometheus package, which scripts/setup.sh installs.
import { spawn } from 'node:child_process';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

const NAME = `met${process.pid % 10000}`;
const NET = '10.253.171';

/** `promtool check metrics` on `text`: its exit code and what it said. */
function promtool(text: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code: code ?? -1, out }));
    p.stdin.end(text);
  });
}

/** The samples of `name` whose labels include `labels`: their values. */
function samples(text: string, name: string, labels: Record<string, string> = {}): number[] {
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) out.push(Number(m[4]));
  }
  return out;
}

clusterTest('every host of a local cluster serves Prometheus metrics on port 9323 that promtool accepts, with the cluster in them', async (t) => {
  const c = await startLocalCluster(t, NAME, NET, 1, 1);
  await c.ok('service', 'create', '--name', 'web', '--replicas', '3', c.image);
  const nodes = await c.nodes();
  t.is(nodes.length, 2);
  const addrOf = (host: string) => (host === 'm1' ? `${NET}.2` : `${NET}.3`);
  const scrape = async (host: string) => {
    const r = await fetch(`http://${addrOf(host)}:9323/metrics`);
    t.is(r.status, 200, `${host}: GET /metrics`);
    t.regex(r.headers.get('content-type') ?? '', /^text\/plain/);
    return r.text();
  };

  // the manager: the cluster as the store has it, Raft, the scheduler, the dispatcher
  let m1 = '';
  await c.until('3 running tasks in the manager metrics', async () => {
    m1 = await scrape('m1');
    return samples(m1, 'swarmd_tasks', { state: 'running' })[0] === 3;
  });
  const check = await promtool(m1);
  t.is(check.code, 0, `promtool check metrics (m1): ${check.out}`);
  t.deepEqual(samples(m1, 'swarmd_nodes', { state: 'ready' }), [2]);
  t.deepEqual(samples(m1, 'swarmd_nodes', { state: 'down' }), [0]);
  t.deepEqual(samples(m1, 'swarmd_services'), [1]);
  t.deepEqual(samples(m1, 'swarmd_manager_leader'), [1]);
  t.true(samples(m1, 'swarmd_raft_term')[0] >= 1);
  const commit = samples(m1, 'swarmd_raft_commit_index')[0];
  t.true(commit > 0 && samples(m1, 'swarmd_raft_applied_index')[0] <= commit);
  t.true(samples(m1, 'swarmd_raft_proposal_duration_seconds_count', { result: 'ok' })[0] > 0);
  t.true(samples(m1, 'swarmd_store_transaction_duration_seconds_count', { result: 'ok' })[0] > 0);
  t.true(samples(m1, 'swarmd_scheduler_decisions_total', { result: 'assigned' })[0] >= 3);
  t.true(samples(m1, 'swarmd_scheduler_delay_seconds_count')[0] >= 3);
  t.deepEqual(samples(m1, 'swarmd_dispatcher_sessions'), [2], 'both agents hold a session with the leader');
  t.true(samples(m1, 'swarmd_dispatcher_heartbeats_total')[0] > 0);
  t.true(samples(m1, 'swarmd_dispatcher_heartbeat_gap_periods_count')[0] > 0, 'heartbeat gaps observed');

  // the worker: no cluster gauges (it holds no store), its own tasks and their cgroups
  const w1 = await scrape('w1');
  t.is((await promtool(w1)).code, 0, 'promtool check metrics (w1)');
  t.deepEqual(samples(w1, 'swarmd_manager_leader'), [0], 'a worker is no leader');
  t.deepEqual(samples(w1, 'swarmd_tasks'), []);
  const running = (await c.running('web')).filter((x) => x.nodeId === nodes.find((n) => n.description?.hostname === `${NAME}-w1`)?.id);
  t.deepEqual(samples(w1, 'swarmd_node_tasks_running'), [running.length]);
  for (const task of running) {
    const labels = { service: 'web', task: task.id, node: `${NAME}-w1` };
    const mem = samples(w1, 'swarmd_task_memory_usage_bytes', labels);
    t.is(mem.length, 1, `memory of task ${task.id}`);
    t.true(mem[0] > 0 && mem[0] < 1024 ** 3, `memory of task ${task.id}: ${mem[0]} bytes`);
    const cpu = samples(w1, 'swarmd_task_cpu_seconds_total', labels);
    t.is(cpu.length, 1);
    t.true(cpu[0] >= 0 && cpu[0] < 3600);
  }
  t.is(samples(w1, 'swarmd_container_starts_total', { result: 'ok' })[0], running.length);
  t.true(samples(w1, 'swarmd_container_start_duration_seconds_count')[0] >= running.length);
  const pulls = samples(w1, 'swarmd_image_pulls_total', { result: 'ok' })[0];
  t.true(pulls >= 1 && pulls <= running.length, `the image pulled for the node's tasks (${pulls})`);
  t.true(samples(w1, 'swarmd_process_resident_memory_bytes')[0] > 0);
});
