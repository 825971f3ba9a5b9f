/**
 * Throwaway certificates for tests, made with Debian's `openssl` (P-256 keys, one day of life): a
 * CA, then server certificates (for IP addresses) and client certificates signed by it. Used to
 * run etcd with TLS and client-certificate authentication.
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A certificate and its key, as files and as contents. */
export interface TestCert {
  certFile: string;
  keyFile: string;
  certPem: Buffer;
  keyPem: Buffer;
}

export interface TestCa extends TestCert {
  /** A certificate signed by this CA: `server` gets serverAuth and the IP addresses as SANs, otherwise clientAuth only. */
  issue(name: string, opts?: { server?: string[] }): Promise<TestCert>;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    const e = err as { stderr?: string };
    throw new Error(`testkit: openssl ${args[0]} failed: ${e.stderr ?? String(err)}`, { cause: err });
  }
}

async function loaded(certFile: string, keyFile: string): Promise<TestCert> {
  return { certFile, keyFile, certPem: await readFile(certFile), keyPem: await readFile(keyFile) };
}

const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A new CA under `dir` (created if missing), its files named NAME.pem and NAME-key.pem. */
export async function createTestCa(dir: string, name = 'ca'): Promise<TestCa> {
  await mkdir(dir, { recursive: true });
  const caCert = join(dir, `${name}.pem`);
  const caKey = join(dir, `${name}-key.pem`);
  await openssl(['req', '-x509', ...newKey, '-keyout', caKey, '-out', caCert, '-days', '1', '-subj', `/CN=swarmd-test-${name}`]);
  const ca = await loaded(caCert, caKey);
  let serial = 0;
  return {
    ...ca,
    async issue(certName, opts = {}) {
      const cert = join(dir, `${certName}.pem`);
      const key = join(dir, `${certName}-key.pem`);
      const csr = join(dir, `${certName}.csr`);
      const ext = join(dir, `${certName}.ext`);
      await openssl(['req', ...newKey, '-keyout', key, '-out', csr, '-subj', `/CN=${certName}`]);
      const lines = opts.server
        ? [`subjectAltName=${opts.server.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',')}`, 'extendedKeyUsage=serverAuth,clientAuth']
        : ['extendedKeyUsage=clientAuth'];
      await writeFile(ext, lines.join('\n') + '\n');
      serial += 1;
      await openssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(Date.now() * 1000 + serial), '-out', cert, '-days', '1', '-extfile', ext]);
      return loaded(cert, key);
    },
  };
}
