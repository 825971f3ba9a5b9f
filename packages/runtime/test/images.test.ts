import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, SwarmError } from '@swarmd/common';
import { buildBusyboxImage, requires, tarLayer, writeOciLayout, type BuiltImage, type Teardown } from '@swarmd/testkit';
import type { ImageService } from '../src/index.js';
import { imageService, storeState, tempDir } from './images-helpers.js';

const test = requires('root', 'busybox');

async function importAs(t: Teardown, svc: ImageService, img: BuiltImage, ref: string) {
  const layout = await tempDir(t, 'swarmd-layout-');
  await writeOciLayout(layout, img, 'latest');
  return svc.importOciLayout(layout, ref);
}

const hexes = (ds: string[]) => ds.map((d) => d.slice(7));

test('list, get, tag, remove; gc frees what no image, lease or container uses', async (t) => {
  let inUse = new Set<string>();
  const svc = await imageService(t, { isSnapshotInUse: (c) => inUse.has(c) });
  const a = await buildBusyboxImage({ extraLayers: [{ tar: await tarLayer([{ type: 'file', path: 'a', content: 'a' }]) }] });
  const b = await buildBusyboxImage({ extraLayers: [{ tar: await tarLayer([{ type: 'file', path: 'b', content: 'b' }]) }] });
  const ra = await importAs(t, svc, a, 'test/a:1');
  const rb = await importAs(t, svc, b, 'test/b:1');
  t.is(ra.chainIds[0], rb.chainIds[0], 'one base snapshot for both');
  t.deepEqual((await storeState(svc.root)).snapshots.length, 3);
  await svc.tag('test/a:1', 'test/a:latest');
  t.deepEqual((await svc.list()).map((r) => r.name), ['docker.io/test/a:1', 'docker.io/test/a:latest', 'docker.io/test/b:1']);
  t.is((await svc.get('test/a')).manifest.digest, a.manifestDigest);
  t.deepEqual(await svc.gc(), { blobsRemoved: 0, snapshotsRemoved: 0, bytesFreed: 0 });

  await svc.remove('test/a:1');
  t.is((await svc.gc()).blobsRemoved, 0, 'the other tag still holds A');
  await svc.remove('test/a:latest');
  const notFound = await t.throwsAsync(svc.remove('test/a:latest'), { instanceOf: SwarmError });
  t.is(notFound.code, ErrorCode.NOT_FOUND);

  // A container still runs on A's top snapshot: gc keeps it, but frees A's blobs.
  inUse = new Set([ra.chainIds[1]]);
  const g1 = await svc.gc();
  t.is(g1.blobsRemoved, 3, "A's manifest, config and top layer");
  t.is(g1.snapshotsRemoved, 0);
  let st = await storeState(svc.root);
  t.deepEqual(st.snapshots, hexes([...ra.chainIds, rb.chainIds[1]]).sort());
  t.deepEqual(st.blobs, hexes([b.manifestDigest, b.configDigest, ...b.layers.map((l) => l.digest)]).sort());

  // The same through the once-per-gc hook, with lowerdirs as the container half records them.
  const viaDirs = await imageService(t, { root: svc.root, layerDirsInUse: async () => [svc.layerDirOf(ra.chainIds[1])] });
  t.is((await viaDirs.gc()).snapshotsRemoved, 0);

  inUse = new Set();
  const g2 = await svc.gc();
  t.is(g2.snapshotsRemoved, 1);
  t.true(g2.bytesFreed > 0);
  st = await storeState(svc.root);
  t.deepEqual(st.snapshots, hexes(rb.chainIds).sort(), "B's snapshots stay, the shared base among them");

  // A lease keeps content of an image being removed (e.g. during a re-pull).
  const lease = svc.lease([b.configDigest, rb.chainIds[1]]);
  await svc.remove('test/b:1');
  await svc.gc();
  st = await storeState(svc.root);
  t.deepEqual(st.blobs, hexes([b.configDigest]));
  t.deepEqual(st.snapshots, hexes([rb.chainIds[1]]));
  lease.release();

  // Leftovers of interrupted unpacks and writes go too.
  await mkdir(join(svc.root, 'snapshots', '.tmp-deadbeef-0000', 'fs'), { recursive: true });
  await writeFile(join(svc.root, 'content', 'ingest', 'stale-123'), 'x');
  await mkdir(join(svc.root, 'snapshots', 'not-ours'));
  await svc.gc();
  st = await storeState(svc.root);
  t.deepEqual([st.blobs, st.snapshots, st.images, st.ingest], [[], ['not-ours'], 0, []], 'empty, and unknown dirs untouched');
});

test('layerDirs are top first and config reads the image config', async (t) => {
  const svc = await imageService(t);
  const img = await buildBusyboxImage({
    config: { Entrypoint: ['/bin/sh', '-c'], Cmd: ['echo hi'], User: '1:1', WorkingDir: '/tmp' },
    extraLayers: [{ tar: await tarLayer([{ type: 'file', path: 'etc/top', content: 'top' }]) }],
  });
  const rec = await importAs(t, svc, img, 'localhost:5000/cfg:1');
  const dirs = svc.layerDirs(rec);
  t.is(dirs.length, 2);
  t.deepEqual(await readdir(join(dirs[0], 'etc')), ['top']);
  t.true((await readdir(join(dirs[1], 'bin'))).includes('busybox'));
  t.is(await readFile(join(dirs[0], 'etc/top'), 'utf8'), 'top');
  t.deepEqual(dirs.map((d) => svc.chainIdOf(d)), [...rec.chainIds].reverse());
  t.is(svc.chainIdOf('/elsewhere/' + rec.chainIds[0].slice(7) + '/fs'), undefined);
  const cfg = await svc.config('localhost:5000/cfg:1');
  t.deepEqual(cfg.config?.Entrypoint, ['/bin/sh', '-c']);
  t.is(cfg.config?.User, '1:1');
  t.is(cfg.config?.WorkingDir, '/tmp');
  const meta = JSON.parse(await readFile(join(dirs[0], '..', 'meta.json'), 'utf8')) as { parent: string; diffId: string };
  t.is(meta.parent, rec.chainIds[0]);
  t.is(meta.diffId, rec.diffIds[1]);
});
