#!/usr/bin/env node
/**
 * The installed `swarmctl` command. It runs the CLI bundled into one CommonJS file
 * (dist/bundle/swarmctl.cjs, made by `npm run bundle`) and keeps V8's compiled code of it in a
 * per-user cache, so that a call spends its time talking to the manager rather than loading
 * modules: Node loads ~400 ESM files (yargs, gRPC, the generated protos) in ~150 ms; one
 * script from a code cache in ~50 ms (Node 22's `module.enableCompileCache`, done by hand for
 * Node 20).
 *
 * Without a current bundle (`tsc -b` ran since `npm run build`) it runs the modules themselves:
 * slower, same behaviour.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

const BUNDLE = join(__dirname, '..', 'bundle', 'swarmctl.cjs');

/** $SWARMCTL_CACHE_DIR, else $XDG_CACHE_HOME/swarmctl, else ~/.cache/swarmctl. */
function cacheDir(): string {
  const env = process.env;
  if (env.SWARMCTL_CACHE_DIR) return env.SWARMCTL_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'swarmctl');
}

/**
 * The cache file of this build of the bundle on this Node. V8 checks only the source's length
 * (and its own version and flags) before it uses cached code, so the name carries the bundle's
 * size, mtime and inode: a rebuilt bundle never meets the code of the old one.
 */
function cacheFile(dir: string, st: Stats): string {
  return join(dir, `bundle-${process.version}-${process.arch}-${st.size}-${Math.trunc(st.mtimeMs)}-${st.ino}.v8cache`);
}

function readCache(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Writes the code V8 compiled during this run (whole file, then rename) and drops older builds' caches. Best effort. */
function writeCache(dir: string, file: string, script: Script): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, script.createCachedData());
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    for (const f of readdirSync(dir)) {
      if (f.startsWith('bundle-') && join(dir, f) !== file) rmSync(join(dir, f), { force: true });
    }
  } catch {
    // An unwritable cache only costs the next call its compile time.
  }
}

function runBundle(bundle: Stats): void {
  const dir = cacheDir();
  const file = cacheFile(dir, bundle);
  const cached = readCache(file);
  const source = readFileSync(BUNDLE, 'utf8');
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: BUNDLE,
    ...(cached ? { cachedData: cached } : {}),
  });
  // Written at exit, so the cache holds the functions this run compiled lazily, not only the top level.
  if (!cached || script.cachedDataRejected) process.once('exit', () => writeCache(dir, file, script));
  const module = { exports: {} as { main(): Promise<void> } };
  (script.runInThisContext() as (...a: unknown[]) => void)(module.exports, createRequire(BUNDLE), module, BUNDLE, dirname(BUNDLE));
  void module.exports.main();
}

/**
 * The bundle's stat, unless it is missing or older than the last `tsc -b` of this package (which
 * touches dist/.tsbuildinfo also when only a dependency changed): a stale bundle would run old code.
 */
function currentBundle(): Stats | undefined {
  const bundle = statSync(BUNDLE, { throwIfNoEntry: false });
  const built = statSync(join(__dirname, '..', '.tsbuildinfo'), { throwIfNoEntry: false });
  return bundle && (!built || built.mtimeMs <= bundle.mtimeMs) ? bundle : undefined;
}

const bundle = currentBundle();
if (bundle) runBundle(bundle);
else void import('./app.js').then((m: { main(): Promise<void> }) => m.main());
