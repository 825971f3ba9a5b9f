/**
 * Image references as Docker writes them: `[registry[:port]/]path/name[:tag][@digest]`, after
 * distribution's reference grammar. `busybox` means `docker.io/library/busybox:latest`.
 */
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { isDigest } from './digest.js';

export const DEFAULT_DOMAIN = 'docker.io';
export const DEFAULT_TAG = 'latest';
/** Where the API of docker.io really is. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const DOCKER_IO_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

export interface Reference {
  /** Registry host[:port], e.g. `docker.io`, `127.0.0.1:5000`. */
  readonly domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  readonly path: string;
  readonly tag?: string;
  /** `sha256:<64 hex>` when pinned by digest. */
  readonly digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/;
const NAME_MAX = 255;

function bad(ref: string, why: string): SwarmError {
  return new SwarmError(ErrorCode.INVALID_ARGUMENT, `invalid reference ${JSON.stringify(ref)}: ${why}`, { details: { reference: ref } });
}

function validDomain(d: string): boolean {
  let host = d;
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(d);
  if (v6) return v6[2] === undefined || validPort(v6[2]);
  const colon = d.lastIndexOf(':');
  if (colon >= 0) {
    if (!validPort(d.slice(colon + 1))) return false;
    host = d.slice(0, colon);
  }
  return host.split('.').every((l) => DOMAIN_LABEL.test(l));
}

function validPort(p: string): boolean {
  return /^\d{1,5}$/.test(p) && Number(p) <= 65535;
}

/** Checks a `sha256:<hex>` digest (the only algorithm we store). */
export function isSha256Digest(d: string): boolean {
  return isDigest(d);
}

/** Parses and normalizes a reference; throws INVALID_ARGUMENT naming the bad part. */
export function parseReference(ref: string): Reference {
  if (ref.length === 0) throw bad(ref, 'empty reference');
  if (ref !== ref.trim()) throw bad(ref, 'leading or trailing spaces');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(ref, `invalid digest ${JSON.stringify(digest)}`);
    if (digest.startsWith('sha256:') && !isDigest(digest)) throw bad(ref, `invalid sha256 digest ${JSON.stringify(digest)} (want 64 lowercase hex digits)`);
    if (!digest.startsWith('sha256:')) throw bad(ref, `unsupported digest algorithm in ${JSON.stringify(digest)}`);
  }
  // A tag is after the last ':' that follows the last '/' (a ':' before it is a port).
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(ref, `invalid tag ${JSON.stringify(tag)}`);
  }
  if (rest.length === 0) throw bad(ref, 'missing repository name');
  // The first component is a registry when it looks like a host: has '.' or ':', is localhost,
  // or has upper case letters (which repository names never have).
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      path = rest.slice(slash + 1);
      if (!validDomain(domain)) throw bad(ref, `invalid registry host ${JSON.stringify(domain)}`);
    }
  }
  if (DOCKER_IO_ALIASES.has(domain)) domain = DEFAULT_DOMAIN;
  if (path.length === 0) throw bad(ref, 'missing repository name');
  if (path.toLowerCase() !== path) throw bad(ref, 'repository name must be lowercase');
  for (const c of path.split('/')) {
    if (c.length === 0) throw bad(ref, 'empty path component in repository name');
    if (!COMPONENT.test(c)) throw bad(ref, `invalid repository name component ${JSON.stringify(c)}`);
  }
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if (domain.length + 1 + path.length > NAME_MAX) throw bad(ref, `repository name longer than ${NAME_MAX} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return { domain, path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** `domain/path` */
export function repositoryName(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

/** The canonical string: `docker.io/library/busybox:latest`, `host:5000/a/b@sha256:…`. */
export function formatReference(r: Reference): string {
  return `${repositoryName(r)}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** The short form Docker prints: `busybox:latest`, `me/app:1`, `host:5000/x:y`. */
export function familiarReference(r: Reference): string {
  let name = repositoryName(r);
  if (r.domain === DEFAULT_DOMAIN) name = r.path.startsWith('library/') && r.path.split('/').length === 2 ? r.path.slice(8) : r.path;
  return `${name}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest !== undefined ? `@${r.digest}` : ''}`;
}

/** Parses `ref` and returns its canonical form. */
export function normalizeReference(ref: string): string {
  return formatReference(parseReference(ref));
}

/** The same repository with a different tag or digest. */
export function withTarget(r: Reference, t: { tag?: string; digest?: string }): Reference {
  return { domain: r.domain, path: r.path, ...(t.tag !== undefined ? { tag: t.tag } : {}), ...(t.digest !== undefined ? { digest: t.digest } : {}) };
}
