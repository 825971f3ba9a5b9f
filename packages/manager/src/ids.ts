import { randomBytes as nodeRandomBytes } from 'node:crypto';

/**
 * Object ids as SwarmKit makes them: 128 random bits as 25 base36 digits. The leader makes them
 * (in a controller or the control API) and they travel inside the transaction; apply never does.
 */
export function newId(randomBytes: (n: number) => Uint8Array = (n) => nodeRandomBytes(n)): string {
  const hex = Buffer.from(randomBytes(16)).toString('hex');
  return BigInt('0x' + hex).toString(36).padStart(25, '0');
}
