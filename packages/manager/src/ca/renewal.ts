import { X509Certificate } from 'node:crypto';
import type { x509 } from './x509.js';

/** Renewal starts between these fractions of a certificate's lifetime (as SwarmKit does). */
export const RENEW_FROM = 0.5;
export const RENEW_TO = 0.8;

/**
 * A certificate's validity in ms. PEM or DER is read with node:crypto, so a node that only renews
 * (a worker) does not load @peculiar/x509 for it.
 */
function validity(cert: string | Uint8Array | x509.X509Certificate): { from: number; to: number } {
  if (typeof cert === 'string' || cert instanceof Uint8Array) {
    const c = new X509Certificate(cert);
    return { from: Date.parse(c.validFrom), to: Date.parse(c.validTo) };
  }
  return { from: cert.notBefore.getTime(), to: cert.notAfter.getTime() };
}

/**
 * When to renew a certificate: a random point between 50% and 80% of its lifetime, so a fleet
 * issued at once does not renew at once. Compute it once per certificate (rng is an input).
 */
export function renewalTime(cert: string | Uint8Array | x509.X509Certificate, rng: () => number): number {
  const { from, to } = validity(cert);
  const r = Math.min(Math.max(rng(), 0), 1);
  return Math.floor(from + (to - from) * (RENEW_FROM + (RENEW_TO - RENEW_FROM) * r));
}

/** Whether to renew now: past the renewal time, or already expired. */
export function needsRenewal(cert: string | Uint8Array | x509.X509Certificate, now: number, rng: () => number): boolean {
  return now >= validity(cert).to || now >= renewalTime(cert, rng);
}
