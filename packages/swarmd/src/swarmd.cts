#!/usr/bin/env node
/**
 * The installed `swarmd` command. It runs swarmd bundled by esbuild (dist/bundle/main.js, made by
 * `npm run bundle`): ES modules split into chunks, so a worker still loads no manager code until
 * it is promoted, and minified (72-76 MiB RSS for an idle restarted worker running the ~500 modules
 * themselves, ~62 MiB with the bundle: V8 keeps every module's source, and the bundle's is far
 * smaller; ~56 MiB with the lean JIT below).
 *
 * The bundle is built with WebAssembly undefined (`--define:WebAssembly=undefined`, package.json):
 * its only user is the `long` package (two copies: protobufjs's and the generated code's), which
 * compiles a small wasm module for 64-bit multiply and divide at load and falls back to plain
 * JavaScript without it. Compiling wasm pulled V8's wasm decoder and compiler into an idle
 * worker's RSS (~0.6 MiB of the node binary's pages) for arithmetic swarmd hardly does.
 *
 * Without a current bundle (missing, or `tsc -b` ran since `npm run build`: it touches
 * dist/.tsbuildinfo also when only a dependency changed) it runs the modules: same behaviour.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';

/*
 * A worker runs its JavaScript in V8's interpreter only: no Sparkplug (baseline) and no TurboFan
 * (optimizing) compiler. The few functions that start-up makes hot (path and URL helpers of the
 * module loader) were enough to pull TurboFan in, and the code of a compiler once run stays in the
 * process's RSS: an idle restarted worker held ~3 MiB of TurboFan's and ~1 MiB of Sparkplug's
 * machine code (pages of the node binary) and baseline code for them. A worker's work is I/O
 * (gRPC, the kernel, its containers' processes); the manager's is not, so the process turns both
 * compilers back on the first time it starts a manager (fullJit in daemon.ts). Set here, before
 * anything else runs; SWARMD_LEAN_JIT=0 leaves V8's defaults.
 */
if (process.env.SWARMD_LEAN_JIT !== '0') {
  setFlagsFromString('--no-opt');
  setFlagsFromString('--no-sparkplug');
}

const BUNDLE = join(__dirname, '..', 'bundle', 'main.js');

function bundleIsCurrent(): boolean {
  const bundle = statSync(BUNDLE, { throwIfNoEntry: false });
  const built = statSync(join(__dirname, '..', '.tsbuildinfo'), { throwIfNoEntry: false });
  return !!bundle && (!built || built.mtimeMs <= bundle.mtimeMs);
}

void import(bundleIsCurrent() ? pathToFileURL(BUNDLE).href : './main.js');
