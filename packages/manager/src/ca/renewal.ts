import { parseCertificate, type x509 } from './x509.js';

/** Renewal starts between these fractions of a certificate's lifetime (as SwarmKit does). */
export const RENEW_FROM = 0.5;
export const RENEW_TO = 0.8;

/**
 * When to renew a certificate: a random point between 50% and 80% of its lifetime, so a fleet
 * issued at once does not renew at once. Compute it once per certificate (rng is an input).
 */
export function renewalTime(cert: string | Uint8Array | x509.X509Certificate, rng: () => number): number {
  const c = parseCertificate(cert);
  const from = c.notBefore.getTime();
  const life = c.notAfter.getTime() - from;
  const r = Math.min(Math.max(rng(), 0), 1);
  return Math.floor(from + life * (RENEW_FROM + (RENEW_TO - RENEW_FROM) * r));
}

/** Whether to renew now: past the renewal time, or already expired. */
export function needsRenewal(cert: string | Uint8Array | x509.X509Certificate, now: number, rng: () => number): boolean {
  const c = parseCertificate(cert);
  return now >= c.notAfter.getTime() || now >= renewalTime(c, rng);
}
