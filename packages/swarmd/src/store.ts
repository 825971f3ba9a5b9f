import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describeError, invalidArgument } from '@swarmd/common/errors';
import type { ManagerStoreOptions } from '@swarmd/manager';
import type { SwarmdConfig } from './config.js';
import type { SwarmdCommand } from './daemon.js';

/** What swarmd.json keeps of the etcd flags, so `swarmd run` needs none (files by path, never their contents). */
export interface SavedEtcdFlags {
  endpoints?: string[];
  cacertFile?: string;
  certFile?: string;
  keyFile?: string;
  prefix?: string;
}

/** A PEM file named by a flag: its contents, or INVALID_ARGUMENT naming the flag, the file and why. */
async function pemFile(flag: string, file: string): Promise<Buffer> {
  let b: Buffer;
  try {
    b = await readFile(file);
  } catch (err) {
    throw invalidArgument(`${flag} ${file}: cannot read it (${describeError(err)})`, { cause: err });
  }
  if (!b.includes('-----BEGIN ')) throw invalidArgument(`${flag} ${file}: not a PEM file (no "-----BEGIN" line)`);
  return b;
}

/**
 * The store the manager is started with, from the flags (and, for `run`, what swarmd.json saved),
 * checked before anything is written: `--store etcd` needs `--etcd-endpoints` at init; `--etcd-*`
 * flags need `--store etcd` at init; every file must be readable PEM. Returns also what to save.
 */
export async function storeOptionsOf(command: SwarmdCommand, cfg: SwarmdConfig, saved: SavedEtcdFlags | undefined): Promise<{ options?: ManagerStoreOptions; save?: SavedEtcdFlags }> {
  const flags: SavedEtcdFlags = {
    ...(cfg.etcdEndpoints?.length ? { endpoints: cfg.etcdEndpoints } : {}),
    ...(cfg.etcdCacert ? { cacertFile: resolve(cfg.etcdCacert) } : {}),
    ...(cfg.etcdCert ? { certFile: resolve(cfg.etcdCert) } : {}),
    ...(cfg.etcdKey ? { keyFile: resolve(cfg.etcdKey) } : {}),
    ...(cfg.etcdPrefix ? { prefix: cfg.etcdPrefix } : {}),
  };
  const given = Object.keys(flags);
  if (cfg.store === 'raft') {
    if (given.length) throw invalidArgument(`--${given.map(flagOf).join(', --')}: only with --store etcd`);
    return { options: { kind: 'raft' } };
  }
  if (command === 'init' && cfg.store !== 'etcd') {
    if (given.length) throw invalidArgument(`--${given.map(flagOf).join(', --')}: only with --store etcd`);
    return {};
  }
  if (command === 'init' && !flags.endpoints) throw invalidArgument('--store etcd: --etcd-endpoints is required (etcd client URLs, comma-separated)');
  if (command === 'join' && flags.prefix) throw invalidArgument('--etcd-prefix: a joining manager takes the prefix from the cluster');
  const f = command === 'run' ? { ...saved, ...flags } : flags;
  if (command !== 'init' && cfg.store !== 'etcd' && !Object.keys(f).length) return {};
  if ((f.certFile === undefined) !== (f.keyFile === undefined)) throw invalidArgument('--etcd-cert and --etcd-key go together (a client certificate and its key)');
  const connection = {
    endpoints: f.endpoints ?? [],
    ...(f.cacertFile ? { cacert: await pemFile('--etcd-cacert', f.cacertFile) } : {}),
    ...(f.certFile ? { cert: await pemFile('--etcd-cert', f.certFile) } : {}),
    ...(f.keyFile ? { key: await pemFile('--etcd-key', f.keyFile) } : {}),
  };
  return { options: { kind: 'etcd', connection, ...(f.prefix ? { prefix: f.prefix } : {}) }, save: f };
}

function flagOf(k: string): string {
  return { endpoints: 'etcd-endpoints', cacertFile: 'etcd-cacert', certFile: 'etcd-cert', keyFile: 'etcd-key', prefix: 'etcd-prefix' }[k] ?? k;
}
