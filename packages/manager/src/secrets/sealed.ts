/**
 * Sealing a secret's data for the replicated store: AES-256-GCM with the cluster's secrets key
 * (32 bytes, held by every manager outside the store: key-file.ts). What the store (and so the
 * Raft log and its snapshots) holds is `SWS1 | iv (12) | tag (16) | ciphertext`, never the plain
 * bytes. Pure but for the random IV, which is taken as an input.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';

const MAGIC = Buffer.from('SWS1');
export const SECRETS_KEY_BYTES = 32;

export function seal(key: Buffer, data: Uint8Array, iv: Buffer = randomBytes(12)): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  const body = Buffer.concat([c.update(data), c.final()]);
  return Buffer.concat([MAGIC, iv, c.getAuthTag(), body]);
}

export function open(key: Buffer, sealed: Uint8Array): Buffer {
  const b = Buffer.from(sealed);
  if (b.length < 32 || !b.subarray(0, 4).equals(MAGIC)) throw new SwarmError(ErrorCode.DATA_LOSS, 'secret data in the store is not sealed (no SWS1 header)');
  const d = createDecipheriv('aes-256-gcm', key, b.subarray(4, 16));
  d.setAuthTag(b.subarray(16, 32));
  try {
    return Buffer.concat([d.update(b.subarray(32)), d.final()]);
  } catch (err) {
    throw new SwarmError(ErrorCode.DATA_LOSS, 'secret data in the store does not open with this manager\'s secrets key', { cause: err });
  }
}

/** What the control API and the dispatcher use: the key, when this manager holds one. */
export interface SecretsKeyring {
  seal(data: Uint8Array): Buffer;
  open(sealed: Uint8Array): Buffer;
  /** The raw key, to hand to a manager that joins (RaftMembership.Join). */
  key(): Buffer | undefined;
}

export function keyringOf(key: Buffer | undefined): SecretsKeyring {
  const need = (): Buffer => {
    if (!key) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, 'this manager holds no secrets key (state made before secrets existed?): secrets cannot be sealed or opened here');
    return key;
  };
  return { seal: (d) => seal(need(), d), open: (s) => open(need(), s), key: () => key };
}
