/** Small durable-file helpers shared by the WAL and the snapshot files. */
import { open } from 'node:fs/promises';

/** fsync a directory so that a create, rename or unlink in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}
