import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import tar from 'tar-stream';
import { ErrorCode, run, SwarmError } from '@swarmd/common';
import { buildBusyboxImage, buildImage, MediaType, requires, sha256, tarLayer, writeOciLayout, type BuiltImage } from '@swarmd/testkit';
import { imageService, storeState, tempDir } from './images-helpers.js';

const test = requires('root', 'busybox');

async function tarOf(entries: { name: string; body?: Buffer | string; linkname?: string }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((res) => pack.on('end', () => res()));
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null) => (err ? rej(err) : res());
      if (e.linkname !== undefined) pack.entry({ name: e.name, type: 'symlink', linkname: e.linkname }, cb);
      else if (e.body === undefined) pack.entry({ name: e.name, type: 'directory', mode: 0o755 }, cb);
      else pack.entry({ name: e.name, size: Buffer.byteLength(e.body) }, e.body, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

test('a docker save archive imports under its RepoTags (shared layers via symlinks too)', async (t) => {
  const base = await buildBusyboxImage({ compression: 'none' });
  const baseTar = base.layers[0].data;
  const topTar = await tarLayer([{ type: 'file', path: 'etc/saved', content: 'from docker save' }]);
  const diffIds = [sha256(baseTar), sha256(topTar), sha256(topTar)];
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: { Cmd: ['sh', '-c', 'cat /etc/saved'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
  }));
  const cfgName = `${sha256(config).slice(7)}.json`;
  const archive = await tarOf([
    { name: 'l1/' }, { name: 'l1/VERSION', body: '1.0' }, { name: 'l1/json', body: '{}' }, { name: 'l1/layer.tar', body: baseTar },
    { name: 'l2/' }, { name: 'l2/layer.tar', body: topTar },
    { name: 'l3/' }, { name: 'l3/layer.tar', linkname: '../l2/layer.tar' },
    { name: cfgName, body: config },
    { name: 'repositories', body: '{}' },
    { name: 'manifest.json', body: JSON.stringify([{ Config: cfgName, RepoTags: ['busybox:saved', 'me/app:v1'], Layers: ['l1/layer.tar', 'l2/layer.tar', 'l3/layer.tar'] }]) },
  ]);
  const dir = await tempDir(t);
  await writeFile(join(dir, 'image.tar'), archive);
  const svc = await imageService(t);
  const recs = await svc.importArchive(join(dir, 'image.tar'));
  t.deepEqual(recs.map((r) => r.name), ['docker.io/library/busybox:saved', 'docker.io/me/app:v1']);
  const rec = await svc.get('busybox:saved');
  t.deepEqual(rec.diffIds, diffIds);
  t.is(rec.config.digest, sha256(config));
  t.is(rec.layers[0].mediaType, MediaType.ociLayer);
  const dirs = svc.layerDirs(rec);
  t.is(dirs.length, 3);
  t.is(await readFile(join(dirs[0], 'etc/saved'), 'utf8'), 'from docker save');
  t.deepEqual((await svc.config(rec)).config?.Cmd, ['sh', '-c', 'cat /etc/saved']);
  const st = await storeState(svc.root);
  t.is(st.blobs.length, 4, 'config, two distinct layers, the made manifest: nothing else of the archive');
  t.is(st.snapshots.length, 3);

  await writeFile(join(dir, 'bad.tar'), await tarOf([{ name: 'x', body: 'y' }]));
  const err = await t.throwsAsync(svc.importArchive(join(dir, 'bad.tar')), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.INVALID_ARGUMENT);
  t.regex(err.message, /no manifest.json/);
});

test('an OCI layout imports; with an index inside it, the platform is chosen', async (t) => {
  const mk = async (arch: string): Promise<BuiltImage> =>
    buildImage({ architecture: arch, layers: [{ tar: await tarLayer([{ type: 'file', path: 'arch', content: arch }]) }] });
  const amd = await mk('amd64');
  const arm = await mk('arm64');
  const layout = await tempDir(t, 'swarmd-layout-');
  await writeOciLayout(layout, amd, 'single');
  const blobs = join(layout, 'blobs', 'sha256');
  for (const [d, b] of [[arm.manifestDigest, arm.manifest], [arm.configDigest, arm.config], [arm.layers[0].digest, arm.layers[0].data]] as const) {
    await writeFile(join(blobs, d.slice(7)), b);
  }
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: MediaType.ociIndex,
    manifests: [
      { mediaType: MediaType.ociManifest, digest: arm.manifestDigest, size: arm.manifest.length, platform: { os: 'linux', architecture: 'arm64' } },
      { mediaType: MediaType.ociManifest, digest: amd.manifestDigest, size: amd.manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  }));
  await writeFile(join(blobs, sha256(index).slice(7)), index);
  const top = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: object[] };
  top.manifests.push({ mediaType: MediaType.ociIndex, digest: sha256(index), size: index.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  await writeFile(join(layout, 'index.json'), JSON.stringify(top));

  const svc = await imageService(t);
  const single = await svc.importOciLayout(layout, 'local/single:1', { tag: 'single' });
  t.is(single.manifest.digest, amd.manifestDigest);
  const multi = await svc.importOciLayout(layout, 'local/multi:1', { tag: 'multi' });
  t.is(multi.target.digest, sha256(index));
  t.is(multi.manifest.digest, amd.manifestDigest);
  const armRec = await svc.importOciLayout(layout, 'local/multi:arm', { tag: 'multi', platform: 'linux/arm64' });
  t.is(await readFile(join(svc.layerDirs(armRec)[0], 'arch'), 'utf8'), 'arm64');

  const noTag = await t.throwsAsync(svc.importOciLayout(layout, 'x:1', { tag: 'nope' }), { instanceOf: SwarmError });
  t.is(noTag.code, ErrorCode.NOT_FOUND);

  // A layout missing a blob: a clear error, and no image.
  const broken = await tempDir(t, 'swarmd-layout-');
  const other = await mk('amd64-2');
  await writeOciLayout(broken, other);
  await writeFile(join(broken, 'blobs', 'sha256', other.layers[0].digest.slice(7)), 'corrupt');
  await mkdir(join(broken, 'extra'), { recursive: true });
  const fresh = await imageService(t);
  const err = await t.throwsAsync(fresh.importOciLayout(broken, 'b:1'), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.DATA_LOSS);
  t.true(err.message.includes(other.layers[0].digest), err.message);
  const st = await storeState(fresh.root);
  t.deepEqual([st.snapshots, st.images, st.ingest], [[], 0, []]);
});

requires('root', 'busybox', 'skopeo')('a docker-archive written by skopeo imports', async (t) => {
  const img = await buildBusyboxImage({
    config: { Cmd: ['echo', 'archived'] },
    extraLayers: [{ tar: await tarLayer([{ type: 'file', path: 'etc/skopeo', content: 'yes' }]) }],
  });
  const dir = await tempDir(t);
  await writeOciLayout(join(dir, 'layout'), img, 'v1');
  await run('skopeo', ['copy', '--quiet', `oci:${join(dir, 'layout')}:v1`, `docker-archive:${join(dir, 'save.tar')}:example.com/team/app:v1`]);
  const svc = await imageService(t);
  const [rec] = await svc.importArchive(join(dir, 'save.tar'));
  t.is(rec.name, 'example.com/team/app:v1');
  t.deepEqual(rec.diffIds, img.layers.map((l) => l.diffId));
  t.deepEqual((await svc.config(rec)).config?.Cmd, ['echo', 'archived']);
  t.is(await readFile(join(svc.layerDirs(rec)[0], 'etc/skopeo'), 'utf8'), 'yes');
});
