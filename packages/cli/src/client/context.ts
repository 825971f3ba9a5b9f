import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { invalidArgument } from '@swarmd/common/errors';

/** The manager's local control socket: where swarmctl goes without --host or a context file. */
export const DEFAULT_HOST = 'unix:///var/lib/swarmd/control.sock';

/**
 * A context file says how to reach a cluster; `local up` writes one. Paths are absolute.
 * `{ "name": "default", "host": "unix:///…/control.sock", "tlscacert"?, "tlscert"?, "tlskey"?,
 *    "nodeId"?: the node behind host (marked * in node ls), "fallbackHosts"?: other managers'
 *    sockets, tried when host does not answer }`
 */
export interface CliContext {
  name?: string;
  host: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  nodeId?: string;
  /** Other unix-socket hosts of the same cluster, tried in order when `host` does not answer. */
  fallbackHosts?: string[];
}

export function defaultContextPath(env: NodeJS.ProcessEnv): string {
  return env.SWARMCTL_CONTEXT || join(env.HOME || homedir(), '.swarmctl', 'context.json');
}

export async function readContext(path: string, mustExist: boolean): Promise<CliContext | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !mustExist) return undefined;
    throw invalidArgument(`context ${path}: cannot read: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalidArgument(`context ${path}: not JSON`);
  }
  const c = doc as Partial<CliContext>;
  if (!c || typeof c.host !== 'string' || !c.host) throw invalidArgument(`context ${path}: no "host"`);
  return c as CliContext;
}

export async function writeContext(path: string, c: CliContext): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, path);
}
