import { Task } from '@swarmd/proto';
import { agentFile, readJsonFile, writeFileAtomic } from '../session/state-files.js';

/**
 * The agent's small local db of its assigned tasks: DIR/agent/assignments.json, rewritten whole
 * (temp + rename) after each change, so a restarted agent knows what it was running before the
 * dispatcher sends the next COMPLETE set. Writes are serialized; the last one wins.
 */
export class LocalTaskDb {
  private readonly path: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(stateDir: string) {
    this.path = agentFile(stateDir, 'assignments.json');
  }

  async load(): Promise<{ version: string; tasks: Task[] }> {
    const doc = (await readJsonFile(this.path)) as { version?: unknown; tasks?: unknown } | undefined;
    if (!doc || !Array.isArray(doc.tasks)) return { version: '', tasks: [] };
    return { version: typeof doc.version === 'string' ? doc.version : '', tasks: doc.tasks.map((t) => Task.fromJSON(t)) };
  }

  save(version: string, tasks: readonly Task[]): Promise<void> {
    const text = JSON.stringify({ version, tasks: tasks.map((t) => Task.toJSON(t)) }) + '\n';
    this.chain = this.chain.catch(() => undefined).then(() => writeFileAtomic(this.path, text));
    return this.chain;
  }
}
