/** The loader hook of register.ts (runs on Node's loader thread; process.pid is the process's). */
import { appendFileSync } from 'node:fs';
import type { LoadHook } from 'node:module';
import { join } from 'node:path';

const file = join(process.env.SWARMD_MODULE_TRACE_DIR ?? '.', `${process.pid}.modules`);

export const load: LoadHook = async (url, context, nextLoad) => {
  appendFileSync(file, url + '\n');
  return nextLoad(url, context);
};

