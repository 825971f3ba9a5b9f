/**
 * Registry authentication as Docker does it: try anonymously, read the `WWW-Authenticate`
 * challenge of a 401, then answer it with Basic credentials or a Bearer token fetched from the
 * token server the challenge names (with the credentials, if any, as Basic auth). Tokens are
 * cached per registry, scope and user until they expire.
 */
export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: string; // lower case: 'basic' | 'bearer'
  params: Record<string, string>;
}

/** Parses a `WWW-Authenticate` header (one or more challenges). */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const text = Array.isArray(header) ? header.join(', ') : header;
  const out: Challenge[] = [];
  const re = /([A-Za-z][A-Za-z0-9_-]*)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*)))?\s*,?\s*/gy;
  let cur: Challenge | undefined;
  let m: RegExpExecArray | null;
  re.lastIndex = 0;
  const s = text.trim();
  while (re.lastIndex < s.length && (m = re.exec(s)) !== null) {
    const [, key, quoted, bare] = m;
    if (quoted === undefined && bare === undefined) {
      // A token on its own starts a new challenge (the scheme); "Bearer realm=…" has the scheme
      // followed by a space and the first parameter, which the regex takes as key without '='.
      cur = { scheme: key.toLowerCase(), params: {} };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    cur.params[key.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare;
  }
  return out;
}

interface CachedAuth {
  header: string;
  expiresAt: number;
}

/** Authorization headers remembered per (registry, scope, user). */
export class AuthCache {
  private readonly entries = new Map<string, CachedAuth>();

  constructor(private readonly now: () => number = Date.now) {}

  private static key(host: string, scope: string, user: string | undefined) {
    return `${host}\0${scope}\0${user ?? ''}`;
  }

  get(host: string, scope: string, user: string | undefined): string | undefined {
    for (const k of [AuthCache.key(host, scope, user), AuthCache.key(host, '*basic*', user)]) {
      const e = this.entries.get(k);
      if (!e) continue;
      if (e.expiresAt <= this.now()) {
        this.entries.delete(k);
        continue;
      }
      return e.header;
    }
    return undefined;
  }

  setBasic(host: string, user: string, header: string): void {
    this.entries.set(AuthCache.key(host, '*basic*', user), { header, expiresAt: Number.POSITIVE_INFINITY });
  }

  setToken(host: string, scope: string, user: string | undefined, token: string, expiresInSec: number): void {
    // Renew a little early; tokens of 60 s (the minimum the spec allows) stay usable for 50.
    const ttl = Math.max(10, expiresInSec - 10) * 1000;
    this.entries.set(AuthCache.key(host, scope, user), { header: `Bearer ${token}`, expiresAt: this.now() + ttl });
  }

  forget(host: string, scope: string, user: string | undefined): void {
    this.entries.delete(AuthCache.key(host, scope, user));
    this.entries.delete(AuthCache.key(host, '*basic*', user));
  }
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}
