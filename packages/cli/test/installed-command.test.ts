// The installed command (dist/src/swarmctl.cjs running the bundle dist/bundle/swarmctl.cjs from a
// V8 code cache) against the modules (dist/src/main.js): same output and exit code, through a
// real gRPC connection to the fake control server. Needs the bundle: `npm run build` makes it.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeControl, type FakeControl } from './helpers/fake-control.js';

const DIST_SRC = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
const INSTALLED = join(DIST_SRC, 'swarmctl.cjs');
const MODULES = join(DIST_SRC, 'main.js');
const BUNDLE = join(DIST_SRC, '..', 'bundle', 'swarmctl.cjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(entry: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [entry, ...args], { env: { PATH: process.env.PATH, HOME: '/nonexistent', ...env } }, (e, stdout, stderr) => {
      resolve({ code: e ? ((e as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

let fc: FakeControl;
let cache: string;
test.beforeEach(async () => {
  fc = await startFakeControl();
  cache = await mkdtemp(join(tmpdir(), 'swarmctl-cache-'));
});
test.afterEach.always(async () => {
  await fc.stop();
  await rm(cache, { recursive: true, force: true });
});

const serial = test.serial;

serial('the installed swarmctl prints what the modules print, and its second call runs from the code cache the first wrote', async (t) => {
  t.true(existsSync(BUNDLE), `no bundle at ${BUNDLE}: run npm run build`);
  const env = { SWARMCTL_CACHE_DIR: cache };
  const args = ['node', 'ls', '--host', fc.host];
  const modules = await run(MODULES, args, env);
  t.is(modules.code, 0, modules.stderr);
  t.regex(modules.stdout, /^ID\s+HOSTNAME\s+STATUS/);
  t.deepEqual(await readdir(cache), [], 'the modules keep no cache');

  const first = await run(INSTALLED, args, env);
  t.deepEqual(first, modules);
  const files = await readdir(cache);
  t.is(files.length, 1);
  t.regex(files[0], /^bundle-v\d+\.\d+\.\d+-\w+-\d+-\d+-\d+\.v8cache$/);
  const written = await stat(join(cache, files[0]));
  t.true(written.size > 100_000, `cache of ${written.size} bytes`);

  const second = await run(INSTALLED, args, env);
  t.deepEqual(second, modules);
  const after = await stat(join(cache, files[0]));
  t.is(after.mtimeMs, written.mtimeMs, 'V8 took the cache: the second call did not write it again');
});

serial('the installed swarmctl fails as the modules do: exit code 1 and the same message', async (t) => {
  const env = { SWARMCTL_CACHE_DIR: cache };
  for (const args of [['servce', 'ls'], ['node', 'ls', '--format', 'bogus'], ['node', 'ls', '--host', `unix://${join(cache, 'none.sock')}`]]) {
    const modules = await run(MODULES, args, env);
    t.is(modules.code, 1, args.join(' '));
    t.deepEqual(await run(INSTALLED, args, env), modules, args.join(' '));
  }
});

serial('a corrupt code cache is replaced, and an unwritable cache folder only costs speed', async (t) => {
  const args = ['node', 'ls', '--host', fc.host, '-q'];
  const first = await run(INSTALLED, args, { SWARMCTL_CACHE_DIR: cache });
  t.is(first.code, 0, first.stderr);
  const [file] = await readdir(cache);
  await writeFile(join(cache, file), Buffer.alloc(200_000, 7));
  const corrupt = await run(INSTALLED, args, { SWARMCTL_CACHE_DIR: cache });
  t.deepEqual(corrupt, first);
  t.true((await stat(join(cache, file))).size !== 200_000, 'the rejected cache was written again');

  const blocked = join(cache, 'a-file');
  await writeFile(blocked, 'not a folder');
  const unwritable = await run(INSTALLED, args, { SWARMCTL_CACHE_DIR: join(blocked, 'cache') });
  t.deepEqual(unwritable, first);
});
