import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** DIR/agent/<name>: the agent's own files. */
export function agentFile(stateDir: string, name: string): string {
  return join(stateDir, 'agent', name);
}

/** Writes a file so that a crash leaves either the old or the new content (temp file + rename). */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, path);
}

export async function readJsonFile(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof SyntaxError) return undefined; // a torn or foreign file: start without it
    throw err;
  }
}

/** DIR/agent/managers.json: `{ "managers": ["10.0.0.2:4242", ...] }`. */
export async function loadManagers(stateDir: string): Promise<string[]> {
  const doc = await readJsonFile(agentFile(stateDir, 'managers.json'));
  if (doc && typeof doc === 'object' && Array.isArray((doc as { managers?: unknown }).managers)) {
    return (doc as { managers: unknown[] }).managers.filter((m): m is string => typeof m === 'string' && m.length > 0);
  }
  return [];
}

export async function saveManagers(stateDir: string, managers: readonly string[]): Promise<void> {
  await writeFileAtomic(agentFile(stateDir, 'managers.json'), JSON.stringify({ managers }, null, 2) + '\n');
}
