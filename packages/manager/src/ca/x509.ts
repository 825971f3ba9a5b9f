// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata
// polyfill loaded first. Import x509 only through this module.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, randomBytes as nodeRandomBytes, createHash } from 'node:crypto';

// Node's WebCrypto is the DOM Crypto x509 types against (not loaded here), hence the cast.
x509.cryptoProvider.set(webcrypto as never);

/** WebCrypto types (the DOM lib is not loaded: they come from node:crypto). */
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

export { x509 };
export const subtle = webcrypto.subtle;

/** A source of random bytes (injected where a decision or a secret depends on it). */
export type RandomBytes = (n: number) => Uint8Array;
export const defaultRandomBytes: RandomBytes = (n) => new Uint8Array(nodeRandomBytes(n));

/** ECDSA P-256 with SHA-256: every key and signature of the cluster. */
export const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return await subtle.generateKey(EC_ALG, true, ['sign', 'verify']);
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const [der] = x509.PemConverter.decode(pem);
  if (!der) throw new Error('no PEM block in the private key');
  return subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

export function parseCertificate(cert: string | Uint8Array | x509.X509Certificate): x509.X509Certificate {
  if (cert instanceof x509.X509Certificate) return cert;
  return new x509.X509Certificate(typeof cert === 'string' ? cert : new Uint8Array(cert));
}

/** sha256 of the certificate's DER, as a base36 number padded to 50 digits (Swarm's token form). */
export function caDigest(cert: string | Uint8Array | x509.X509Certificate): string {
  const der = Buffer.from(parseCertificate(cert).rawData);
  return toBase36(createHash('sha256').update(der).digest(), 50);
}

export function toBase36(bytes: Uint8Array, width: number): string {
  const n = bytes.length === 0 ? 0n : BigInt('0x' + Buffer.from(bytes).toString('hex'));
  return n.toString(36).padStart(width, '0');
}

/** A positive, non-zero certificate serial number (hex) from 16 random bytes. */
export function serialNumber(randomBytes: RandomBytes): string {
  const b = randomBytes(16);
  b[0] = (b[0] & 0x7f) | 0x01;
  return Buffer.from(b).toString('hex');
}
