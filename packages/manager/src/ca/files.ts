import { open, rename, mkdir, readFile, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ErrorCode, wrapError } from '@swarmd/common/errors';

/**
 * Writes a file so that readers see the old or the new content, never a part: a temporary file
 * in the same directory (created with `mode`, 0600 by default: keys and certificates), fsync,
 * rename over the target, fsync of the directory.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.chmod(mode); // the umask may have narrowed or widened the create mode
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw wrapError(ErrorCode.INTERNAL, `cannot write ${path}`, err);
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** The node's TLS material under its state dir (SwarmKit's file names). */
export const NODE_KEY_FILE = 'swarm-node.key';
export const NODE_CERT_FILE = 'swarm-node.crt';
export const ROOT_CA_FILE = 'swarm-root-ca.crt';

export interface NodeTlsFiles {
  keyPem: string;
  certPem: string;
  caCertPem: string;
}

/**
 * Writes root CA, key and certificate, each 0600 and atomically. Each file is whole, but a crash
 * between the key and the certificate leaves a pair that does not match: TLS then fails and the
 * node renews with its token (the key is written first so a half-done renewal never pairs an
 * old key with a certificate for a key that is gone).
 */
export async function saveNodeTls(dir: string, f: NodeTlsFiles): Promise<void> {
  await writeFileAtomic(join(dir, ROOT_CA_FILE), f.caCertPem);
  await writeFileAtomic(join(dir, NODE_KEY_FILE), f.keyPem);
  await writeFileAtomic(join(dir, NODE_CERT_FILE), f.certPem);
}

/** The node's TLS material, or undefined when the node has none yet. */
export async function loadNodeTls(dir: string): Promise<NodeTlsFiles | undefined> {
  try {
    const [keyPem, certPem, caCertPem] = await Promise.all(
      [NODE_KEY_FILE, NODE_CERT_FILE, ROOT_CA_FILE].map((f) => readFile(join(dir, f), 'utf8')),
    );
    return { keyPem: keyPem, certPem: certPem, caCertPem: caCertPem };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw wrapError(ErrorCode.INTERNAL, `cannot read the node's TLS files in ${dir}`, err);
  }
}
