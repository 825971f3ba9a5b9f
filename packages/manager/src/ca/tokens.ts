import { timingSafeEqual } from 'node:crypto';
import { NodeRole, type JoinTokens } from '@swarmd/proto';
import { SwarmError, ErrorCode, invalidArgument } from '@swarmd/common/errors';
import { type RandomBytes, caDigest, defaultRandomBytes, toBase36 } from './x509.js';

/**
 * Join tokens, in Swarm's shape: `SWMTKN-1-<ca digest>-<secret>`.
 *   ca digest: sha256 of the root CA certificate (DER) as base36, 50 digits. A joining node pins
 *              the CA it is shown by it (caDigestMatches) before trusting anything the manager says.
 *   secret:    128 random bits as base36, 25 digits; one for workers, one for managers.
 */
export const TOKEN_PREFIX = 'SWMTKN';
export const TOKEN_VERSION = '1';
const DIGEST_LEN = 50;
const SECRET_LEN = 25;
const BASE36 = /^[0-9a-z]+$/;

export interface ParsedJoinToken {
  version: string;
  caDigest: string;
  secret: string;
}

const malformed = (why: string) => invalidArgument(`invalid join token: ${why} (expected ${TOKEN_PREFIX}-${TOKEN_VERSION}-<ca digest>-<secret>)`);

/** Parses a token's shape; INVALID_ARGUMENT naming what is wrong. Says nothing about validity. */
export function parseJoinToken(token: string): ParsedJoinToken {
  const t = token.trim();
  if (!t.startsWith(`${TOKEN_PREFIX}-`)) throw malformed(`it does not start with "${TOKEN_PREFIX}-"`);
  const parts = t.split('-');
  if (parts.length !== 4) throw malformed(`it has ${parts.length} dash-separated parts, not 4`);
  const [, version, digest, secret] = parts as [string, string, string, string];
  if (version !== TOKEN_VERSION) throw malformed(`unsupported version "${version}"`);
  if (digest.length !== DIGEST_LEN || !BASE36.test(digest)) throw malformed(`the CA digest must be ${DIGEST_LEN} base36 digits`);
  if (secret.length !== SECRET_LEN || !BASE36.test(secret)) throw malformed(`the secret must be ${SECRET_LEN} base36 digits`);
  return { version, caDigest: digest, secret };
}

export function formatJoinToken(caDigestB36: string, secret: string): string {
  return `${TOKEN_PREFIX}-${TOKEN_VERSION}-${caDigestB36}-${secret}`;
}

export function newJoinToken(caDigestB36: string, randomBytes: RandomBytes = defaultRandomBytes): string {
  return formatJoinToken(caDigestB36, toBase36(randomBytes(16), SECRET_LEN));
}

/** Fresh worker and manager tokens for a CA. */
export function generateJoinTokens(caDigestB36: string, randomBytes: RandomBytes = defaultRandomBytes): JoinTokens {
  return { worker: newJoinToken(caDigestB36, randomBytes), manager: newJoinToken(caDigestB36, randomBytes) };
}

/** Rotation: new secrets for the roles asked (the old token stops working at once). */
export function rotateJoinTokens(
  current: JoinTokens,
  caDigestB36: string,
  which: { worker?: boolean; manager?: boolean },
  randomBytes: RandomBytes = defaultRandomBytes,
): JoinTokens {
  return {
    worker: which.worker ? newJoinToken(caDigestB36, randomBytes) : current.worker,
    manager: which.manager ? newJoinToken(caDigestB36, randomBytes) : current.manager,
  };
}

/** Whether a token pins this CA certificate (a joining node checks this before trusting the CA). */
export function caDigestMatches(token: string, caCertPem: string): boolean {
  return parseJoinToken(token).caDigest === caDigest(caCertPem);
}

/**
 * The role a token admits, checked against the cluster's current tokens. Malformed tokens are
 * INVALID_ARGUMENT; a token for another CA or with a wrong (or rotated) secret is UNAUTHENTICATED.
 */
export function validateJoinToken(token: string, tokens: JoinTokens, caDigestB36: string): NodeRole {
  const p = parseJoinToken(token);
  if (p.caDigest !== caDigestB36) {
    throw new SwarmError(ErrorCode.UNAUTHENTICATED, 'join token refused: it was issued for a different cluster CA (CA digest mismatch)');
  }
  const given = formatJoinToken(p.caDigest, p.secret);
  if (sameString(given, tokens.manager)) return NodeRole.NODE_ROLE_MANAGER;
  if (sameString(given, tokens.worker)) return NodeRole.NODE_ROLE_WORKER;
  throw new SwarmError(ErrorCode.UNAUTHENTICATED, 'join token refused: the secret is wrong or the token was rotated');
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
