import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import {
  buildBusyboxImage,
  createHosts,
  MediaType,
  pushOciLayoutWithSkopeo,
  requires,
  sha256,
  startRegistry,
  tarLayer,
  writeOciLayout,
} from '../src/index.js';

test('tarLayer writes whiteouts and opaque markers in overlay-to-be form', async (t) => {
  const tar = await tarLayer([
    { type: 'dir', path: 'etc' },
    { type: 'whiteout', path: 'etc/motd' },
    { type: 'opaque', path: 'var/cache' },
  ]);
  const text = tar.toString('latin1');
  t.true(text.includes('etc/.wh.motd'));
  t.true(text.includes('var/cache/.wh..wh..opq'));
});

test('a busybox image has real digests that match its bytes', async (t) => {
  const img = await buildBusyboxImage({ config: { Cmd: ['echo', 'hi'] } });
  t.is(img.manifestDigest, sha256(img.manifest));
  const manifest = JSON.parse(img.manifest.toString()) as { config: { digest: string }; layers: { digest: string; size: number }[] };
  t.is(manifest.config.digest, sha256(img.config));
  t.is(manifest.layers[0].digest, sha256(img.layers[0].data));
  t.is(manifest.layers[0].size, img.layers[0].data.length);
  const config = JSON.parse(img.config.toString()) as { rootfs: { diff_ids: string[] }; config: { Cmd: string[] } };
  t.deepEqual(config.config.Cmd, ['echo', 'hi']);
  t.is(config.rootfs.diff_ids.length, 1);
  t.true(img.layers[0].size > 500_000, 'the layer holds the busybox binary');
});

requires('registry', 'skopeo', 'busybox')('an image built here is pushed to a local registry and fetched back over the v2 API', async (t) => {
  const reg = await startRegistry({ t });
  const img = await buildBusyboxImage({ config: { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hello'] } });
  const layout = await mkdtemp(join(tmpdir(), 'swarmd-layout-'));
  t.teardown(() => rm(layout, { recursive: true, force: true }));
  await writeOciLayout(layout, img, 'v1');
  await pushOciLayoutWithSkopeo(layout, 'v1', `${reg.host}/test/busybox:v1`);

  const res = await fetch(`${reg.url}/v2/test/busybox/manifests/v1`, { headers: { Accept: MediaType.ociManifest } });
  t.is(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  t.is(res.headers.get('docker-content-digest'), img.manifestDigest);
  t.is(sha256(body), img.manifestDigest);
  const manifest = JSON.parse(body.toString()) as { layers: { digest: string }[]; config: { digest: string } };
  for (const d of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
    const blob = await fetch(`${reg.url}/v2/test/busybox/blobs/${d}`);
    t.is(blob.status, 200);
    t.is(sha256(Buffer.from(await blob.arrayBuffer())), d, `blob ${d} round-trips`);
  }
  const missing = await fetch(`${reg.url}/v2/test/busybox/manifests/nope`);
  t.is(missing.status, 404);
});

requires('root', 'netns', 'busybox')('two hosts reach each other over the underlay and nothing else', async (t) => {
  const net = await createHosts(2, { t });
  const [a, b] = net.hosts as [typeof net.hosts[0], typeof net.hosts[0]];
  t.not(a.addr, b.addr);
  const ping = await a.exec('busybox', ['ping', '-c', '1', '-W', '2', b.addr]);
  t.regex(ping.stdout, /1 packets received/);
  const back = await b.exec('busybox', ['ping', '-c', '1', '-W', '2', a.addr]);
  t.regex(back.stdout, /1 packets received/);
  // No default route: an address outside the underlay has no route at all (nothing is sent).
  const outside = await a.exec('ip', ['route', 'get', '192.0.2.1'], { okCodes: [0, 1, 2] });
  t.not(outside.code, 0);
  t.regex(outside.stderr, /unreachable/i);
  // The host's namespace sees only its own interfaces.
  const links = await a.exec('ip', ['-o', 'link', 'show']);
  t.deepEqual(links.stdout.trim().split('\n').map((l) => l.split(':')[1].trim().split('@')[0]).sort(), ['eth0', 'lo']);
  await net.destroy();
  const after = await (await import('@swarmd/common')).run('ip', ['netns', 'list']);
  t.false(after.stdout.includes(a.netns), 'netns removed');
});
