/**
 * An OCI distribution (v2) client: manifests and blobs, pull and push, anonymous / Basic /
 * Bearer auth, retries with backoff on transient failures (5xx, 429, connection resets) and
 * never on other 4xx. Plain HTTP only for loopback registries and those listed as insecure;
 * HTTPS otherwise (with an optional CA).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { SwarmError, ErrorCode, wrapError, isSwarmError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, formatReference, type Reference } from './reference.js';
import { sha256Of, type Descriptor, type Digest } from './digest.js';
import { Transport, drain, readBody, isTransientNetworkError, type HttpRequest, type HttpResponse } from './http.js';
import { AuthCache, basicHeader, parseChallenges, type Credentials } from './auth.js';
import { MANIFEST_ACCEPT } from './media-types.js';

export interface RegistryClientOptions {
  /**
   * Registries reached over plain HTTP: `host`, `host:port` or an IPv4 CIDR (`10.231.0.0/16`).
   * Loopback registries (127.0.0.0/8, ::1, localhost) always are.
   */
  insecureRegistries?: readonly string[];
  /** PEM CA(s) trusted for HTTPS registries. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Credentials per registry host (`docker.io`, `host:port`), used when a call brings none. */
  credentials?: (registry: string) => Credentials | undefined;
  /** Retries of a request after a transient failure (default 3). */
  retries?: number;
  /** First backoff (ms), doubled each retry (default 200). */
  backoffMs?: number;
  timeoutMs?: number;
  /**
   * Blobs larger than this are uploaded in chunks (PATCH with Content-Range, then PUT); by
   * default every blob goes in one PUT (monolithic upload).
   */
  uploadChunkSize?: number;
  logger?: Logger;
}

/** The bytes of a blob to upload: a buffer, or a reader of [start, end) (whole blob without a range). */
export type BlobSource = Buffer | ((range?: { start: number; end: number }) => Readable);

export interface FetchedManifest {
  digest: Digest;
  mediaType: string;
  bytes: Buffer;
}

/**
 * Where a downloaded blob goes: the ingest half of a content store (the runtime's
 * LocalContentStore is one). The writer checks size and digest on commit.
 */
export interface BlobIngester {
  writer(ref: string, expected: Digest): Promise<BlobWriter>;
}

export interface BlobWriter {
  /** Appends bytes (back-pressure honoured). */
  write(chunk: Uint8Array): Promise<void>;
  /** Bytes written so far (where a resumed download starts). */
  readonly offset: number;
  /** Verifies size (when given) and digest, then keeps the blob; a mismatch is DATA_LOSS. */
  commit(size?: number): Promise<unknown>;
  /** Drops the partial data. Safe to call after commit or twice. */
  abort(): Promise<void>;
}

export interface RepoOptions {
  auth?: Credentials;
  /** Ask for push rights too (scope `pull,push`). */
  push?: boolean;
  /** Cancels the requests of this handle (CANCELLED). */
  signal?: AbortSignal;
}

export class RegistryClient {
  private readonly transport: Transport;
  private readonly authCache = new AuthCache();
  private readonly insecure: readonly string[];
  readonly retries: number;
  readonly uploadChunkSize: number | undefined;
  private readonly backoffMs: number;
  readonly log: Logger;

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.transport = new Transport({ ca: opts.ca, timeoutMs: opts.timeoutMs });
    this.insecure = opts.insecureRegistries ?? [];
    this.retries = opts.retries ?? 3;
    this.backoffMs = opts.backoffMs ?? 200;
    this.uploadChunkSize = opts.uploadChunkSize;
    this.log = opts.logger ?? nullLogger;
  }

  /** A handle on one repository of one registry. */
  repository(ref: Reference, o: RepoOptions = {}): Repository {
    const creds = o.auth ?? this.opts.credentials?.(ref.domain);
    return new Repository(this, ref, creds, o.push ?? false, o.signal);
  }

  /** `http` or `https` for a registry host. */
  schemeFor(domain: string): 'http' | 'https' {
    return isLoopbackHost(domain) || this.insecure.some((e) => matchesInsecure(e, domain)) ? 'http' : 'https';
  }

  baseUrl(domain: string): URL {
    const host = domain === DEFAULT_DOMAIN ? DOCKER_HUB_API_HOST : domain;
    return new URL(`${this.schemeFor(domain)}://${host}/`);
  }

  close(): void {
    this.transport.close();
  }

  /** @internal Sends a request with auth, retrying transient failures. */
  async send(ctx: AuthContext, req: HttpRequest, what: string): Promise<HttpResponse> {
    let authTried = false;
    for (let attempt = 0; ; attempt++) {
      checkCancelled(ctx.signal, what);
      const headers = { ...(req.headers ?? {}) };
      const cached = this.authCache.get(ctx.registry, ctx.scope, ctx.credKey);
      if (cached) headers.Authorization = cached;
      let res: HttpResponse;
      try {
        res = await this.transport.request({ ...req, headers, ...(ctx.signal ? { signal: ctx.signal } : {}) });
      } catch (err) {
        checkCancelled(ctx.signal, what, err);
        if (attempt < this.retries && isTransientNetworkError(err)) {
          await this.backoff(attempt, what, err, undefined, ctx.signal);
          continue;
        }
        throw wrapError(ErrorCode.UNAVAILABLE, `${what}: registry ${ctx.registry} unreachable`, err);
      }
      if (res.status === 401) {
        const body = (await readBody(res, 64 << 10).catch(() => Buffer.alloc(0))).toString().slice(0, 300);
        if (authTried || (cached !== undefined && !cached.startsWith('Bearer'))) {
          this.authCache.forget(ctx.registry, ctx.scope, ctx.credKey);
          throw new SwarmError(
            ErrorCode.UNAUTHENTICATED,
            `${what}: registry ${ctx.registry} refused ${ctx.creds ? `the credentials of user ${JSON.stringify(ctx.creds.username)}` : 'anonymous access'} (401 unauthorized)${body ? `: ${body.trim()}` : ''}`,
            { details: { registry: ctx.registry } },
          );
        }
        this.authCache.forget(ctx.registry, ctx.scope, ctx.credKey);
        await this.authenticate(ctx, res.headers['www-authenticate'], what);
        authTried = true;
        attempt--; // answering a challenge is not a retry
        continue;
      }
      if (res.status === 403) {
        const body = (await readBody(res, 64 << 10).catch(() => Buffer.alloc(0))).toString().slice(0, 300);
        throw new SwarmError(ErrorCode.PERMISSION_DENIED, `${what}: registry ${ctx.registry} denied access (403)${body ? `: ${body.trim()}` : ''}`, {
          details: { registry: ctx.registry },
        });
      }
      if (res.status >= 500 || res.status === 429) {
        drain(res);
        if (attempt < this.retries) {
          await this.backoff(attempt, what, new Error(`HTTP ${res.status}`), res.headers['retry-after'], ctx.signal);
          continue;
        }
        throw new SwarmError(ErrorCode.UNAVAILABLE, `${what}: registry ${ctx.registry} answered ${res.status} after ${attempt + 1} attempts`, {
          details: { registry: ctx.registry, status: res.status },
        });
      }
      return res;
    }
  }

  /** @internal Waits the backoff of a retry (CANCELLED when `signal` fires). */
  async pause(attempt: number, signal: AbortSignal | undefined, what: string): Promise<void> {
    await this.backoff(attempt, what, new Error('retry'), undefined, signal);
  }

  private async backoff(attempt: number, what: string, err: unknown, retryAfter?: string, signal?: AbortSignal): Promise<void> {
    let ms = this.backoffMs * 2 ** attempt;
    const ra = Number(retryAfter);
    if (Number.isFinite(ra) && ra > 0) ms = Math.min(Math.max(ms, ra * 1000), 30_000);
    this.log.debug('registry: retrying', { what, attempt: attempt + 1, delayMs: ms, error: err instanceof Error ? err.message : String(err) });
    try {
      await sleep(ms, undefined, signal ? { signal } : undefined);
    } catch (e) {
      checkCancelled(signal, what, e);
      throw e;
    }
  }

  private async authenticate(ctx: AuthContext, header: string | string[] | undefined, what: string): Promise<void> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer) {
      await this.fetchToken(ctx, bearer.params, what);
      return;
    }
    if (basic) {
      if (!ctx.creds) {
        throw new SwarmError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry} requires authentication (no credentials given)`, {
          details: { registry: ctx.registry },
        });
      }
      this.authCache.setBasic(ctx.registry, ctx.credKey ?? ctx.creds.username, basicHeader(ctx.creds));
      return;
    }
    throw new SwarmError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry} answered 401 without a usable challenge (${String(header ?? 'none')})`, {
      details: { registry: ctx.registry },
    });
  }

  private async fetchToken(ctx: AuthContext, params: Record<string, string>, what: string): Promise<void> {
    const realm = params.realm;
    if (!realm) throw new SwarmError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry}: bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch (err) {
      throw wrapError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry}: bad token realm ${JSON.stringify(realm)}`, err);
    }
    if (params.service) url.searchParams.set('service', params.service);
    // Ask for what we need; the challenge's scope may be narrower (e.g. pull only on a push).
    const scopes = new Set<string>([ctx.scope, ...(params.scope ? params.scope.split(' ') : [])]);
    for (const s of scopes) url.searchParams.append('scope', s);
    if (ctx.creds) url.searchParams.set('account', ctx.creds.username);
    const headers: Record<string, string> = {};
    if (ctx.creds) headers.Authorization = basicHeader(ctx.creds);
    let res: HttpResponse | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await this.transport.request({ method: 'GET', url, headers, ...(ctx.signal ? { signal: ctx.signal } : {}) });
      } catch (err) {
        checkCancelled(ctx.signal, what, err);
        if (attempt < this.retries && isTransientNetworkError(err)) {
          await this.backoff(attempt, `token for ${what}`, err, undefined, ctx.signal);
          continue;
        }
        throw wrapError(ErrorCode.UNAVAILABLE, `${what}: token server ${url.host} of registry ${ctx.registry} unreachable`, err);
      }
      if (res.status >= 500 && attempt < this.retries) {
        drain(res);
        await this.backoff(attempt, `token for ${what}`, new Error(`HTTP ${res.status}`), undefined, ctx.signal);
        continue;
      }
      break;
    }
    const body = await readBody(res, 1 << 20);
    if (res.status === 401 || res.status === 403) {
      throw new SwarmError(
        ErrorCode.UNAUTHENTICATED,
        `${what}: registry ${ctx.registry}: token server refused ${ctx.creds ? `the credentials of user ${JSON.stringify(ctx.creds.username)}` : 'anonymous access'} (${res.status})`,
        { details: { registry: ctx.registry } },
      );
    }
    if (res.status !== 200) {
      throw new SwarmError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry}: token server answered ${res.status}: ${body.toString().slice(0, 200)}`);
    }
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString()) as typeof parsed;
    } catch (err) {
      throw wrapError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry}: token server sent no JSON`, err);
    }
    const token = parsed.token ?? parsed.access_token;
    if (!token) throw new SwarmError(ErrorCode.UNAUTHENTICATED, `${what}: registry ${ctx.registry}: token server sent no token`);
    this.authCache.setToken(ctx.registry, ctx.scope, ctx.credKey, token, parsed.expires_in ?? 60);
  }
}

/** @internal */
export interface AuthContext {
  registry: string;
  scope: string;
  creds: Credentials | undefined;
  /** Who the cached auth is for: the user and a hash of the password (so a new password is tried afresh). */
  credKey: string | undefined;
  signal?: AbortSignal;
}

/** Throws CANCELLED when `signal` has fired (with `cause` the error it caused, if any). */
export function checkCancelled(signal: AbortSignal | undefined, what: string, cause?: unknown): void {
  if (signal?.aborted) throw new SwarmError(ErrorCode.CANCELLED, `${what}: cancelled`, { cause: cause ?? signal.reason });
}

/** One repository (`host/path`) of a registry. */
export class Repository {
  private readonly base: URL;
  private readonly ctx: AuthContext;
  readonly name: string;

  constructor(
    private readonly client: RegistryClient,
    readonly ref: Reference,
    creds: Credentials | undefined,
    push: boolean,
    private readonly signal?: AbortSignal,
  ) {
    this.base = client.baseUrl(ref.domain);
    this.name = `${ref.domain}/${ref.path}`;
    const credKey = creds ? `${creds.username}\0${sha256Of(creds.password).slice(7, 23)}` : undefined;
    this.ctx = { registry: ref.domain, scope: `repository:${ref.path}:${push ? 'pull,push' : 'pull'}`, creds, credKey, ...(signal ? { signal } : {}) };
  }

  private url(suffix: string): URL {
    return new URL(`/v2/${this.ref.path}/${suffix}`, this.base);
  }

  /** GETs a manifest (or index) by tag or digest and checks its bytes against the digest. */
  async getManifest(tagOrDigest: string): Promise<FetchedManifest> {
    const what = `manifest ${this.name}${tagOrDigest.includes(':') ? '@' : ':'}${tagOrDigest}`;
    const res = await this.client.send(this.ctx, { method: 'GET', url: this.url(`manifests/${tagOrDigest}`), headers: { Accept: MANIFEST_ACCEPT } }, what);
    if (res.status === 404) {
      drain(res);
      throw new SwarmError(ErrorCode.NOT_FOUND, `image ${this.name}${tagOrDigest.includes(':') ? '@' : ':'}${tagOrDigest}: not found in registry ${this.ref.domain}`, {
        details: { reference: `${this.name}:${tagOrDigest}` },
      });
    }
    if (res.status !== 200) throw await unexpected(res, what);
    const bytes = await readBody(res, 4 << 20);
    const digest = sha256Of(bytes);
    const claimed = headerOf(res, 'docker-content-digest');
    if (tagOrDigest.startsWith('sha256:') && digest !== tagOrDigest) {
      throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: digest mismatch: the registry sent content with digest ${digest}`, {
        details: { digest: tagOrDigest, actual: digest },
      });
    }
    if (claimed?.startsWith('sha256:') && claimed !== digest) {
      throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: digest mismatch: the registry says ${claimed} but the content has digest ${digest}`, {
        details: { digest: claimed, actual: digest },
      });
    }
    let mediaType = (headerOf(res, 'content-type') ?? '').split(';')[0].trim();
    try {
      const doc = JSON.parse(bytes.toString()) as { mediaType?: string; manifests?: unknown };
      if (typeof doc.mediaType === 'string' && doc.mediaType) mediaType = doc.mediaType;
      else if (!mediaType || mediaType === 'application/json') mediaType = doc.manifests ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json';
    } catch (err) {
      throw wrapError(ErrorCode.DATA_LOSS, `${what}: not JSON`, err);
    }
    return { digest, mediaType, bytes };
  }

  /** The digest a tag points at (HEAD, falling back to GET). */
  async resolve(tagOrDigest: string): Promise<Descriptor> {
    const what = `manifest ${this.name}:${tagOrDigest}`;
    const res = await this.client.send(this.ctx, { method: 'HEAD', url: this.url(`manifests/${tagOrDigest}`), headers: { Accept: MANIFEST_ACCEPT } }, what);
    drain(res);
    if (res.status === 404) {
      throw new SwarmError(ErrorCode.NOT_FOUND, `image ${this.name}${tagOrDigest.includes(':') ? '@' : ':'}${tagOrDigest}: not found in registry ${this.ref.domain}`);
    }
    const digest = headerOf(res, 'docker-content-digest');
    const mediaType = (headerOf(res, 'content-type') ?? '').split(';')[0].trim();
    if (res.status === 200 && digest?.startsWith('sha256:') && mediaType) {
      return { digest, mediaType, size: Number(headerOf(res, 'content-length') ?? 0) };
    }
    const m = await this.getManifest(tagOrDigest);
    return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
  }

  /**
   * Opens a blob for reading (the caller verifies while it writes it into a store). From
   * `offset` > 0 it asks for the rest only (`Range`); `partial` says whether the registry
   * honoured that (206) or sends the whole blob again (200).
   */
  async openBlob(d: Digest, offset = 0): Promise<{ stream: Readable; size: number | undefined; partial: boolean }> {
    const what = `blob ${d} of ${this.name}`;
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const res = await this.client.send(this.ctx, { method: 'GET', url: this.url(`blobs/${d}`), headers }, what);
    if (res.status === 404) {
      drain(res);
      throw new SwarmError(ErrorCode.NOT_FOUND, `${what}: not found in registry ${this.ref.domain}`, { details: { digest: d } });
    }
    const partial = offset > 0 && res.status === 206 && new RegExp(`^bytes ${offset}-`).test(headerOf(res, 'content-range') ?? '');
    if (res.status !== 200 && !partial) throw await unexpected(res, what);
    const len = headerOf(res, 'content-length');
    return { stream: res.body, size: len === undefined ? undefined : Number(len), partial };
  }

  /**
   * Downloads a blob into a content store (anything with a `writer`), verifying size and digest
   * while streaming; nothing is committed on a mismatch (DATA_LOSS). A download cut by a
   * transient failure is resumed where it stopped (HTTP Range), or restarted when the registry
   * cannot do that.
   */
  async fetchBlobInto(store: BlobIngester, desc: Descriptor, onBytes?: (n: number) => void): Promise<void> {
    const what = `blob ${desc.digest} of ${this.name}`;
    const newWriter = () => store.writer(`fetch-${desc.digest.slice(7, 19)}`, desc.digest);
    let w = await newWriter();
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const from = w.offset;
          const { stream, partial } = await this.openBlob(desc.digest, from);
          if (from > 0 && !partial) {
            await w.abort();
            w = await newWriter();
          }
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            await w.write(chunk);
            if (w.offset > desc.size) {
              stream.destroy();
              throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: more than the ${desc.size} bytes the manifest says`, { details: { digest: desc.digest } });
            }
            onBytes?.(chunk.length);
          }
          await w.commit(desc.size);
          return;
        } catch (err) {
          checkCancelled(this.signal, what, err);
          const transient = !isSwarmError(err) && isTransientNetworkError(err);
          if (transient && attempt < this.client.retries) {
            this.client.log.debug('registry: blob download interrupted, resuming', { digest: desc.digest, offset: w.offset, error: (err as Error).message });
            await this.client.pause(attempt, this.signal, what);
            continue;
          }
          if (isSwarmError(err)) throw err;
          throw wrapError(ErrorCode.UNAVAILABLE, `${what}: download failed`, err);
        }
      }
    } finally {
      await w.abort();
    }
  }

  async blobExists(d: Digest): Promise<boolean> {
    const what = `blob ${d} of ${this.name}`;
    const res = await this.client.send(this.ctx, { method: 'HEAD', url: this.url(`blobs/${d}`) }, what);
    drain(res);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw await unexpected(res, what);
  }

  /**
   * Uploads a blob unless the registry has it: HEAD, then (optionally a cross-repository mount,
   * then) POST an upload session and PUT the whole blob with its digest (monolithic upload), or
   * PATCH it in chunks first when the client has an `uploadChunkSize` the blob exceeds.
   * Returns whether bytes were sent.
   */
  async pushBlob(desc: Descriptor, body: BlobSource, o: { mountFrom?: string } = {}): Promise<'exists' | 'mounted' | 'uploaded'> {
    if (await this.blobExists(desc.digest)) return 'exists';
    const what = `upload of blob ${desc.digest} to ${this.name}`;
    const start = this.url('blobs/uploads/');
    if (o.mountFrom !== undefined) {
      start.searchParams.set('mount', desc.digest);
      start.searchParams.set('from', o.mountFrom);
    }
    const res = await this.client.send(this.ctx, { method: 'POST', url: start }, what);
    drain(res);
    if (res.status === 201) return 'mounted';
    if (res.status !== 202) throw await unexpected(res, what);
    let loc = uploadLocation(res, what);
    const slice = (from: number, to: number): Buffer | (() => Readable) =>
      Buffer.isBuffer(body) ? body.subarray(from, to) : () => body({ start: from, end: to });
    let putBody: Buffer | (() => Readable) | undefined = Buffer.isBuffer(body) ? body : () => body();
    const chunk = this.client.uploadChunkSize;
    if (chunk !== undefined && chunk > 0 && desc.size > chunk) {
      // Chunked: PATCH each range at the location the last answer gave, then PUT with no body.
      for (let from = 0; from < desc.size; from += chunk) {
        const to = Math.min(desc.size, from + chunk);
        const headers = { 'Content-Type': 'application/octet-stream', 'Content-Range': `${from}-${to - 1}`, 'Content-Length': String(to - from) };
        const r = await this.client.send(this.ctx, { method: 'PATCH', url: loc, headers, body: slice(from, to) }, what);
        drain(r);
        if (r.status !== 202) throw await unexpected(r, `${what} (chunk ${from}-${to - 1})`);
        loc = uploadLocation(r, what);
      }
      putBody = undefined;
    }
    const put = new URL(loc);
    put.searchParams.set('digest', desc.digest);
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
    if (putBody !== undefined && !Buffer.isBuffer(putBody)) headers['Content-Length'] = String(desc.size);
    const done = await this.client.send(this.ctx, { method: 'PUT', url: put, headers, ...(putBody !== undefined ? { body: putBody } : {}) }, what);
    if (done.status !== 201 && done.status !== 204) throw await unexpected(done, what);
    drain(done);
    const got = headerOf(done, 'docker-content-digest');
    if (got && got !== desc.digest) {
      throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: registry stored digest ${got}`, { details: { digest: desc.digest, actual: got } });
    }
    return 'uploaded';
  }

  /** PUTs a manifest or index under a tag or its digest; returns the digest. */
  async putManifest(tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<Digest> {
    const what = `push of manifest ${this.name}:${tagOrDigest}`;
    const res = await this.client.send(this.ctx, { method: 'PUT', url: this.url(`manifests/${tagOrDigest}`), headers: { 'Content-Type': mediaType }, body: bytes }, what);
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) throw await unexpected(res, what);
    drain(res);
    const digest = sha256Of(bytes);
    const got = headerOf(res, 'docker-content-digest');
    if (got && got !== digest) throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: registry stored digest ${got}, expected ${digest}`);
    return digest;
  }

  toString(): string {
    return formatReference(this.ref);
  }
}

function uploadLocation(res: HttpResponse, what: string): URL {
  const loc = headerOf(res, 'location');
  if (!loc) throw new SwarmError(ErrorCode.INTERNAL, `${what}: registry gave no upload location`);
  return new URL(loc, res.url);
}

function headerOf(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function unexpected(res: HttpResponse, what: string): Promise<SwarmError> {
  const body = (await readBody(res, 64 << 10).catch(() => Buffer.alloc(0))).toString().trim().slice(0, 300);
  const code = res.status === 404 ? ErrorCode.NOT_FOUND : res.status === 400 ? ErrorCode.INVALID_ARGUMENT : ErrorCode.INTERNAL;
  return new SwarmError(code, `${what}: unexpected HTTP ${res.status}${body ? `: ${body}` : ''}`, { details: { status: res.status } });
}

export function isLoopbackHost(domain: string): boolean {
  const host = hostOf(domain);
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

function hostOf(domain: string): string {
  const v6 = /^\[([^\]]+)\](?::\d+)?$/.exec(domain);
  if (v6) return v6[1];
  const i = domain.lastIndexOf(':');
  return i >= 0 && domain.indexOf(':') === i ? domain.slice(0, i) : domain;
}

function matchesInsecure(entry: string, domain: string): boolean {
  if (entry === domain || entry === hostOf(domain)) return true;
  const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(entry);
  const host = hostOf(domain);
  if (cidr && isIP(host) === 4) {
    const bits = Number(cidr[2]);
    const toInt = (a: string) => a.split('.').reduce((n, o) => (n << 8) | Number(o), 0) >>> 0;
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
    return (toInt(cidr[1]) & mask) === (toInt(host) & mask);
  }
  return false;
}
