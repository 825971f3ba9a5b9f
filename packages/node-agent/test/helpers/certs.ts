// Test certificates shaped like the cluster CA's (CN = node id, OU = role, O = cluster id, the
// role as a DNS SAN), made with openssl so the agent's tests need no manager code.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@swarmd/common';

export interface Pems {
  keyPem: string;
  certPem: string;
}
export interface TestPki {
  caPem: string;
  issue(nodeId: string, role: 'swarm-worker' | 'swarm-manager' | 'swarm-admin'): Promise<Pems>;
  destroy(): Promise<void>;
}

export async function createPki(clusterId = 'testcluster'): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'agent-pki-'));
  const p = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', `/O=${clusterId}/CN=swarm-ca`]);
  const caPem = await readFile(p('ca.pem'), 'utf8');
  let n = 0;
  return {
    caPem,
    async issue(nodeId, role) {
      const i = n++;
      await writeFile(p(`ext${i}`), `subjectAltName=DNS:${role},DNS:${nodeId},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`);
      await run('openssl', ['req', '-new', ...ec, '-keyout', p(`k${i}`), '-out', p(`csr${i}`), '-subj', `/O=${clusterId}/OU=${role}/CN=${nodeId}`]);
      await run('openssl', ['x509', '-req', '-in', p(`csr${i}`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', p(`ext${i}`), '-out', p(`c${i}`)]);
      return { keyPem: await readFile(p(`k${i}`), 'utf8'), certPem: await readFile(p(`c${i}`), 'utf8') };
    },
    destroy: () => rm(dir, { recursive: true, force: true }),
  };
}
