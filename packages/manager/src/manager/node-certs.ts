import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, wrapError } from '@swarmd/common/errors';
import { writeFileAtomic } from '../ca/files.js';
import type { TlsMaterial } from '../ca/grpc-auth.js';
import { encryptKeyPem } from '../secrets/tls-key.js';

/** docs/cluster.md: DIR/certs/ca.pem, node.pem, node-key.pem (all 0600, written atomically). */
export const CERTS_DIR = 'certs';
export const CA_PEM = 'ca.pem';
export const NODE_PEM = 'node.pem';
export const NODE_KEY_PEM = 'node-key.pem';

export function certsDirOf(stateDir: string): string {
  return join(stateDir, CERTS_DIR);
}

/**
 * Saves the node's TLS material under DIR/certs (key first: see saveNodeTls in ca/files.ts); with
 * `unlockKey` (a manager under autolock) the key is written encrypted with it (secrets/tls-key.ts).
 */
export async function saveStateDirCerts(stateDir: string, tls: TlsMaterial, unlockKey?: string): Promise<void> {
  const d = certsDirOf(stateDir);
  await writeFileAtomic(join(d, CA_PEM), tls.caCertPem);
  await saveNodeKey(stateDir, tls.keyPem, unlockKey);
  await writeFileAtomic(join(d, NODE_PEM), tls.certPem);
}

/** Writes DIR/certs/node-key.pem: plain, or encrypted with `unlockKey` (autolock). */
export async function saveNodeKey(stateDir: string, keyPem: string, unlockKey?: string): Promise<void> {
  await writeFileAtomic(join(certsDirOf(stateDir), NODE_KEY_PEM), unlockKey ? encryptKeyPem(keyPem, unlockKey) : keyPem);
}

/** The node's TLS material from DIR/certs, or undefined when it has none yet. */
export async function loadStateDirCerts(stateDir: string): Promise<TlsMaterial | undefined> {
  const d = certsDirOf(stateDir);
  try {
    const [caCertPem, certPem, keyPem] = await Promise.all([CA_PEM, NODE_PEM, NODE_KEY_PEM].map((f) => readFile(join(d, f), 'utf8')));
    return { caCertPem, certPem, keyPem };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw wrapError(ErrorCode.INTERNAL, `cannot read the node's certificates in ${d}`, err);
  }
}
