/**
 * `node --import .../module-trace/register.js PROGRAM`: the process appends the URL of every
 * module it loads through the ES module loader (ES modules, and CommonJS ones imported from
 * them) to $SWARMD_MODULE_TRACE_DIR/PID.modules, as it loads it. Tests pass it to real swarmd
 * processes (NODE_OPTIONS) to see what a node has loaded; without the variable it records nothing.
 */
import { readFile } from 'node:fs/promises';
import { register } from 'node:module';
import { join } from 'node:path';

if (process.env.SWARMD_MODULE_TRACE_DIR) register('./hooks.js', import.meta.url);

/** The modules process `pid` recorded so far under `dir`, one URL each. */
export async function loadedModules(dir: string, pid: number): Promise<string[]> {
  return (await readFile(join(dir, `${pid}.modules`), 'utf8').catch(() => '')).split('\n').filter(Boolean);
}
