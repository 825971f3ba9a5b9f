import { x509, EC_ALG, exportPrivateKeyPem, generateKeyPair } from './x509.js';

export interface KeyAndCsr {
  /** PKCS#8 PEM of the new private key: it never leaves the node. */
  keyPem: string;
  csrPem: string;
}

/**
 * For a joining (or renewing) node: a fresh ECDSA P-256 key and a CSR for it. The subject is
 * only a hint: the CA writes the node id, role and cluster into the certificate itself.
 */
export async function createKeyAndCsr(commonName = 'swarm-node'): Promise<KeyAndCsr> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: EC_ALG,
  });
  return { keyPem: await exportPrivateKeyPem(keys.privateKey), csrPem: csr.toString('pem') };
}
