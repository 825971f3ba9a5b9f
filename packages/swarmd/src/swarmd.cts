#!/usr/bin/env node
/**
 * The installed `swarmd` command. It runs swarmd bundled by esbuild (dist/bundle/main.js, made by
 * `npm run bundle`): ES modules split into chunks, so a worker still loads no manager code until
 * it is promoted, and minified. An idle restarted worker holds ~62 MiB RSS so (72-76 MiB running
 * the ~500 modules themselves): V8 keeps every module's source, and the bundle's is far smaller.
 *
 * Without a current bundle (missing, or `tsc -b` ran since `npm run build`: it touches
 * dist/.tsbuildinfo also when only a dependency changed) it runs the modules: same behaviour.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const BUNDLE = join(__dirname, '..', 'bundle', 'main.js');

function bundleIsCurrent(): boolean {
  const bundle = statSync(BUNDLE, { throwIfNoEntry: false });
  const built = statSync(join(__dirname, '..', '.tsbuildinfo'), { throwIfNoEntry: false });
  return !!bundle && (!built || built.mtimeMs <= bundle.mtimeMs);
}

void import(bundleIsCurrent() ? pathToFileURL(BUNDLE).href : './main.js');
