import test from 'ava';
import type http from 'node:http';
import https from 'node:https';
import { networkInterfaces } from 'node:os';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { ErrorCode, run, SwarmError } from '@swarmd/common';
import { buildImage, sha256, tarLayer, type BuiltImage, type Teardown } from '@swarmd/testkit';
import { parseReference, RegistryClient } from '@swarmd/registry';
import { imageService, serve, storeState, tempDir, type Served } from './images-helpers.js';

interface FakeContent {
  manifests: Map<string, { body: Buffer; mediaType: string }>;
  blobs: Map<string, Buffer>;
}

function contentOf(img: BuiltImage, tag: string): FakeContent {
  const m = { body: img.manifest, mediaType: img.manifestMediaType };
  return {
    manifests: new Map([
      [tag, m],
      [img.manifestDigest, m],
    ]),
    blobs: new Map([[img.configDigest, img.config], ...img.layers.map((l) => [l.digest, l.data] as [string, Buffer])]),
  };
}

/** A minimal read-only v2 registry; `gate` may answer a request first (auth, faults). */
async function fakeRegistry(
  t: Teardown,
  c: FakeContent,
  gate?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean,
): Promise<Served> {
  return serve(t, (req, res) => {
    if (gate?.(req, res)) return;
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (url.pathname === '/v2/') return void res.writeHead(200).end('{}');
    if (!m) return void res.writeHead(404).end();
    if (m[2] === 'manifests') {
      const man = c.manifests.get(m[3]);
      if (!man) return void res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"MANIFEST_UNKNOWN"}]}');
      res.writeHead(200, { 'Content-Type': man.mediaType, 'Docker-Content-Digest': sha256(man.body), 'Content-Length': man.body.length });
      return void res.end(req.method === 'HEAD' ? undefined : man.body);
    }
    const blob = c.blobs.get(m[3]);
    if (!blob) return void res.writeHead(404).end();
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && Number(range[1]) < blob.length) {
      const from = Number(range[1]);
      res.writeHead(206, { 'Content-Length': blob.length - from, 'Content-Range': `bytes ${from}-${blob.length - 1}/${blob.length}` });
      return void res.end(blob.subarray(from));
    }
    res.writeHead(200, { 'Content-Length': blob.length, 'Content-Type': 'application/octet-stream' });
    res.end(req.method === 'HEAD' ? undefined : blob);
  });
}

async function smallImage(text = 'hello'): Promise<BuiltImage> {
  return buildImage({ layers: [{ tar: await tarLayer([{ type: 'file', path: 'hello', content: text }]) }] });
}

test('Bearer token auth: challenge, token fetched with credentials, cached per scope', async (t) => {
  const img = await smallImage();
  const tokenReqs: URL[] = [];
  const tokens = await serve(t, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    tokenReqs.push(url);
    if (req.headers.authorization !== `Basic ${Buffer.from('alice:s3cret').toString('base64')}`) return void res.writeHead(401).end('{"details":"bad creds"}');
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token: `tok-${url.searchParams.getAll('scope').join('+')}`, expires_in: 300 }));
  });
  const reg = await fakeRegistry(t, contentOf(img, 'v1'), (req, res) => {
    if (req.headers.authorization === 'Bearer tok-repository:team/app:pull') return false;
    res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${tokens.url}/token",service="fake-registry",scope="repository:team/app:pull"` }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
    return true;
  });
  const svc = await imageService(t);
  const rec = await svc.pull(`${reg.host}/team/app:v1`, { auth: { username: 'alice', password: 's3cret' } });
  t.is(rec.manifest.digest, img.manifestDigest);
  t.is(tokenReqs.length, 1, 'one token for the whole pull');
  t.is(tokenReqs[0].searchParams.get('service'), 'fake-registry');
  t.deepEqual(tokenReqs[0].searchParams.getAll('scope'), ['repository:team/app:pull']);
  t.is(reg.requests.filter((r) => r.auth === undefined).length, 1, 'only the first request goes anonymously');

  // Wrong password: the token server refuses; a clear error naming the registry; nothing stored.
  const other = await imageService(t);
  const err = await t.throwsAsync(other.pull(`${reg.host}/team/app:v1`, { auth: { username: 'alice', password: 'nope' } }), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.UNAUTHENTICATED);
  t.true(err.message.includes(`registry ${reg.host}`) && err.message.includes('"alice"'), err.message);
  const st = await storeState(other.root);
  t.deepEqual([st.blobs, st.snapshots, st.images], [[], [], 0]);
});

test('a registry that refuses a token it was given is UNAUTHENTICATED, not retried forever', async (t) => {
  const img = await smallImage();
  const tokens = await serve(t, (_req, res) => void res.writeHead(200).end('{"token":"useless"}'));
  const reg = await fakeRegistry(t, contentOf(img, 'v1'), (_req, res) => {
    res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${tokens.url}/token",service="s"` }).end();
    return true;
  });
  const svc = await imageService(t);
  const err = await t.throwsAsync(svc.pull(`${reg.host}/a/b:v1`), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.UNAUTHENTICATED);
  t.regex(err.message, new RegExp(`registry ${reg.host} refused anonymous access`));
  t.is(reg.requests.length, 2);
});

test('a tampered blob is DATA_LOSS naming its digest, and nothing of it is kept', async (t) => {
  const img = await smallImage();
  const c = contentOf(img, 'v1');
  const layer = img.layers[0];
  const tampered = Buffer.from(layer.data);
  tampered[tampered.length - 5] ^= 0xff;
  c.blobs.set(layer.digest, tampered);
  const reg = await fakeRegistry(t, c);
  const svc = await imageService(t);
  const err = await t.throwsAsync(svc.pull(`${reg.host}/x/y:v1`), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.DATA_LOSS);
  t.true(err.message.includes(layer.digest), err.message);
  t.regex(err.message, /digest mismatch/);
  const st = await storeState(svc.root);
  t.deepEqual(st.blobs, [img.configDigest.slice(7)], 'the bad layer is not committed, nor the manifest (only the good config is)');
  t.deepEqual([st.snapshots, st.images, st.ingest], [[], 0, []]);
  t.is(reg.requests.filter((r) => r.path.includes(layer.digest)).length, 1, 'a digest mismatch is not retried');
});

test('a manifest that does not match the digest asked for is DATA_LOSS', async (t) => {
  const img = await smallImage();
  const c = contentOf(img, 'v1');
  const wrongBytes = Buffer.from(img.manifest.toString().replace('"schemaVersion":2', '"schemaVersion": 2'));
  c.manifests.set(img.manifestDigest, { body: wrongBytes, mediaType: img.manifestMediaType });
  const reg = await fakeRegistry(t, c);
  const svc = await imageService(t);
  const err = await t.throwsAsync(svc.pull(`${reg.host}/x/y@${img.manifestDigest}`), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.DATA_LOSS);
  t.true(err.message.includes(img.manifestDigest) && err.message.includes(sha256(wrongBytes)), err.message);
  const st = await storeState(svc.root);
  t.deepEqual([st.blobs, st.snapshots, st.images], [[], [], 0]);
});

test('5xx and connection resets are retried with backoff; other 4xx are not', async (t) => {
  const img = await smallImage();
  let manifestHits = 0;
  let blobHits = 0;
  const reg = await fakeRegistry(t, contentOf(img, 'v1'), (req, res) => {
    if (req.url?.includes('/manifests/')) {
      if (++manifestHits <= 2) return void res.writeHead(503).end('busy'), true;
    }
    if (req.url?.includes(`/blobs/${img.layers[0].digest}`) && ++blobHits === 1) {
      req.socket.destroy();
      return true;
    }
    return false;
  });
  const client = new RegistryClient({ retries: 3, backoffMs: 5 });
  t.teardown(() => client.close());
  const svc = await imageService(t, { registry: client });
  const rec = await svc.pull(`${reg.host}/x/y:v1`);
  t.is(rec.manifest.digest, img.manifestDigest);
  t.is(manifestHits, 3);
  t.is(blobHits, 2);

  const bad = await serve(t, (_req, res) => void res.writeHead(400).end('{"errors":[{"code":"NAME_INVALID"}]}'));
  const err = await t.throwsAsync(client.repository(parseReference(`${bad.host}/x/y:v1`)).getManifest('v1'), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.INVALID_ARGUMENT);
  t.regex(err.message, /HTTP 400.*NAME_INVALID/);
  t.is(bad.requests.length, 1);

  const down = await serve(t, (_req, res) => void res.writeHead(502).end());
  const e2 = await t.throwsAsync(client.repository(parseReference(`${down.host}/x/y:v1`)).getManifest('v1'), { instanceOf: SwarmError });
  t.is(e2.code, ErrorCode.UNAVAILABLE);
  t.regex(e2.message, /answered 502 after 4 attempts/);
  t.is(down.requests.length, 4);
});

test('a registry without the image says NOT_FOUND naming the reference', async (t) => {
  const reg = await fakeRegistry(t, { manifests: new Map(), blobs: new Map() });
  const svc = await imageService(t);
  const err = await t.throwsAsync(svc.pull(`${reg.host}/gone/app:3`), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.NOT_FOUND);
  t.is(err.message, `image ${reg.host}/gone/app:3: not found in registry ${reg.host}`);
});

/** A non-loopback address of this machine (HTTPS is used for every registry not on loopback). */
function localAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

(localAddress() ? test : test.skip)('HTTPS registries are verified against the CA given, and refused without it', async (t) => {
  const addr = localAddress()!;
  const dir = await tempDir(t);
  const ossl = (args: string[]) => run('openssl', args);
  await ossl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=swarmd test CA', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem')]);
  await ossl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${addr}`, '-keyout', join(dir, 'srv.key'), '-out', join(dir, 'srv.csr')]);
  await writeFile(join(dir, 'ext.cnf'), `subjectAltName=IP:${addr}\n`);
  await ossl(['x509', '-req', '-in', join(dir, 'srv.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '1', '-extfile', join(dir, 'ext.cnf'), '-out', join(dir, 'srv.pem')]);
  const img = await smallImage('over tls');
  const c = contentOf(img, 'v1');
  const server = https.createServer({ key: await readFile(join(dir, 'srv.key')), cert: await readFile(join(dir, 'srv.pem')) }, (req, res) => {
    const m = /^\/v2\/.+\/(manifests|blobs)\/([^/]+)$/.exec(req.url ?? '');
    const man = m?.[1] === 'manifests' ? c.manifests.get(m[2]) : undefined;
    const blob = m?.[1] === 'blobs' ? c.blobs.get(m[2]) : undefined;
    if (man) return void res.writeHead(200, { 'Content-Type': man.mediaType }).end(man.body);
    if (blob) return void res.writeHead(200).end(blob);
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, addr, r));
  t.teardown(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
  const host = `${addr}:${(server.address() as AddressInfo).port}`;

  const svc = await imageService(t, { registry: { ca: await readFile(join(dir, 'ca.pem')), retries: 0 } });
  t.is(svc.registry.schemeFor(host), 'https');
  const rec = await svc.pull(`${host}/tls/app:v1`);
  t.is(rec.manifest.digest, img.manifestDigest);

  const untrusting = await imageService(t, { registry: { retries: 0 } });
  const err = await t.throwsAsync(untrusting.pull(`${host}/tls/app:v1`), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.UNAVAILABLE);
  t.regex(err.message, /certificate/i);
  // Marked insecure, the same host is spoken to over plain HTTP (and this TLS server hangs up).
  const insecure = await imageService(t, { registry: { insecureRegistries: [addr], retries: 0 } });
  t.is(insecure.registry.schemeFor(host), 'http');
});

test('a cancelled pull stops with CANCELLED; a pull sharing its download starts its own', async (t) => {
  const img = await smallImage('big enough '.repeat(2000));
  const layer = img.layers[0];
  let blobGets = 0;
  let requested!: () => void;
  const firstBlobRequest = new Promise<void>((r) => (requested = r));
  const reg = await fakeRegistry(t, contentOf(img, 'v1'), (req, res) => {
    if (!req.url?.endsWith(`/blobs/${layer.digest}`)) return false;
    if (++blobGets > 1) return false;
    // The first download stalls half way.
    res.writeHead(200, { 'Content-Length': layer.data.length });
    res.write(layer.data.subarray(0, layer.data.length >> 1));
    requested();
    return true;
  });
  const svc = await imageService(t);
  const ac = new AbortController();
  const a = svc.pull(`${reg.host}/c/app:v1`, { signal: ac.signal });
  await firstBlobRequest;
  const b = svc.pull(`${reg.host}/c/app:v1`);
  ac.abort();
  const err = await t.throwsAsync(a, { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.CANCELLED);
  t.regex(err.message, /cancelled/);
  const rec = await b;
  t.is(rec.manifest.digest, img.manifestDigest);
  t.is(blobGets, 2);
  const st = await storeState(svc.root);
  t.deepEqual([st.images, st.ingest], [1, []]);
});

test('a download cut half way resumes from where it stopped (Range)', async (t) => {
  const img = await smallImage(Array.from({ length: 4000 }, (_, i) => sha256(String(i))).join(''));
  const layer = img.layers[0];
  const ranges: (string | undefined)[] = [];
  const reg = await fakeRegistry(t, contentOf(img, 'v1'), (req, res) => {
    if (!req.url?.endsWith(`/blobs/${layer.digest}`)) return false;
    ranges.push(req.headers.range);
    if (ranges.length > 1) return false;
    // Half the bytes, then the connection closes cleanly (FIN, so they all arrive first).
    res.writeHead(200, { 'Content-Length': layer.data.length, Connection: 'close' });
    res.end(layer.data.subarray(0, layer.data.length >> 1));
    return true;
  });
  const svc = await imageService(t);
  const rec = await svc.pull(`${reg.host}/r/app:v1`);
  t.is(rec.manifest.digest, img.manifestDigest);
  t.is(ranges.length, 2);
  t.is(ranges[0], undefined);
  t.regex(ranges[1] ?? '', /^bytes=[1-9]\d*-$/, 'the second request asks for the rest only');
  t.deepEqual((await storeState(svc.root)).ingest, []);
});

test('gc waits for a running pull, and keeps what the pull brought', async (t) => {
  const img = await smallImage('kept');
  const layer = img.layers[0];
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let requested!: () => void;
  const blobRequested = new Promise<void>((r) => (requested = r));
  const reg = await fakeRegistry(t, contentOf(img, 'v1'), (req, res) => {
    if (!req.url?.endsWith(`/blobs/${layer.digest}`)) return false;
    requested();
    void released.then(() => res.writeHead(200, { 'Content-Length': layer.data.length }).end(layer.data));
    return true;
  });
  const svc = await imageService(t);
  const pull = svc.pull(`${reg.host}/g/app:v1`);
  await blobRequested;
  let gcDone = false;
  const gc = svc.gc().then((r) => ((gcDone = true), r));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  t.false(gcDone, 'gc is held back while the pull runs');
  release();
  const rec = await pull;
  t.deepEqual(await gc, { blobsRemoved: 0, snapshotsRemoved: 0, bytesFreed: 0 });
  t.deepEqual((await storeState(svc.root)).snapshots, [rec.chainIds[0].slice(7)]);
});
