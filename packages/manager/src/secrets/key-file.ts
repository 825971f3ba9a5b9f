/**
 * The secrets key on a manager's disk: DIR/secrets.key (0600), beside the certificates and not in
 * the raft/ folder, so the Raft log and snapshots alone never open a secret. Made by `init`,
 * received by a joining manager in RaftMembership.Join's answer, read again on restart. With
 * autolock on, the file holds the key wrapped with the cluster's unlock key (unlock-key.ts): the
 * file alone then opens nothing, and a restarted manager waits for the unlock key.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { SECRETS_KEY_BYTES } from './sealed.js';
import { isWrapped, unwrapKey, wrapKey } from './unlock-key.js';

export const SECRETS_KEY_FILE = 'secrets.key';

/** What DIR/secrets.key holds: the key, or the key wrapped with an unlock key (locked). */
export type SecretsKeyFile = { locked: false; key: Buffer } | { locked: true; wrapped: Buffer };

export async function readSecretsKeyFile(stateDir: string): Promise<SecretsKeyFile | undefined> {
  const path = join(stateDir, SECRETS_KEY_FILE);
  let k: Buffer;
  try {
    k = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (isWrapped(k)) return { locked: true, wrapped: k };
  if (k.length !== SECRETS_KEY_BYTES) throw new SwarmError(ErrorCode.DATA_LOSS, `${path}: ${k.length} bytes, expected ${SECRETS_KEY_BYTES}`);
  return { locked: false, key: k };
}

/** The plain key (undefined: no file); a wrapped file needs `unlockKey`. */
export async function readSecretsKey(stateDir: string, unlockKey?: string): Promise<Buffer | undefined> {
  const f = await readSecretsKeyFile(stateDir);
  if (!f) return undefined;
  if (!f.locked) return f.key;
  if (!unlockKey) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${join(stateDir, SECRETS_KEY_FILE)} is locked (autolock): the unlock key is needed`);
  return unwrapKey(unlockKey, f.wrapped);
}

/** Writes the key, wrapped with `unlockKey` when given (autolock), atomically. */
export async function writeSecretsKey(stateDir: string, key: Buffer, unlockKey?: string): Promise<void> {
  const path = join(stateDir, SECRETS_KEY_FILE);
  await writeFile(`${path}.tmp`, unlockKey ? wrapKey(unlockKey, key) : key, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

export const newSecretsKey = (): Buffer => randomBytes(SECRETS_KEY_BYTES);
