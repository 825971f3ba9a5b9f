// Docker interop (issue 15): images that Docker itself builds from real Dockerfiles (through
// testcontainers, on a private dockerd that leaves the host's firewall alone), pushed to a local
// cluster's registry and run by swarmd (1 manager) as Docker runs them. Each test compares the
// process swarmd starts with the one Docker starts from the same image (argv, environment, cwd,
// uid/gid/groups, files), seen from the host in /proc, and the HEALTHCHECK written in the
// Dockerfile gates RUNNING and replaces an unhealthy task as in Docker's swarm mode. One
// cluster and one dockerd for the file. Root; needs dockerd (apt-get install docker.io): never
// skipped under CI.
import { lstat, readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { run } from '@swarmd/common';
import { firewallRules } from '@swarmd/testkit';
import { BASE_IMAGE, sharedDockerd, viewProcess, type DockerSide, type ProcessView } from './helpers/docker.js';
import { clusterTestWith, RUNNING, sharedLocalCluster, type LocalCluster, type TaskJson } from './helpers/local-cluster.js';

const NAME = `dki${process.pid % 10000}`;
const NET = '10.252.110';
const dockerTest = clusterTestWith('dockerd');
const cluster = sharedLocalCluster(NAME, NET, 1, 0);
const dockerd = sharedDockerd({ registry: `${NET}.1:5000`, bridge: { name: `${NAME}dk0`, cidr: '10.252.119.1/24' }, cgroupParent: `/swarmd-e2e-${NAME}` });
/** `-P FORWARD ...`: the policy a default dockerd turns to DROP. */
const forwardPolicy = async () => (await firewallRules()).get('filter')?.find((l) => l.startsWith('-P FORWARD'));
const forwardBefore = forwardPolicy();

/** Creates `svc` (swarmctl waits until it runs), removed at the test's end; the host pid of its one task. */
async function runService(t: ExecutionContext, c: LocalCluster, svc: string, args: string[]): Promise<number> {
  t.teardown(() => c.ctl('service', 'rm', svc));
  await c.ok('service', 'create', '--name', svc, ...args);
  const [task] = await c.running(svc);
  const pid = task?.status?.container?.pid;
  if (!pid) throw new Error(`service ${svc}: no running task with a pid: ${JSON.stringify(task?.status)}`);
  return pid;
}

/** The cluster, the dockerd, and the image Docker built from the Dockerfile `lines` and pushed to the cluster's registry as interop/NAME:1. */
async function built(t: ExecutionContext, name: string, lines: string[]): Promise<{ c: LocalCluster; d: DockerSide; image: string }> {
  const [c, d] = await Promise.all([cluster(t), dockerd(t)]);
  return { c, d, image: await d.buildAndPush(name, lines.join('\n')) };
}

/** What must be the same under Docker and swarmd: all but HOSTNAME (Docker's is its container id, ours the task's). */
function comparable(p: ProcessView): ProcessView {
  const { HOSTNAME: _hostname, ...env } = p.env;
  return { ...p, env };
}

/** ENV, WORKDIR and USER (a name the Dockerfile adds to /etc/passwd), and a HEALTHCHECK that passes only with all three. */
const PROCESS_IMAGE = [
  `FROM ${BASE_IMAGE}`,
  // busybox-static has no adduser: the user as Dockerfiles without one write it (a member of daemon too)
  "RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'crew:x:2345:' >> /etc/group && sed -i 's/^daemon:x:1:$/daemon:x:1:app/' /etc/group && mkdir -p /home/app",
  'ENV GREETING="hello world" BASE=/opt',
  'ENV TOOLS=$BASE/tools',
  'WORKDIR /srv/app',
  'USER app',
  'EXPOSE 8080/tcp',
  // one failure is unhealthy
  'HEALTHCHECK --interval=1s --timeout=3s --retries=1 CMD test "$(id -u)" = 1234 && test "$PWD" = /srv/app && test "$GREETING" = "hello world"',
  'CMD ["sleep", "1001"]',
];

dockerTest('an image built by docker runs under swarmd with its ENV, WORKDIR and USER (a name in its /etc/passwd) exactly as docker runs it', async (t) => {
  const { c, d, image } = await built(t, 'process', PROCESS_IMAGE);
  const ours = await viewProcess(await runService(t, c, 'proc', [image]));
  const docker = await viewProcess((await d.run(t, image)).pid);
  t.is(ours.env.GREETING, 'hello world');
  t.is(ours.env.TOOLS, '/opt/tools', 'ENV expanded at build time');
  t.is(ours.env.HOME, '/home/app', "HOME from the user's passwd entry");
  t.is(ours.cwd, '/srv/app');
  t.is(ours.uid, '1234 1234 1234 1234');
  t.is(ours.gid, '2345 2345 2345 2345');
  t.deepEqual(ours.argv, ['sleep', '1001']);
  t.deepEqual(comparable(ours), comparable(docker));
});

dockerTest('ENTRYPOINT and CMD combine as in docker: service args replace only CMD, --entrypoint replaces ENTRYPOINT and drops CMD', async (t) => {
  const { c, d, image } = await built(t, 'entry', [`FROM ${BASE_IMAGE}`, 'ENTRYPOINT ["sleep"]', 'CMD ["1002"]']);
  const argv = async (pid: number) => (await viewProcess(pid)).argv;

  const plain = await argv(await runService(t, c, 'entry-plain', [image]));
  t.deepEqual(plain, ['sleep', '1002']);
  t.deepEqual(plain, await argv((await d.run(t, image)).pid));

  const args = await argv(await runService(t, c, 'entry-args', [image, '1003']));
  t.deepEqual(args, ['sleep', '1003']);
  t.deepEqual(args, await argv((await d.run(t, image, { cmd: ['1003'] })).pid));

  const entry = await argv(await runService(t, c, 'entry-ep', ['--entrypoint', 'sleep 1004', image]));
  t.deepEqual(entry, ['sleep', '1004'], 'the image CMD is dropped');
  t.deepEqual(entry, await argv((await d.run(t, image, { entrypoint: ['sleep', '1004'] })).pid));
});

dockerTest("a multi-stage build's image runs with only the final stage's files, and files removed in a later layer are gone", async (t) => {
  const { c, d, image } = await built(t, 'stages', [
    `FROM ${BASE_IMAGE} AS build`,
    'RUN mkdir -p /out && echo made-in-stage-one > /out/artifact && echo stage-one-only > /stage-one-only',
    `FROM ${BASE_IMAGE}`,
    'COPY --from=build /out/artifact /app/artifact',
    'RUN echo short-lived > /app/gone && mkdir /data && echo old > /data/old',
    // a whiteout file for each, and an opaque directory for /data (its old content hidden)
    'RUN rm /app/gone /bin/vi && rm -rf /data && mkdir /data && echo new > /data/new',
    'CMD ["sleep", "1005"]',
  ]);
  const files = async (pid: number) => {
    const root = `/proc/${pid}/root`;
    const has = (p: string) => lstat(root + p).then(() => true, () => false);
    return {
      artifact: await readFile(`${root}/app/artifact`, 'utf8').catch(() => 'missing'),
      stageOneOnly: await has('/stage-one-only'),
      gone: await has('/app/gone'),
      vi: await has('/bin/vi'),
      sh: await has('/bin/sh'),
      data: (await readdir(`${root}/data`).catch(() => ['missing'])).sort(),
    };
  };
  // The last layer as Docker pushed it holds the whiteouts this test is about.
  const repo = `http://${NET}.1:5000/v2/interop/stages`;
  const manifest = (await (await fetch(`${repo}/manifests/1`, { headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' } })).json()) as { layers: { digest: string }[] };
  const top = Buffer.from(await (await fetch(`${repo}/blobs/${manifest.layers[manifest.layers.length - 1].digest}`)).arrayBuffer());
  const entries = (await run('tar', ['-tz'], { input: top })).stdout.split('\n');
  t.true(['app/.wh.gone', 'bin/.wh.vi', 'data/.wh..wh..opq'].every((e) => entries.includes(e)), entries.join(' '));
  const ours = await files(await runService(t, c, 'stages', [image]));
  t.deepEqual(ours, { artifact: 'made-in-stage-one\n', stageOneOnly: false, gone: false, vi: false, sh: true, data: ['new'] });
  t.deepEqual(ours, await files((await d.run(t, image)).pid));
});

/** An image whose HEALTHCHECK passes while /tmp/healthy exists; its argument (a sh script) decides when that is. */
async function healthImage(t: ExecutionContext): Promise<{ c: LocalCluster; image: string }> {
  return built(t, 'health', [
    `FROM ${BASE_IMAGE}`,
    'HEALTHCHECK --interval=1s --timeout=3s --start-period=60s --retries=2 CMD test -f /tmp/healthy',
    'ENTRYPOINT ["sh", "-c"]',
    'CMD ["touch /tmp/healthy; exec sleep 1006"]',
  ]);
}

/** Polls the service's tasks every 200 ms until `done`; every state seen, with its time. */
async function watchTasks(c: LocalCluster, svc: string, done: (tasks: TaskJson[]) => boolean, seconds: number): Promise<{ at: number; tasks: TaskJson[] }[]> {
  const seen: { at: number; tasks: TaskJson[] }[] = [];
  await c.until(
    `service ${svc}`,
    async () => {
      const tasks = await c.tasks(svc);
      seen.push({ at: Date.now(), tasks });
      return done(tasks);
    },
    seconds,
  );
  return seen;
}

dockerTest("the image's HEALTHCHECK keeps a task STARTING until its first passing probe, then RUNNING (healthy)", async (t) => {
  const { c, image } = await healthImage(t);
  t.teardown(() => c.ctl('service', 'rm', 'gate'));
  await c.ok('service', 'create', '--detach', '--name', 'gate', image, 'sleep 4; touch /tmp/healthy; exec sleep 1006');
  const seen = await watchTasks(c, 'gate', (ts) => ts.some((x) => x.status?.state === RUNNING), 60);
  const states = seen.map((s) => s.tasks[0]?.status);
  const starting = seen.find((s) => s.tasks[0]?.status?.state === 'TASK_STATE_STARTING');
  const running = seen[seen.length - 1];
  t.truthy(starting, `seen: ${[...new Set(states.map((s) => s?.state))].join(', ')}`);
  t.true(running.at - starting!.at >= 3000, `STARTING for ${running.at - starting!.at} ms, while the probe could not pass (4 s)`);
  t.is(running.tasks[0]?.status?.container?.health, 'HEALTH_STATE_HEALTHY');
  t.is(running.tasks.length, 1, 'the same task, not a replacement');
});

dockerTest("a task whose image HEALTHCHECK turns unhealthy fails ('unhealthy container') and a new task replaces it", async (t) => {
  const { c, image } = await healthImage(t);
  t.teardown(() => c.ctl('service', 'rm', 'sick'));
  // healthy at once, unhealthy 6 s later (2 failing probes 1 s apart); restarted after 1 s
  await c.ok('service', 'create', '--detach', '--name', 'sick', '--restart-delay', '1s', image, 'touch /tmp/healthy; sleep 6; rm /tmp/healthy; exec sleep 1007');
  let firstId = '';
  const seen = await watchTasks(
    c,
    'sick',
    (ts) => {
      firstId ||= ts[0]?.id ?? '';
      return ts.some((x) => x.id !== firstId && x.status?.state === RUNNING);
    },
    90,
  );
  const first = (s: { tasks: TaskJson[] }) => s.tasks.find((x) => x.id === firstId);
  t.true(
    seen.some((s) => first(s)?.status?.state === RUNNING && first(s)?.status?.container?.health === 'HEALTH_STATE_HEALTHY'),
    'the first task ran healthy before',
  );
  const last = seen[seen.length - 1];
  t.is(first(last)?.status?.state, 'TASK_STATE_FAILED');
  t.regex(first(last)?.status?.err ?? '', /unhealthy container/);
  const next = last.tasks.find((x) => x.id !== firstId);
  t.is(next?.slot, first(last)?.slot, 'the replacement takes the same slot');
});

dockerTest("service create --no-healthcheck runs an image whose HEALTHCHECK never passes as a plain task (RUNNING, no health)", async (t) => {
  const { c, image } = await healthImage(t);
  t.teardown(() => c.ctl('service', 'rm', 'nohc'));
  await c.ok('service', 'create', '--name', 'nohc', '--no-healthcheck', image, 'exec sleep 1008');
  const [task] = await c.running('nohc');
  t.is(task?.status?.container?.health ?? 'HEALTH_STATE_NONE', 'HEALTH_STATE_NONE');
});

dockerTest("the image's HEALTHCHECK probe runs as in docker: as the image's USER, in its WORKDIR, with its ENV", async (t) => {
  const { c, d, image } = await built(t, 'process', PROCESS_IMAGE);
  await runService(t, c, 'probe', [image]);
  const [task] = await c.running('probe');
  t.is(task?.status?.container?.health, 'HEALTH_STATE_HEALTHY');
  t.is((await c.tasks('probe')).length, 1, 'no task failed its probe');
  // and the Dockerfile means that to Docker too
  const { id } = await d.run(t, image);
  let health = '';
  for (let i = 0; i < 40 && health !== 'healthy' && health !== 'unhealthy'; i++) {
    health = (await d.docker.getContainer(id).inspect()).State.Health?.Status ?? '';
    await sleep(250);
  }
  t.is(health, 'healthy', "docker's own container");
});

dockerTest("the private dockerd leaves the host's firewall as it was: no DOCKER chain, no rule for its bridge, FORWARD policy unchanged", async (t) => {
  const d = await dockerd(t);
  t.deepEqual(await d.stop(), [], 'iptables -S (filter, nat): what dockerd changed');
  t.is(await forwardPolicy(), await forwardBefore, 'iptables -S FORWARD: the policy line');
});
