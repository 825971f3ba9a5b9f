/** Shared by the image tests: temp roots, a counting proxy, tiny fake registries. */
import http from 'node:http';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Teardown } from '@swarmd/testkit';
import { ImageService, type ImageServiceOptions } from '../src/index.js';

export async function tempDir(t: Teardown, prefix = 'swarmd-img-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export async function imageService(t: Teardown, o: Partial<ImageServiceOptions> = {}): Promise<ImageService> {
  const root = o.root ?? (await tempDir(t, 'swarmd-runtime-'));
  const svc = await new ImageService({ registry: { retries: 1, backoffMs: 10 }, ...o, root }).init();
  t.teardown(() => svc.close());
  return svc;
}

/** What a store holds on disk: blob hexes, snapshot dir names, image record count, ingest files. */
export async function storeState(root: string): Promise<{ blobs: string[]; snapshots: string[]; images: number; ingest: string[] }> {
  const ls = (p: string) => readdir(p).catch(() => [] as string[]);
  return {
    blobs: (await ls(join(root, 'content', 'blobs', 'sha256'))).sort(),
    snapshots: (await ls(join(root, 'snapshots'))).sort(),
    images: (await ls(join(root, 'images'))).filter((n) => n.endsWith('.json')).length,
    ingest: await ls(join(root, 'content', 'ingest')),
  };
}

export interface Served {
  url: string;
  host: string;
  requests: { method: string; path: string; auth?: string }[];
  close(): Promise<void>;
}

/** An HTTP server on loopback, closed at teardown, that records every request. */
export async function serve(t: Teardown, handler: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void | Promise<void>): Promise<Served> {
  const requests: Served['requests'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', ...(req.headers.authorization ? { auth: req.headers.authorization } : {}) });
      Promise.resolve(handler(req, res, Buffer.concat(chunks))).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  t.teardown(close);
  return { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, requests, close };
}

/** A transparent proxy in front of a registry that counts what goes through. */
export async function countingProxy(t: Teardown, target: string): Promise<Served> {
  return serve(t, (req, res, body) =>
    new Promise<void>((resolve, reject) => {
      const up = http.request(new URL(req.url ?? '/', target), { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (r) => {
        const headers = { ...r.headers };
        // The registry names itself in Location: send clients back through the proxy.
        if (typeof headers.location === 'string') headers.location = headers.location.replace(target, `http://${req.headers.host}`);
        res.writeHead(r.statusCode ?? 502, headers);
        r.pipe(res);
        r.on('end', resolve);
      });
      up.on('error', reject);
      up.end(body);
    }),
  );
}
