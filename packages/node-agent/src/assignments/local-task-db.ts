import { NetworkStateSet, Task } from '@swarmd/proto';
import { agentFile, readJsonFile, writeFileAtomic } from '../session/state-files.js';

/** Whole-file rewrites of one file (temp + rename), one after another; the last one wins. */
function serialWriter(path: string): (text: string) => Promise<void> {
  let chain: Promise<void> = Promise.resolve();
  return (text) => (chain = chain.catch(() => undefined).then(() => writeFileAtomic(path, text)));
}

/**
 * The agent's small local db of its assigned tasks: DIR/agent/assignments.json, rewritten whole
 * (temp + rename) after each change, so a restarted agent knows what it was running before the
 * dispatcher sends the next COMPLETE set. Writes are serialized; the last one wins.
 */
export class LocalTaskDb {
  private readonly path: string;
  private readonly write: (text: string) => Promise<void>;

  constructor(stateDir: string) {
    this.path = agentFile(stateDir, 'assignments.json');
    this.write = serialWriter(this.path);
  }

  async load(): Promise<{ version: string; tasks: Task[] }> {
    const doc = (await readJsonFile(this.path)) as { version?: unknown; tasks?: unknown } | undefined;
    if (!doc || !Array.isArray(doc.tasks)) return { version: '', tasks: [] };
    return { version: typeof doc.version === 'string' ? doc.version : '', tasks: doc.tasks.map((t) => Task.fromJSON(t)) };
  }

  save(version: string, tasks: readonly Task[]): Promise<void> {
    return this.write(JSON.stringify({ version, tasks: tasks.map((t) => Task.toJSON(t)) }) + '\n');
  }
}

/**
 * The last NetworkStateSet the managers pushed, beside assignments.json (network-state.json), so
 * a restarted agent programs its overlay networks and answers DNS before the next COMPLETE.
 */
export class NetworkStateDb {
  private readonly path: string;
  private readonly write: (text: string) => Promise<void>;

  constructor(stateDir: string) {
    this.path = agentFile(stateDir, 'network-state.json');
    this.write = serialWriter(this.path);
  }

  async load(): Promise<NetworkStateSet> {
    const doc = await readJsonFile(this.path);
    return doc && typeof doc === 'object' ? NetworkStateSet.fromJSON(doc) : { networks: [] };
  }

  save(set: NetworkStateSet): Promise<void> {
    return this.write(JSON.stringify(NetworkStateSet.toJSON(set)) + '\n');
  }
}
