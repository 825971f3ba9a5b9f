import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SwarmError, ErrorCode, describeError, failedPrecondition, invalidArgument } from '@swarmd/common/errors';
import type { StoreBackend } from '@swarmd/proto';
import type { Etcd3 } from 'etcd3';
import { connectEtcd, type EtcdConnection } from '../replication/etcd-log.js';
import type { RaftMemberFile } from '../raft/raft-dir.js';

/**
 * Where a manager keeps the cluster's store: the built-in Raft (the default), or an external etcd
 * (`swarmd init --store etcd --etcd-endpoints ...`). A joining manager takes the backend from the
 * join answer; `etcd` there only brings its own client certificate (and may name other endpoints).
 */
export type ManagerStoreOptions =
  | { kind: 'raft' }
  | {
      kind: 'etcd';
      /** At init: the endpoints (required). At join: empty to use those of the join answer. */
      connection: EtcdConnection;
      /** Every key of the cluster under it (default /swarmd/CLUSTER_ID). */
      prefix?: string;
      /** Seconds of the controllers' leader lease (default 5). */
      leaseTtl?: number;
    };

/** DIR/etcd-ca.pem: the CA of etcd's certificate this manager was given (at init or in the join answer). */
export const ETCD_CA_FILE = 'etcd-ca.pem';

export async function readEtcdCa(stateDir: string): Promise<Buffer | undefined> {
  try {
    return await readFile(join(stateDir, ETCD_CA_FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SwarmError(ErrorCode.DATA_LOSS, `cannot read ${join(stateDir, ETCD_CA_FILE)}: ${describeError(err)}`, { cause: err });
  }
}

/** A prefix as etcd keys use it: starts with one `/`, no trailing `/`, no spaces. */
export function checkEtcdPrefix(p: string): string {
  const v = p.replace(/\/+$/, '');
  if (!/^\/[^\s]+$/.test(v)) throw invalidArgument(`--etcd-prefix ${JSON.stringify(p)}: expected a key prefix such as /swarmd/prod (starting with /, no spaces)`);
  return v;
}

/** The backend as the cluster object and the join answer carry it. */
export function storeBackendOf(o: ManagerStoreOptions | undefined, prefix: string): StoreBackend {
  if (o?.kind !== 'etcd') return { kind: 'raft', endpoints: [], prefix: '', caCert: Buffer.alloc(0) };
  return { kind: 'etcd', endpoints: o.connection.endpoints, prefix, caCert: o.connection.cacert ?? Buffer.alloc(0) };
}

/** How a backend reads in messages: `raft`, or `etcd (URL,URL, prefix P)`. */
export function describeBackend(kind: string | undefined, prefix?: string): string {
  return kind === 'etcd' ? `etcd (prefix ${prefix ?? '?'})` : 'the built-in raft';
}

/**
 * A manager restarted with another backend than the one its state dir was made with refuses:
 * a cluster is never switched in place (README: backup and restore).
 */
export function assertSameBackend(member: RaftMemberFile, stateDir: string, want: ManagerStoreOptions | undefined): void {
  if (!want) return;
  const have = member.store ?? 'raft';
  const wantPrefix = want.kind === 'etcd' ? want.prefix : undefined;
  if (have !== want.kind || (want.kind === 'etcd' && wantPrefix !== undefined && wantPrefix !== member.prefix)) {
    throw failedPrecondition(
      `${stateDir} holds a manager of cluster ${member.clusterId} whose store is ${describeBackend(have, member.prefix)}, not ${describeBackend(want.kind, wantPrefix)}: a cluster cannot be switched between store backends in place (start it with the backend it was created with; to move, back it up and restore it as a new cluster: see the README)`,
    );
  }
}

/** An etcd client after a first read, so a wrong endpoint or certificate fails here with a clear error. */
export async function openEtcd(c: EtcdConnection, prefix: string, what: string): Promise<Etcd3> {
  for (const e of c.endpoints) {
    let u: URL;
    try {
      u = new URL(e);
    } catch (err) {
      throw invalidArgument(`--etcd-endpoints: ${JSON.stringify(e)} is not a URL (expected http://HOST:PORT or https://HOST:PORT)`, { cause: err });
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.port || u.pathname !== '/') {
      throw invalidArgument(`--etcd-endpoints: ${JSON.stringify(e)} is not an etcd client URL (expected http://HOST:PORT or https://HOST:PORT)`);
    }
    if (u.protocol === 'https:' && !c.cacert) throw invalidArgument(`--etcd-endpoints: ${e} is https: give the CA of etcd's certificate with --etcd-cacert`);
  }
  const client = connectEtcd({ ...c, callTimeoutMs: c.callTimeoutMs ?? 5_000 });
  try {
    await client.namespace(`${prefix}/`).getAll().count();
    return client;
  } catch (err) {
    client.close();
    const tls = etcdTlsProblem(err, c, what);
    const code = tls ? ErrorCode.FAILED_PRECONDITION : ErrorCode.UNAVAILABLE;
    throw new SwarmError(code, `${what}: cannot read etcd at ${c.endpoints.join(',')}${tls ? `: TLS: ${tls}` : ''} (${describeError(err)}); nothing was changed`, { cause: err });
  }
}

/**
 * What a failed TLS handshake with etcd means, in terms of the flags that fix it (undefined when
 * the error is not a TLS one): etcd refused the client certificate or got none, etcd's certificate
 * is not signed by the CA given, or etcd does not serve TLS on that port.
 */
export function etcdTlsProblem(err: unknown, c: EtcdConnection, what = 'init'): string | undefined {
  const m = describeError(err);
  const caFrom = what === 'join' && !c.cacert ? "the CA of the join answer" : '--etcd-cacert';
  if (/alert bad certificate|certificate required|alert unknown ca|alert certificate unknown|alert access denied/i.test(m)) {
    return c.cert
      ? "etcd refused this manager's client certificate (--etcd-cert): it is not signed by a CA etcd trusts (etcd's --trusted-ca-file)"
      : 'etcd requires a client certificate (--client-cert-auth) and this manager has none: give --etcd-cert and --etcd-key';
  }
  if (/unable to verify|self[- ]signed certificate|unable to get (local )?issuer|certificate has expired|not yet valid|altnames|ERR_TLS_CERT/i.test(m)) {
    return `etcd's server certificate is not trusted: it is not signed by the CA given (${caFrom}) or does not name this address`;
  }
  if (/before secure TLS connection|wrong version number|packet length too long/i.test(m)) {
    return 'etcd does not serve TLS on that port: use http:// endpoints there (or serve etcd with TLS)';
  }
  return undefined;
}

/** Init: etcd answers and nothing lives under the prefix yet (another cluster's keys would mix). */
export async function openEtcdForInit(c: EtcdConnection, prefix: string): Promise<Etcd3> {
  const client = await openEtcd(c, prefix, 'init');
  const n = await client.namespace(`${prefix}/`).getAll().count();
  if (n > 0) {
    client.close();
    throw new SwarmError(ErrorCode.ALREADY_EXISTS, `init: etcd already holds ${n} keys under ${prefix}/ (another cluster?): choose another --etcd-prefix; nothing was changed`);
  }
  return client;
}
