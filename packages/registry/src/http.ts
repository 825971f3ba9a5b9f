/**
 * The HTTP underneath the registry client: node:http / node:https with keep-alive agents, an
 * optional CA bundle for HTTPS, redirects followed (without credentials to another host) and a
 * response whose body is a stream for the caller to consume.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  /** A buffer, or a factory of a fresh stream per attempt (with `Content-Length` set by the caller). */
  body?: Buffer | (() => Readable);
  /** Aborts the request (and the response body's stream). */
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The final URL (after redirects). */
  url: URL;
  body: IncomingMessage;
}

export interface TransportOptions {
  /** PEM CA certificate(s) trusted for HTTPS registries, in addition to Node's bundled roots. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Idle socket timeout per request (ms). */
  timeoutMs?: number;
}

const MAX_REDIRECTS = 5;

export class Transport {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly timeoutMs: number;

  constructor(opts: TransportOptions = {}) {
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const ca = opts.ca === undefined ? undefined : Array.isArray(opts.ca) ? opts.ca : [opts.ca];
    // With a CA given, trust it in addition to the system roots (as Docker's certs.d does).
    this.httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      ...(ca ? { ca: [...rootCertificates, ...ca] } : {}),
    });
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  async request(req: HttpRequest): Promise<HttpResponse> {
    let url = req.url;
    let headers = { ...(req.headers ?? {}) };
    for (let i = 0; ; i++) {
      const res = await this.once({ ...req, url, headers });
      const loc = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(res.status) && loc && (req.method === 'GET' || req.method === 'HEAD')) {
        res.body.resume();
        if (i >= MAX_REDIRECTS) throw new SwarmError(ErrorCode.UNAVAILABLE, `${req.method} ${req.url.href}: too many redirects`);
        const next = new URL(loc, url);
        if (next.host !== url.host) {
          headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
        }
        url = next;
        continue;
      }
      return res;
    }
  }

  private once(req: HttpRequest): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      const mod = req.url.protocol === 'https:' ? https : http;
      const agent = req.url.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
      const headers: Record<string, string> = { 'User-Agent': 'swarmd/0.1', ...(req.headers ?? {}) };
      if (Buffer.isBuffer(req.body)) headers['Content-Length'] = String(req.body.length);
      else if (req.body === undefined && (req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH')) headers['Content-Length'] = '0';
      const r = mod.request(req.url, { method: req.method, headers, agent, ...(req.signal ? { signal: req.signal } : {}) }, (res) => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, url: req.url, body: res });
      });
      r.setTimeout(this.timeoutMs, () => r.destroy(Object.assign(new Error(`timeout after ${this.timeoutMs}ms`), { code: 'ETIMEDOUT' })));
      r.once('error', reject);
      if (req.body === undefined) r.end();
      else if (Buffer.isBuffer(req.body)) r.end(req.body);
      else {
        const src = req.body();
        src.once('error', (e) => r.destroy(e));
        src.pipe(r);
      }
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}


/** Reads a (small) response body; refuses more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit = 8 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      res.body.destroy();
      throw new SwarmError(ErrorCode.DATA_LOSS, `${res.url.href}: response larger than ${limit} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** Throws the body away so the socket can be reused. */
export function drain(res: HttpResponse): void {
  res.body.resume();
}

/** Network errors worth another try. */
export function isTransientNetworkError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (
    typeof code === 'string' &&
    ['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ECONNABORTED', 'ENETUNREACH', 'EHOSTUNREACH', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET'].includes(code)
  ) || (err instanceof Error && /socket hang up|aborted/i.test(err.message));
}
