/**
 * The writes the control API acknowledged (swarmctl exited 0), and those whose outcome is unknown
 * (swarmctl failed: the write may or may not have been applied). Writes go one at a time, so per
 * service the last acknowledged value and the values tried after it are all a check must allow.
 */
import type { LocalCluster } from '../cluster/local-cluster.js';

interface Field<T> {
  acked?: T;
  /** Tried since the last acknowledgement, outcome unknown. */
  maybe: T[];
}

export interface ServiceRecord {
  name: string;
  /** The create was acknowledged (else it may or may not exist). */
  created: boolean;
  mode: 'replicated' | 'global';
  replicas: Field<number>;
  /** The value of env V (each update sets V=<n>). */
  version: Field<string>;
}

export interface WriteResult {
  ok: boolean;
  ms: number;
  message: string;
}

export class Ledger {
  readonly services = new Map<string, ServiceRecord>();
  readonly results: { op: string; ok: boolean; ms: number; message: string }[] = [];

  constructor(private readonly c: LocalCluster) {}

  private async write(op: string, args: string[]): Promise<WriteResult> {
    const started = Date.now();
    const r = await this.c.ctl(...args);
    const res = { ok: r.code === 0, ms: Date.now() - started, message: r.code === 0 ? '' : (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ') };
    this.results.push({ op, ...res });
    return res;
  }

  private static set<T>(f: Field<T>, value: T, ok: boolean): void {
    if (ok) {
      f.acked = value;
      f.maybe = [];
    } else f.maybe.push(value);
  }

  async create(name: string, mode: 'replicated' | 'global', replicas: number, image: string): Promise<WriteResult> {
    const rec: ServiceRecord = this.services.get(name) ?? { name, created: false, mode, replicas: { maybe: [] }, version: { maybe: [] } };
    this.services.set(name, rec);
    const args = ['service', 'create', '--detach', '--name', name, '--env', 'V=0', ...(mode === 'global' ? ['--mode', 'global'] : ['--replicas', String(replicas)]), image];
    const r = await this.write(`create ${name} (${mode === 'global' ? 'global' : `${replicas} replicas`})`, args);
    if (r.ok) rec.created = true;
    if (mode === 'replicated') Ledger.set(rec.replicas, replicas, r.ok);
    Ledger.set(rec.version, '0', r.ok);
    return r;
  }

  async scale(name: string, replicas: number): Promise<WriteResult> {
    const rec = this.services.get(name);
    if (!rec || rec.mode !== 'replicated') throw new Error(`ledger: ${name} is not a replicated service of this run`);
    const r = await this.write(`scale ${name}=${replicas}`, ['service', 'scale', '--detach', `${name}=${replicas}`]);
    Ledger.set(rec.replicas, replicas, r.ok);
    return r;
  }

  async update(name: string, version: string): Promise<WriteResult> {
    const rec = this.services.get(name);
    if (!rec) throw new Error(`ledger: no service ${name} in this run`);
    const r = await this.write(`update ${name} V=${version}`, ['service', 'update', '--detach', '--env-add', `V=${version}`, '--update-parallelism', '0', name]);
    Ledger.set(rec.version, version, r.ok);
    return r;
  }
}
