import { randomFillSync } from 'node:crypto';

/** Random bytes drawn 4 KiB at a time: one system call per 256 ids instead of one per id. */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

function pooledRandomBytes(n: number): Uint8Array {
  if (n > pool.length) return randomFillSync(Buffer.alloc(n));
  if (poolAt + n > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const out = Buffer.from(pool.subarray(poolAt, poolAt + n));
  poolAt += n;
  return out;
}

/**
 * Object ids as SwarmKit makes them: 128 random bits as 25 base36 digits. The leader makes them
 * (in a controller or the control API) and they travel inside the transaction; apply never does.
 */
export function newId(randomBytes: (n: number) => Uint8Array = pooledRandomBytes): string {
  const hex = Buffer.from(randomBytes(16)).toString('hex');
  return BigInt('0x' + hex).toString(36).padStart(25, '0');
}
