/**
 * The secrets key on a manager's disk: DIR/secrets.key (0600), beside the certificates and not in
 * the raft/ folder, so the Raft log and snapshots alone never open a secret. Made by `init`,
 * received by a joining manager in RaftMembership.Join's answer, read again on restart.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { SwarmError, ErrorCode } from '@swarmd/common';
import { SECRETS_KEY_BYTES } from './sealed.js';

export const SECRETS_KEY_FILE = 'secrets.key';

export async function readSecretsKey(stateDir: string): Promise<Buffer | undefined> {
  try {
    const k = await readFile(join(stateDir, SECRETS_KEY_FILE));
    if (k.length !== SECRETS_KEY_BYTES) throw new SwarmError(ErrorCode.DATA_LOSS, `${join(stateDir, SECRETS_KEY_FILE)}: ${k.length} bytes, expected ${SECRETS_KEY_BYTES}`);
    return k;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function writeSecretsKey(stateDir: string, key: Buffer): Promise<void> {
  const path = join(stateDir, SECRETS_KEY_FILE);
  await writeFile(`${path}.tmp`, key, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

export const newSecretsKey = (): Buffer => randomBytes(SECRETS_KEY_BYTES);
