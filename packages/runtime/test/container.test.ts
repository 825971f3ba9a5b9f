import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isSwarmError, run } from '@swarmd/common';
import { createHosts, requires } from '@swarmd/testkit';
import { mountsUnder, processInCgroup } from '../src/index.js';
import { alive, loggingRunc, logLines, newRuntime, waitForLog, type RuncCall } from './container-helpers.js';

const rootTest = requires('root', 'runc', 'conmon', 'busybox');

rootTest('runs a container with the image config overridden by env, args, workdir and user', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const image = { ...busybox, config: { ...busybox.config, Env: ['PATH=/bin', 'FROM_IMAGE=img', 'OVERRIDE=img'], WorkingDir: '/etc' } };
  await svc.create('c1', {
    image,
    spec: {
      command: ['sh', '-c'],
      args: ['echo "uid=$(id -u) gid=$(id -g) pwd=$(pwd) a=$FROM_IMAGE b=$OVERRIDE c=$SPEC host=$(hostname) home=$HOME"; echo oops >&2; exit 7'],
      env: ['OVERRIDE=spec', 'SPEC=yes'],
      dir: '/tmp',
      user: 'nobody',
      hostname: 'web-1',
    },
  });
  t.is((await svc.inspect('c1')).status, 'created');
  const pid = await svc.start('c1');
  t.true(pid > 0);
  const exit = await svc.wait('c1');
  t.is(exit.exitCode, 7);
  t.false(exit.oomKilled);
  t.deepEqual(await logLines(svc, 'c1'), ['stdout: uid=65534 gid=65534 pwd=/tmp a=img b=spec c=yes host=web-1 home=/home', 'stderr: oops']);
  t.is((await svc.inspect('c1')).status, 'exited');
});

rootTest('the image Entrypoint and Cmd run when the spec gives none; user name:group and numeric ids resolve', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const image = { ...busybox, config: { ...busybox.config, Entrypoint: ['sh', '-c'], Cmd: ['echo $(id -u):$(id -g):$(id -G); exit 0'], User: 'daemon:nogroup' } };
  await svc.create('a', { image });
  await svc.start('a');
  t.is((await svc.wait('a')).exitCode, 0);
  t.deepEqual(await logLines(svc, 'a'), ['stdout: 1:65534:65534']);
  await svc.create('b', { image, spec: { user: '1234:5678' } });
  await svc.start('b');
  await svc.wait('b');
  t.deepEqual(await logLines(svc, 'b'), ['stdout: 1234:5678:5678']);
});

rootTest('logs keep both streams in order and support tail, since and follow', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  await svc.create('l', { image: busybox, spec: { command: ['sh', '-c', 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; printf "no newline"'] } });
  await svc.start('l');
  const followed: string[] = [];
  for await (const e of svc.logs('l', { follow: true })) followed.push(`${e.stream}:${e.line}`);
  t.deepEqual(followed, ['stdout:out1', 'stderr:err1', 'stdout:out2', 'stderr:err2', 'stdout:out3', 'stderr:err3', 'stdout:no newline']);
  const tail: string[] = [];
  for await (const e of svc.logs('l', { tail: 2 })) tail.push(e.line);
  t.deepEqual(tail, ['err3', 'no newline']);
  const all: Date[] = [];
  for await (const e of svc.logs('l')) all.push(e.time);
  const since: string[] = [];
  for await (const e of svc.logs('l', { since: all[4] })) since.push(e.line);
  t.true(since.length >= 2 && since.length <= 3 && since.includes('no newline'));
});

rootTest('a memory limit is enforced and the exit says OOM', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  await svc.create('m', {
    image: busybox,
    spec: { command: ['sh', '-c', 'echo start; x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived'], resources: { memoryBytes: 32 * 1024 * 1024 } },
  });
  await svc.start('m');
  const exit = await svc.wait('m');
  t.true(exit.oomKilled, 'OOM killed');
  t.is(exit.exitCode, 137);
  const lines = await logLines(svc, 'm');
  t.false(lines.includes('stdout: survived'));
  // A container within its limit is not reported as OOM.
  await svc.create('ok', { image: busybox, spec: { command: ['true'], resources: { memoryBytes: 32 * 1024 * 1024 } } });
  await svc.start('ok');
  t.deepEqual({ ...(await svc.wait('ok')), exitedAt: 0 }, { exitCode: 0, oomKilled: false, exitedAt: 0 });
});

rootTest('a pids limit caps a fork bomb', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  await svc.create('p', {
    image: busybox,
    // The bomb runs in a subshell; the init then execs (no fork needed once the table is full).
    spec: { command: ['sh', '-c', '(bomb() { bomb | bomb & }; bomb) 2>/dev/null; exec sleep 60'], resources: { pidsLimit: 12 } },
  });
  await svc.start('p');
  const info = await svc.inspect('p');
  const events = join('/sys/fs/cgroup/pids', info.cgroupsPath, 'pids.events');
  let refused = 0;
  let most = 0;
  for (let i = 0; i < 100 && refused === 0; i++) {
    most = Math.max(most, (await svc.stats('p')).pids);
    refused = Number(/max (\d+)/.exec(await readFile(events, 'utf8').catch(() => ''))?.[1] ?? 0);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.true(refused > 0, 'the kernel refused forks at the limit');
  t.true(most <= 12, `never more than 12 tasks (saw ${most})`);
  t.is(Number((await readFile(join('/sys/fs/cgroup/pids', info.cgroupsPath, 'pids.max'), 'utf8')).trim()), 12);
  const exit = await svc.stop('p', { timeoutMs: 100 });
  t.is(exit.exitCode, 137);
});

rootTest('stop sends the image StopSignal, and SIGKILL after the timeout', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const image = { ...busybox, config: { ...busybox.config, StopSignal: 'SIGUSR1' } };
  await svc.create('polite', { image, spec: { command: ['sh', '-c', 'trap "echo got USR1; exit 3" USR1; echo ready; while true; do sleep 0.05; done'] } });
  await svc.start('polite');
  await waitForLog(svc, 'polite', /ready/);
  const e1 = await svc.stop('polite', { timeoutMs: 20_000 });
  t.is(e1.exitCode, 3);
  t.true((await logLines(svc, 'polite')).includes('stdout: got USR1'));

  await svc.create('stubborn', { image: busybox, spec: { command: ['sh', '-c', 'trap "echo ignoring TERM" TERM; echo ready; while true; do sleep 0.05; done'] } });
  await svc.start('stubborn');
  await waitForLog(svc, 'stubborn', /ready/);
  const e2 = await svc.stop('stubborn', { timeoutMs: 300 });
  t.is(e2.exitCode, 137, 'killed');
  t.false(e2.oomKilled);
  t.true((await logLines(svc, 'stubborn')).includes('stdout: ignoring TERM'));
});

rootTest('bind mounts (read-only too) and tmpfs', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const host = await mkdtemp(join(tmpdir(), 'swarmd-bind-'));
  t.teardown(() => rm(host, { recursive: true, force: true }));
  await writeFile(join(host, 'in.txt'), 'from host\n');
  await svc.create('b', {
    image: busybox,
    spec: {
      command: ['sh', '-c', 'cat /in/in.txt; echo written > /out/out.txt; (echo x > /in/nope) 2>/dev/null || echo ro-ok; grep " /scratch " /proc/mounts | cut -d" " -f3; echo t > /scratch/f && cat /scratch/f'],
      mounts: [
        { type: 'bind', source: host, target: '/in', readOnly: true },
        { type: 'bind', source: host, target: '/out' },
        { type: 'tmpfs', target: '/scratch', sizeBytes: 1 << 20 },
      ],
    },
  });
  await svc.start('b');
  t.is((await svc.wait('b')).exitCode, 0);
  t.deepEqual(await logLines(svc, 'b'), ['stdout: from host', 'stdout: ro-ok', 'stdout: tmpfs', 'stdout: t']);
  t.is((await stat(join(host, 'out.txt'))).size, 'written\n'.length);
});

rootTest('joins a network namespace given as a path and sees its eth0 address', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const net = await createHosts(1, { t });
  const h = net.hosts[0];
  await svc.create('n', { image: busybox, netnsPath: h.nsPath, spec: { command: ['sh', '-c', 'ip -4 -o addr show eth0'] } });
  await svc.start('n');
  t.is((await svc.wait('n')).exitCode, 0);
  const lines = await logLines(svc, 'n');
  t.regex(lines.join('\n'), new RegExp(`inet ${h.addr.replace(/\./g, '\\.')}/24`));
  // Without a path, a new namespace: only lo.
  await svc.create('iso', { image: busybox, spec: { command: ['sh', '-c', 'ls /sys/class/net'] } });
  await svc.start('iso');
  await svc.wait('iso');
  t.deepEqual(await logLines(svc, 'iso'), ['stdout: lo']);
});

rootTest('a network still being made: the rootfs is mounted meanwhile, and its netns and DNS are what the container gets', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  const net = await createHosts(1, { t });
  const h = net.hosts[0];
  let attach!: (n: { netnsPath: string; dns: { nameservers: string[]; search: string[] } }) => void;
  const network = new Promise<{ netnsPath: string; dns: { nameservers: string[]; search: string[] } }>((r) => (attach = r));
  const creating = svc.create('late', { image: busybox, network, spec: { command: ['sh', '-c', 'ip -4 -o addr show eth0; cat /etc/resolv.conf'] } });
  const rootfs = join(root, 'containers', 'late', 'rootfs');
  let mounted = false;
  for (let i = 0; i < 400 && !mounted; i++) {
    mounted = (await mountsUnder(rootfs)).length > 0;
    if (!mounted) await new Promise((r) => setTimeout(r, 10));
  }
  t.true(mounted, 'the rootfs is mounted before the network is there');
  attach({ netnsPath: h.nsPath, dns: { nameservers: ['10.9.8.7'], search: ['svc.test'] } });
  const info = await creating;
  t.is(info.netnsPath, h.nsPath);
  await svc.start('late');
  t.is((await svc.wait('late')).exitCode, 0);
  const out = (await logLines(svc, 'late')).join('\n');
  t.regex(out, new RegExp(`inet ${h.addr.replace(/\./g, '\\.')}/24`));
  t.regex(out, /nameserver 10\.9\.8\.7/);
  t.regex(out, /search svc\.test/);
});

rootTest('a network that fails fails the create with its error and leaves nothing behind', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  const boom = new Error('attach: address pool exhausted');
  const e = await t.throwsAsync(svc.create('nonet', { image: busybox, network: Promise.reject(boom) }));
  t.is(e, boom);
  await t.throwsAsync(stat(join(root, 'containers', 'nonet')), { code: 'ENOENT' });
  t.deepEqual(await mountsUnder(root), []);
  t.deepEqual(await svc.cgroupDirsOf('nonet'), []);
  t.is(await svc.runc.state('nonet'), undefined);
  const ps = await run('ps', ['-eo', 'args']);
  t.false(ps.stdout.includes(join(root, 'containers', 'nonet')), 'no conmon left waiting');
});

rootTest('remove leaves no mount, cgroup, runc state, process or directory behind', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  await svc.create('r', { image: busybox, spec: { command: ['sleep', '1000'], resources: { memoryBytes: 64 << 20, cpuShares: 512, cpuQuotaUs: 50_000, pidsLimit: 50 } } });
  const pid = await svc.start('r');
  const info = await svc.inspect('r');
  t.is(info.status, 'running');
  t.true((await svc.cgroupDirsOf('r')).length > 0);
  t.true((await mountsUnder(info.bundle)).length > 0);
  await t.throwsAsync(svc.remove('r'), { message: /running/ });
  await svc.remove('r', { force: true });
  t.deepEqual(await mountsUnder(join(root, 'containers')), []);
  t.deepEqual(await svc.cgroupDirsOf('r'), []);
  t.is(await svc.runc.state('r'), undefined);
  t.false(await alive(pid), 'container process gone');
  t.false(await alive(info.conmonPid!), 'conmon gone');
  await t.throwsAsync(stat(info.bundle), { code: 'ENOENT' });
  await t.throwsAsync(svc.inspect('r'), { message: /not found/ });
  const ps = await run('ps', ['-eo', 'args']);
  t.false(ps.stdout.includes(root), 'no process mentions the root');
});

rootTest('bad input fails clearly and leaves nothing half-created', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  const nothingLeft = async (id: string) => {
    await t.throwsAsync(stat(join(root, 'containers', id)), { code: 'ENOENT' }, `${id}: no dir`);
    t.deepEqual(await mountsUnder(root), [], `${id}: no mount`);
    t.deepEqual(await svc.cgroupDirsOf(id), [], `${id}: no cgroup`);
    t.is(await svc.runc.state(id), undefined, `${id}: no runc state`);
  };
  const code = (c: string) => (e: unknown) => isSwarmError(e) && e.code === c;

  const e1 = await t.throwsAsync(svc.create('v', { image: busybox, spec: { mounts: [{ type: 'volume', source: 'data', target: '/data', driver: 'nfs-magic' }] } }));
  t.true(code(ErrorCode.INVALID_ARGUMENT)(e1));
  t.regex(e1.message, /volume driver "nfs-magic" is not supported/);
  t.deepEqual(await svc.volumes.list(), []);
  await nothingLeft('v');

  const e2 = await t.throwsAsync(svc.create('u', { image: busybox, spec: { user: 'nosuchuser', mounts: [{ type: 'volume', source: 'fresh', target: '/data' }] } }));
  t.true(code(ErrorCode.INVALID_ARGUMENT)(e2));
  t.regex(e2.message, /user "nosuchuser" not found in the image's \/etc\/passwd/);
  t.deepEqual(await svc.volumes.list(), [], 'a volume made for the failed container is gone');
  await nothingLeft('u');

  const e3 = await t.throwsAsync(svc.create('g', { image: busybox, spec: { user: 'root:nosuchgroup' } }));
  t.regex(e3.message, /group "nosuchgroup" not found/);
  await nothingLeft('g');

  const e4 = await t.throwsAsync(svc.create('f', { image: { layers: [join(root, 'snapshots', 'nope', 'fs')] } }));
  t.true(code(ErrorCode.NOT_FOUND)(e4));
  t.regex(e4.message, /rootfs layer .* does not exist/);
  await nothingLeft('f');
  const e5 = await t.throwsAsync(svc.create('f', { image: { layers: [] } }));
  t.true(code(ErrorCode.INVALID_ARGUMENT)(e5));

  const e6 = await t.throwsAsync(svc.create('x', { image: busybox, spec: { command: ['/no/such/binary'] } }));
  t.true(code(ErrorCode.FAILED_PRECONDITION)(e6));
  t.regex(e6.message, /no such file or directory/);
  await nothingLeft('x');

  const e7 = await t.throwsAsync(svc.create('bad id!', { image: busybox }));
  t.true(code(ErrorCode.INVALID_ARGUMENT)(e7));
  const e8 = await t.throwsAsync(svc.create('s', { image: busybox, spec: { mounts: [{ type: 'bind', source: '/no/such/dir', target: '/x' }] } }));
  t.regex(e8.message, /source \/no\/such\/dir does not exist/);
  const e9 = await t.throwsAsync(svc.create('n', { image: busybox, netnsPath: '/run/netns/nope' }));
  t.regex(e9.message, /network namespace \/run\/netns\/nope does not exist/);

  await svc.create('dup', { image: busybox, spec: { command: ['true'] } });
  const e10 = await t.throwsAsync(svc.create('dup', { image: busybox }));
  t.true(code(ErrorCode.ALREADY_EXISTS)(e10));
});

rootTest('a created container can be stopped or force-removed before it starts; kill signals a running one', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  await svc.create('c', { image: busybox, spec: { command: ['sleep', '1000'] } });
  await svc.create('d', { image: busybox, spec: { command: ['sleep', '1000'] } });
  t.is((await svc.inspect('c')).status, 'created');
  const e = await svc.stop('c');
  t.is(e.exitCode, 137);
  await t.throwsAsync(svc.start('c'), { message: /already started|not startable/ });
  await t.throwsAsync(svc.remove('d'), { message: /running/ });
  await svc.remove('d', { force: true });
  await svc.remove('c');
  t.deepEqual(await svc.list(), []);

  await svc.create('k', { image: busybox, spec: { command: ['sh', '-c', 'trap "echo hup; exit 5" HUP; echo ready; while true; do sleep 0.05; done'] } });
  await svc.start('k');
  await waitForLog(svc, 'k', /ready/);
  await svc.kill('k', 'HUP');
  t.is((await svc.wait('k')).exitCode, 5);
  await t.throwsAsync(svc.kill('k', 'TERM'), { message: /not running/ });
  await t.throwsAsync(svc.kill('k', 'SIGNOPE'), { message: /not known/ });
});

rootTest('a container that exited is deleted from runc once: remove runs no second `runc delete` after the one the exit started', async (t) => {
  const runc = await loggingRunc(t);
  const { svc, busybox } = await newRuntime(t, { runc: runc.runc });
  await svc.create('once', { image: busybox, spec: { command: ['sh', '-c', 'exit 0'] } });
  await svc.start('once');
  t.is((await svc.wait('once')).exitCode, 0);
  await svc.remove('once');
  const deletes = (await runc.calls('once')).filter((c) => c.sub === 'delete');
  t.is(deletes.length, 1, deletes.map((c) => c.args.join(' ')).join('\n'));
  t.is(await svc.inspect('once').catch((e: unknown) => (isSwarmError(e, ErrorCode.NOT_FOUND) ? 'gone' : e)), 'gone');
});

/** The create/run/start subcommands runc ran for a container, in order. */
const lifecycleCalls = async (runc: { calls: (id?: string) => Promise<RuncCall[]> }, id: string) =>
  (await runc.calls(id)).filter((c) => ['create', 'run', 'start'].includes(c.sub)).map((c) => c.args.filter((a) => a === c.sub || a === '--detach').join(' '));

rootTest('create with startNow true starts the container in one runc process (run --detach): output logged, exit codes recorded, start a no-op', async (t) => {
  const runc = await loggingRunc(t);
  const { svc, busybox, root } = await newRuntime(t, { runc: runc.runc });
  let asked = 0;
  const info = await svc.create('now', {
    image: busybox,
    spec: { command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] },
    startNow: () => (asked++, true),
  });
  t.is(asked, 1);
  t.is(info.status, 'running');
  t.true(info.startedByCreate);
  t.truthy(info.startedAt);
  t.true((info.pid ?? 0) > 0);
  t.is(await svc.start('now'), info.pid!, 'start is a no-op returning the pid');
  const exit = await svc.wait('now');
  t.is(exit.exitCode, 3);
  t.deepEqual(await logLines(svc, 'now'), ['stdout: out', 'stderr: err']);
  t.deepEqual(await lifecycleCalls(runc, 'now'), ['run --detach'], 'one runc process: run --detach, no create or start');
  t.is(await svc.start('now'), info.pid!, 'and still once it has exited');
  t.is((await svc.inspect('now')).status, 'exited');
  const wrapper = await stat(join(root, 'runc-wrapper.sh'));
  t.is(wrapper.mode & 0o777, 0o755);

  // Containers that exit at once, very likely before runc itself has exited: conmon still
  // reaps them (it is their subreaper) and records each code.
  const codes = [0, 1, 42, 255];
  for (const [i, code] of codes.entries()) {
    await svc.create(`q${i}`, { image: busybox, spec: { command: code === 0 ? ['true'] : ['sh', '-c', `exit ${code}`] }, startNow: () => true });
  }
  for (const [i, code] of codes.entries()) t.is((await svc.wait(`q${i}`)).exitCode, code, `q${i}`);

  // A long-running one: inspect says running, start returns the same pid, stop ends it.
  const long = await svc.create('long', {
    image: busybox,
    spec: { command: ['sh', '-c', 'trap "echo bye; exit 0" TERM; echo ready; while true; do sleep 0.05; done'] },
    startNow: () => true,
  });
  await waitForLog(svc, 'long', /ready/);
  const seen = await svc.inspect('long');
  t.is(seen.status, 'running');
  t.true(seen.startedByCreate);
  t.is(await svc.start('long'), long.pid!);
  t.true(await alive(long.pid!));
  t.is((await svc.stop('long', { timeoutMs: 20_000 })).exitCode, 0);
  t.true((await logLines(svc, 'long')).includes('stdout: bye'));
  t.deepEqual(await lifecycleCalls(runc, 'long'), ['run --detach']);
});

rootTest('create with startNow false creates only; start then runs it through runc\'s exec fifo, with no runc process', async (t) => {
  const runc = await loggingRunc(t);
  const { svc, busybox } = await newRuntime(t, { runc: runc.runc });
  const info = await svc.create('later', { image: busybox, spec: { command: ['sh', '-c', 'echo hi; exit 4'] }, startNow: () => false });
  t.is(info.status, 'created');
  t.falsy(info.startedByCreate);
  t.is((await svc.inspect('later')).status, 'created');
  t.deepEqual(await lifecycleCalls(runc, 'later'), ['create']);
  t.true((await svc.start('later')) > 0);
  t.is((await svc.wait('later')).exitCode, 4);
  t.deepEqual(await logLines(svc, 'later'), ['stdout: hi']);
  t.deepEqual(await lifecycleCalls(runc, 'later'), ['create'], 'started without `runc start`');
  await t.throwsAsync(svc.start('later'), { message: /already started/ });
});

rootTest('with the rest of the network still being made, runc create joins the netns meanwhile and the process starts only once it is ready, through the exec fifo', async (t) => {
  const runc = await loggingRunc(t);
  const { svc, busybox } = await newRuntime(t, { runc: runc.runc });
  const h = (await createHosts(1, { t })).hosts[0];
  let ready!: () => void;
  const networkReady = new Promise<void>((r) => (ready = r));
  const creating = svc.create('links', {
    image: busybox,
    network: Promise.resolve({ netnsPath: h.nsPath }),
    networkReady,
    spec: { command: ['sh', '-c', 'ls /sys/class/net'] },
    startNow: () => true,
  });
  // (runc's own state: inspect waits for the create, which waits for the network.)
  let state: string | undefined;
  for (let i = 0; i < 500 && state !== 'created'; i++) {
    state = (await svc.runc.state('links'))?.status;
    if (state !== 'created') await new Promise((r) => setTimeout(r, 10));
  }
  t.is(state, 'created', 'runc created the container before the network was ready');
  await new Promise((r) => setTimeout(r, 200));
  t.is((await svc.runc.state('links'))?.status, 'created', 'and did not start it while the network is being made');
  // The last link comes, then the network is ready: the process sees it.
  try {
    await run('nsenter', [`--net=${h.nsPath}`, 'ip', 'link', 'add', 'late0', 'type', 'veth', 'peer', 'name', 'late1']);
  } finally {
    ready();
  }
  const info = await creating;
  t.is(info.status, 'running');
  t.true(info.startedByCreate);
  t.is((await svc.wait('links')).exitCode, 0);
  t.true((await logLines(svc, 'links')).includes('stdout: late0'));
  t.deepEqual(await lifecycleCalls(runc, 'links'), ['create'], 'one runc process: create, then the exec fifo');
});

rootTest('a network that fails after its netns was given fails the create with its error and leaves nothing behind', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  const h = (await createHosts(1, { t })).hosts[0];
  const boom = new Error('attach: the veth could not be made');
  const networkReady = new Promise<void>((_, reject) => setTimeout(() => reject(boom), 300));
  const e = await t.throwsAsync(svc.create('halfnet', { image: busybox, network: Promise.resolve({ netnsPath: h.nsPath }), networkReady, startNow: () => true }));
  t.is(e, boom);
  await t.throwsAsync(stat(join(root, 'containers', 'halfnet')), { code: 'ENOENT' });
  t.deepEqual(await mountsUnder(root), []);
  t.deepEqual(await svc.cgroupDirsOf('halfnet'), []);
  t.is(await svc.runc.state('halfnet'), undefined);
});

rootTest('start of a created container whose init died fails clearly, without waiting on its exec fifo', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const info = await svc.create('dead', { image: busybox, spec: { command: ['true'] } });
  t.true((info.pid ?? 0) > 0);
  process.kill(info.pid!, 'SIGKILL'); // the runc init waiting for its start
  const e = await t.throwsAsync(svc.start('dead'));
  t.regex(e.message, /start dead: not startable/);
  t.regex(String((e.cause as Error | undefined)?.message), /init \(pid \d+\) is gone|runc start/);
});

rootTest('stop and kill signal a running container without `runc kill`; an ignored stop signal still ends in SIGKILL after the timeout', async (t) => {
  const runc = await loggingRunc(t);
  const { svc, busybox } = await newRuntime(t, { runc: runc.runc });
  const kills = async (id: string) => (await runc.calls(id)).filter((c) => c.sub === 'kill').map((c) => c.args.slice(c.args.indexOf('kill')).join(' '));

  // The init is pid 1 of its namespace: only signals it handles reach it (as with runc kill).
  await svc.create('polite', { image: busybox, spec: { command: ['sh', '-c', 'trap "echo got TERM; exit 143" TERM; echo ready; while true; do sleep 0.05; done'] } });
  await svc.start('polite');
  await waitForLog(svc, 'polite', /ready/);
  const info = await svc.inspect('polite');
  t.true(await processInCgroup(info.pid!, info.cgroupsPath), 'the init is in its cgroup');
  t.false(await processInCgroup(info.pid!, info.cgroupsPath.slice(0, -1)), 'a cgroup path that is a prefix of the id does not match');
  t.false(await processInCgroup(process.pid, info.cgroupsPath), 'another process is not');
  const e1 = await svc.stop('polite', { timeoutMs: 20_000 });
  t.is(e1.exitCode, 143);
  t.true((await logLines(svc, 'polite')).includes('stdout: got TERM'));
  t.deepEqual(await kills('polite'), [], 'no runc kill');

  // kill(SIGKILL) of a container create() started.
  await svc.create('k', { image: busybox, spec: { command: ['sleep', '1000'] }, startNow: () => true });
  await svc.kill('k', 'SIGKILL');
  t.is((await svc.wait('k')).exitCode, 137);
  t.deepEqual(await kills('k'), [], 'no runc kill');

  await svc.create('stubborn', { image: busybox, spec: { command: ['sh', '-c', 'trap "echo ignoring TERM" TERM; echo ready; while true; do sleep 0.05; done'] }, startNow: () => true });
  await waitForLog(svc, 'stubborn', /ready/);
  const e2 = await svc.stop('stubborn', { timeoutMs: 300 });
  t.is(e2.exitCode, 137, 'killed');
  t.true((await logLines(svc, 'stubborn')).includes('stdout: ignoring TERM'));
  t.deepEqual(await kills('stubborn'), ['kill --all stubborn SIGKILL'], 'only the SIGKILL after the timeout, through runc');
});
