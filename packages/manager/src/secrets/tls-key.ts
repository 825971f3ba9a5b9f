/**
 * Autolock of a manager's TLS key (as SwarmKit's manager, which encrypts its TLS key with the
 * KEK): with autolock on, DIR/certs/node-key.pem is a standard encrypted PKCS#8 PEM
 * ("BEGIN ENCRYPTED PRIVATE KEY", PBES2 with AES-256-CBC), its passphrase derived from the
 * unlock key by HKDF-SHA256 under its own label, so the secrets key's wrapping and this one never
 * share a key. openssl reads it (`openssl pkey -in node-key.pem -passin pass:$(tlsKeyPassphrase)`).
 * A stopped manager's disk then gives neither its secrets nor its identity without the unlock key.
 * Workers' keys are never encrypted (as Docker).
 */
import { createPrivateKey, hkdfSync } from 'node:crypto';
import { invalidArgument } from '@swarmd/common/errors';
import { parseUnlockKey } from './unlock-key.js';

const INFO = Buffer.from('swarmd autolock: TLS key passphrase');
const ENCRYPTED_HEADER = '-----BEGIN ENCRYPTED PRIVATE KEY-----';

/** Whether a PEM private key is encrypted (the node is locked until its unlock key arrives). */
export function isEncryptedKeyPem(pem: string): boolean {
  return pem.includes(ENCRYPTED_HEADER);
}

/** The PEM passphrase of the TLS key under this unlock key (hex of 32 HKDF bytes). */
export function tlsKeyPassphrase(unlockKey: string): string {
  return Buffer.from(hkdfSync('sha256', parseUnlockKey(unlockKey), Buffer.alloc(0), INFO, 32)).toString('hex');
}

/** The private key as an encrypted PKCS#8 PEM under the unlock key. */
export function encryptKeyPem(keyPem: string, unlockKey: string): string {
  const passphrase = tlsKeyPassphrase(unlockKey);
  return createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }).toString();
}

/** The plain PKCS#8 PEM out of an encrypted one; a wrong unlock key is refused (INVALID_ARGUMENT) and nothing changes. */
export function decryptKeyPem(encryptedPem: string, unlockKey: string): string {
  const passphrase = tlsKeyPassphrase(unlockKey); // a malformed key is refused with its own reason
  try {
    return createPrivateKey({ key: encryptedPem, format: 'pem', passphrase }).export({ type: 'pkcs8', format: 'pem' }).toString();
  } catch (err) {
    throw invalidArgument('the unlock key is not the right one: it does not open this manager\'s TLS key (the node stays locked)', { cause: err });
  }
}
