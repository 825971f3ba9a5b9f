// ShellSpawner: programs started by a long-lived dash, as `run` does in swarmd. Real programs.
import test from 'ava';
import { readdir, readFile } from 'node:fs/promises';
import { ShellSpawner, shellQuote } from '../src/shell-spawner.js';
import { run, startProgramsThroughShell } from '../src/exec.js';

test('output, exit code, input, working directory and environment reach the program as given', async (t) => {
  const s = new ShellSpawner();
  t.teardown(() => s.close());
  const r = await s.run('sh', ['-c', 'cat; echo "$FOO" >&2; pwd; exit 3'], { input: 'from stdin\n', cwd: '/tmp', env: { FOO: 'bar baz', PATH: process.env.PATH } });
  t.is(r.code, 3);
  t.is(r.stdout, 'from stdin\n/tmp\n');
  t.is(r.stderr, 'bar baz\n');
  t.is(r.signal, undefined);
});

test('arguments with quotes, blanks, newlines, globs and $ reach the program word for word', async (t) => {
  const s = new ShellSpawner();
  t.teardown(() => s.close());
  const args = ["it's", 'two words', 'a\nb', '*', '$HOME', '`id`', '"q"', ''];
  const r = await s.run('printf', ['%s|', ...args]);
  t.is(r.stdout, `${args.join('|')}|`);
  t.is(shellQuote("a'b"), `'a'\\''b'`);
});

test('a timeout kills the program itself and reports the signal', async (t) => {
  const s = new ShellSpawner();
  t.teardown(() => s.close());
  const r = await s.run('sleep', ['30'], { timeoutMs: 100 });
  t.is(r.signal, 'SIGTERM');
  t.is(r.code, 128 + 15);
});

test('an abort signal kills the program', async (t) => {
  const s = new ShellSpawner();
  t.teardown(() => s.close());
  const ac = new AbortController();
  const p = s.run('sleep', ['30'], { signal: ac.signal });
  setTimeout(() => ac.abort(), 100);
  t.is((await p).signal, 'SIGTERM');
});

test('a program that exits 137 by itself is not taken for a killed one', async (t) => {
  const s = new ShellSpawner();
  t.teardown(() => s.close());
  const r = await s.run('sh', ['-c', 'exit 137']);
  t.is(r.code, 137);
  t.is(r.signal, undefined);
});

test('200 programs at once, across helper rollovers, each get their own output; no file is left behind', async (t) => {
  const s = new ShellSpawner({ rollover: 7 });
  t.teardown(() => s.close());
  const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => s.run('sh', ['-c', `sleep 0.0${i % 10}; echo out${i}; echo err${i} >&2; exit ${i % 4}`])));
  rs.forEach((r, i) => {
    t.is(r.stdout, `out${i}\n`);
    t.is(r.stderr, `err${i}\n`);
    t.is(r.code, i % 4);
  });
  const dir = (s as unknown as { dir: string }).dir;
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(await readdir(dir), []);
});

/** The children of `pid` (from /proc), with their command name and state. */
async function childrenOf(pid: number): Promise<{ pid: number; comm: string; state: string }[]> {
  const out = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = await readFile(`/proc/${d}/stat`, 'utf8').catch(() => '');
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const [state, ppid] = stat.slice(close + 2).split(' ');
    if (Number(ppid) === pid) out.push({ pid: Number(d), comm: stat.slice(stat.indexOf('(') + 1, close), state });
  }
  return out;
}

test('ended jobs do not pile up as zombies of the helper: 50 calls leave at most the last one unreaped', async (t) => {
  // dash by its own name, so this test finds its own helper among the children of the test process.
  const s = new ShellSpawner({ shell: 'dash' });
  t.teardown(() => s.close());
  for (let i = 0; i < 50; i++) t.is((await s.run('true', [])).code, 0);
  const helpers = (await childrenOf(process.pid)).filter((c) => c.comm === 'dash');
  t.is(helpers.length, 1);
  const zombies = (await childrenOf(helpers[0].pid)).filter((c) => c.state === 'Z');
  t.true(zombies.length <= 1, `${zombies.length} zombie jobs`);
});

test('a helper killed meanwhile: its running program still reports; a call sent as it died runs on a new helper', async (t) => {
  const s = new ShellSpawner();
  t.teardown(() => s.close());
  const p = s.run('sh', ['-c', 'sleep 0.3; echo late']);
  await new Promise((r) => setTimeout(r, 100));
  const helper = (s as unknown as { helper: { proc: { pid: number } } }).helper;
  process.kill(helper.proc.pid, 'SIGKILL');
  t.is((await s.run('echo', ['again'])).stdout, 'again\n');
  t.is((await p).stdout, 'late\n');
});

test('a shell that cannot run fails the call, naming it', async (t) => {
  const s = new ShellSpawner({ shell: 'no-such-shell-xyz' });
  t.teardown(() => s.close());
  await t.throwsAsync(s.run('echo', ['x']), { message: /the program helper \(no-such-shell-xyz\) could not run/ });
});

test('run() through the shell: a failing program is a SwarmError naming it with its stderr, a missing one too', async (t) => {
  startProgramsThroughShell(true);
  t.teardown(() => startProgramsThroughShell(false));
  t.is((await run('echo', ['ok'])).stdout, 'ok\n');
  await t.throwsAsync(run('sh', ['-c', 'echo bad >&2; exit 2']), { message: /sh -c echo bad >&2; exit 2: exit 2: bad/ });
  t.is((await run('sh', ['-c', 'exit 2'], { okCodes: [0, 2] })).code, 2);
  await t.throwsAsync(run('no-such-program-xyz', []), { message: /no-such-program-xyz ?: exit 127: .*not found/ });
});
