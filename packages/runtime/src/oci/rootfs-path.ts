/**
 * Resolves a path inside a container's root filesystem the way the container would see it:
 * symlinks (absolute or relative) are followed against the rootfs, never the host, so an image
 * whose /etc/passwd points at the host's cannot make us read host files.
 */
import { lstat, readlink, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument } from '@swarmd/common/errors';

const MAX_LINKS = 40;

/** The host path of `path` as seen from inside `rootfs` (the last component need not exist). */
export async function resolveInRoot(rootfs: string, path: string): Promise<string> {
  let pending = path.split('/').filter(Boolean);
  const done: string[] = [];
  let links = 0;
  while (pending.length) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(rootfs, ...done, part);
    const st = await lstat(host).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++links > MAX_LINKS) throw invalidArgument(`${path}: too many levels of symbolic links in the image`);
      const target = await readlink(host);
      const rest = target.split('/').filter(Boolean);
      if (target.startsWith('/')) done.length = 0;
      pending = [...rest, ...pending];
      continue;
    }
    done.push(part);
  }
  return join(rootfs, ...done);
}

/** Reads a file of the rootfs, or undefined when it does not exist. */
export async function readFileInRoot(rootfs: string, path: string): Promise<string | undefined> {
  try {
    return await readFile(await resolveInRoot(rootfs, path), 'utf8');
  } catch {
    return undefined;
  }
}
