import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isSwarmError, run } from '@swarmd/common';
import { createHosts, requires } from '@swarmd/testkit';
import { mountsUnder } from '../src/index.js';
import { alive, logLines, newRuntime, waitForLog } from './container-helpers.js';

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
  // runc behind a wrapper that logs each call's arguments.
  const dir = await mkdtemp(join(tmpdir(), 'runc-calls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const calls = join(dir, 'calls');
  const wrapper = join(dir, 'runc');
  const realRunc = (await run('sh', ['-c', 'command -v runc'])).stdout.trim();
  await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${calls}\nexec ${realRunc} "$@"\n`, { mode: 0o755 });
  const { svc, busybox } = await newRuntime(t, { runc: wrapper });
  await svc.create('once', { image: busybox, spec: { command: ['sh', '-c', 'exit 0'] } });
  await svc.start('once');
  t.is((await svc.wait('once')).exitCode, 0);
  await svc.remove('once');
  const deletes = (await readFile(calls, 'utf8')).split('\n').filter((l) => / delete .*\bonce$/.test(l));
  t.is(deletes.length, 1, deletes.join('\n'));
  t.is(await svc.inspect('once').catch((e: unknown) => (isSwarmError(e, ErrorCode.NOT_FOUND) ? 'gone' : e)), 'gone');
});
