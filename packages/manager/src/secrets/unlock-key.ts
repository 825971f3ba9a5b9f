/**
 * Autolock (after SwarmKit's manager/encryption: a KEK that protects the DEK on disk). The
 * secrets key (the DEK that seals secrets in the store) is kept on each manager's disk either
 * plain or, with autolock on, wrapped with a key derived from the cluster's unlock key (the KEK):
 *
 *   SWL1 | salt (16) | iv (12) | tag (16) | AES-256-GCM(secrets key)
 *
 * The KEK is HKDF-SHA256 of the unlock key's 32 random bytes with the salt: the unlock key is
 * full-entropy, so no slow password hash is needed; GCM's tag tells a wrong key from a right one.
 * The unlock key reads as Docker's: `SWMKEY-1-` and the base64 of its bytes. Pure but for the
 * random salt, IV and key, which are inputs with defaults.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { SwarmError, ErrorCode, invalidArgument } from '@swarmd/common/errors';

const PREFIX = 'SWMKEY-1-';
const KEY_BYTES = 32;
export const WRAPPED_MAGIC = Buffer.from('SWL1');
const HEADER = WRAPPED_MAGIC.length + 16 + 12 + 16;
const INFO = Buffer.from('swarmd autolock: secrets key wrapping');

/** A new unlock key, as printed to the user. */
export function newUnlockKey(bytes: Buffer = randomBytes(KEY_BYTES)): string {
  return PREFIX + bytes.toString('base64');
}

/** The bytes of an unlock key the user typed (surrounding blanks ignored); refused with the reason. */
export function parseUnlockKey(text: string): Buffer {
  const t = text.trim();
  if (!t) throw invalidArgument('the unlock key is empty (it reads SWMKEY-1-...)');
  if (!t.startsWith(PREFIX)) throw invalidArgument(`the unlock key does not start with ${PREFIX} (give the key \`swarmctl swarm unlock-key\` printed)`);
  const body = t.slice(PREFIX.length);
  const bytes = Buffer.from(body, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || bytes.length !== KEY_BYTES) {
    throw invalidArgument(`the unlock key is malformed: after ${PREFIX} it needs the base64 of ${KEY_BYTES} bytes`);
  }
  return bytes;
}

function kek(unlockKey: string, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', parseUnlockKey(unlockKey), salt, INFO, 32));
}

export function isWrapped(file: Buffer): boolean {
  return file.length > WRAPPED_MAGIC.length && file.subarray(0, WRAPPED_MAGIC.length).equals(WRAPPED_MAGIC);
}

/** The secrets key wrapped with the unlock key (the file's bytes). */
export function wrapKey(unlockKey: string, key: Buffer, salt: Buffer = randomBytes(16), iv: Buffer = randomBytes(12)): Buffer {
  const c = createCipheriv('aes-256-gcm', kek(unlockKey, salt), iv);
  const body = Buffer.concat([c.update(key), c.final()]);
  return Buffer.concat([WRAPPED_MAGIC, salt, iv, c.getAuthTag(), body]);
}

/** The secrets key out of a wrapped file; a wrong unlock key is refused (INVALID_ARGUMENT) and nothing changes. */
export function unwrapKey(unlockKey: string, wrapped: Buffer): Buffer {
  if (!isWrapped(wrapped) || wrapped.length < HEADER + 1) throw new SwarmError(ErrorCode.DATA_LOSS, 'the wrapped secrets key is malformed (no SWL1 header or too short)');
  let o = WRAPPED_MAGIC.length;
  const salt = wrapped.subarray(o, (o += 16));
  const iv = wrapped.subarray(o, (o += 12));
  const tag = wrapped.subarray(o, (o += 16));
  const d = createDecipheriv('aes-256-gcm', kek(unlockKey, salt), iv);
  d.setAuthTag(tag);
  try {
    return Buffer.concat([d.update(wrapped.subarray(o)), d.final()]);
  } catch (err) {
    throw invalidArgument('the unlock key is not the right one: it does not open this manager\'s secrets key (the manager stays locked)', { cause: err });
  }
}
