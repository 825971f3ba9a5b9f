import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, run, SwarmError } from '@swarmd/common';
import {
  buildBusyboxImage,
  buildImage,
  MediaType,
  pushOciLayoutWithSkopeo,
  requires,
  startRegistry,
  tarLayer,
  writeOciLayout,
  type BuiltImage,
} from '@swarmd/testkit';
import { MediaTypes, parseReference } from '@swarmd/registry';
import { chainIdsOf } from '../src/index.js';
import { countingProxy, imageService, storeState, tempDir } from './images-helpers.js';

const test = requires('root', 'registry', 'busybox');

test('pull by tag and by digest: content, snapshots, config and lowerdirs', async (t) => {
  const reg = await startRegistry({ t });
  const pusher = await imageService(t);
  const img = await buildBusyboxImage({ config: { Cmd: ['echo', 'hi'], Env: ['A=1'] } });
  const digest = await pusher.pushImage(`${reg.host}/test/busybox:v1`, img);
  t.is(digest, img.manifestDigest);

  const svc = await imageService(t);
  const events: string[] = [];
  const rec = await svc.pull(`${reg.host}/test/busybox:v1`, { onProgress: (p) => events.push(`${p.kind}:${p.status ?? ''}`) });
  t.is(rec.name, `${reg.host}/test/busybox:v1`);
  t.is(rec.manifest.digest, img.manifestDigest);
  t.is(rec.config.digest, img.configDigest);
  t.deepEqual(rec.diffIds, img.layers.map((l) => l.diffId));
  t.deepEqual(rec.chainIds, chainIdsOf(rec.diffIds));
  t.deepEqual(rec.platform, { os: 'linux', architecture: 'amd64' });
  t.true(events.includes('layer:unpacked') && events.at(-1) === 'done:');
  const [lower] = svc.layerDirs(rec);
  t.is(lower, join(svc.root, 'snapshots', rec.chainIds[0].slice(7), 'fs'));
  t.true((await stat(join(lower, 'bin/busybox'))).isFile());
  t.is((await stat(join(lower, 'bin/busybox'))).mode & 0o777, 0o755);
  t.is(await readlink(join(lower, 'bin/sh')), 'busybox');
  t.is((await stat(join(lower, 'tmp'))).mode & 0o7777, 0o1777);
  t.is((await lstat(join(lower, 'etc/passwd'))).mtimeMs, 0, 'mtimes are kept');
  const cfg = await svc.config(rec);
  t.deepEqual(cfg.config?.Cmd, ['echo', 'hi']);
  t.true(cfg.config?.Env?.includes('A=1'));
  const st = await storeState(svc.root);
  t.deepEqual(st.blobs, [img.manifestDigest, img.configDigest, img.layers[0].digest].map((d) => d.slice(7)).sort());

  // By digest: a record of its own, the same snapshots, no second unpack.
  const byDigest = await svc.pull(`${reg.host}/test/busybox@${img.manifestDigest}`);
  t.is(byDigest.name, `${reg.host}/test/busybox@${img.manifestDigest}`);
  t.deepEqual(byDigest.chainIds, rec.chainIds);
  t.is((await svc.list()).length, 2);
  t.deepEqual((await storeState(svc.root)).snapshots, st.snapshots);
  // resolve() asks the registry what a tag points at.
  t.is((await svc.resolve(`${reg.host}/test/busybox:v1`)).digest, img.manifestDigest);

  // getOrPull: the local image, with no registry needed once it is here.
  await reg.stop();
  t.is((await svc.getOrPull(`${reg.host}/test/busybox:v1`)).manifest.digest, img.manifestDigest);
  const gone = await t.throwsAsync(svc.getOrPull(`${reg.host}/test/other:v1`), { instanceOf: SwarmError });
  t.is(gone.code, ErrorCode.UNAVAILABLE, gone.message);
  t.true(gone.message.includes(`registry ${reg.host} unreachable`), gone.message);
});

async function twoArchIndex(mediaType: string): Promise<{ amd: BuiltImage; arm: BuiltImage; index: Buffer }> {
  const format = mediaType === MediaType.dockerManifestList ? 'docker' : 'oci';
  const mk = async (arch: string) =>
    buildImage({ format, architecture: arch, layers: [{ tar: await tarLayer([{ type: 'file', path: 'arch', content: arch }]) }] });
  const amd = await mk('amd64');
  const arm = await mk('arm64');
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: [
        { mediaType: arm.manifestMediaType, digest: arm.manifestDigest, size: arm.manifest.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { mediaType: amd.manifestMediaType, digest: amd.manifestDigest, size: amd.manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
      ],
    }),
  );
  return { amd, arm, index };
}

for (const mt of [MediaType.ociIndex, MediaType.dockerManifestList]) {
  test(`a multi-platform ${mt === MediaType.ociIndex ? 'OCI index' : 'Docker manifest list'} gives amd64, or the platform asked for`, async (t) => {
    const reg = await startRegistry({ t });
    const pusher = await imageService(t);
    const { amd, arm, index } = await twoArchIndex(mt);
    const ref = parseReference(`${reg.host}/multi/app:1`);
    await pusher.pushImage(`${reg.host}/multi/app@${amd.manifestDigest}`, amd);
    await pusher.pushImage(`${reg.host}/multi/app@${arm.manifestDigest}`, arm);
    await pusher.registry.repository(ref, { push: true }).putManifest('1', index, mt);

    const svc = await imageService(t);
    const rec = await svc.pull(`${reg.host}/multi/app:1`);
    t.is(rec.target.mediaType, mt);
    t.is(rec.manifest.digest, amd.manifestDigest);
    t.is(rec.platform.architecture, 'amd64');
    t.is(await readFile(join(svc.layerDirs(rec)[0], 'arch'), 'utf8'), 'amd64');
    t.false((await storeState(svc.root)).blobs.includes(arm.layers[0].digest.slice(7)), 'the other platform is not downloaded');

    const armRec = await svc.pull(`${reg.host}/multi/app:1`, { platform: 'linux/arm64' });
    t.is(armRec.manifest.digest, arm.manifestDigest);
    t.is(await readFile(join(svc.layerDirs(armRec)[0], 'arch'), 'utf8'), 'arm64');
    const err = await t.throwsAsync(svc.pull(`${reg.host}/multi/app:1`, { platform: 'linux/s390x' }), { instanceOf: SwarmError });
    t.is(err.code, ErrorCode.NOT_FOUND);
    t.regex(err.message, /no manifest for platform linux\/s390x \(the index has linux\/arm64\/v8, linux\/amd64\)/);
  });
}

test('Docker schema2 images and plain (uncompressed) OCI layers pull and unpack', async (t) => {
  const reg = await startRegistry({ t });
  const pusher = await imageService(t);
  const docker = await buildBusyboxImage({ format: 'docker' });
  const plainTop = await tarLayer([{ type: 'file', path: 'etc/plain', content: 'not compressed' }]);
  const plain = await buildBusyboxImage({ compression: 'none', extraLayers: [{ tar: plainTop, compression: 'none' }] });
  t.is(plain.layers[1].mediaType, MediaTypes.ociLayer);
  await pusher.pushImage(`${reg.host}/fmt/docker:1`, docker);
  await pusher.pushImage(`${reg.host}/fmt/plain:1`, plain);

  const svc = await imageService(t);
  const d = await svc.pull(`${reg.host}/fmt/docker:1`);
  t.is(d.target.mediaType, MediaTypes.dockerManifest);
  t.true((await stat(join(svc.layerDirs(d)[0], 'bin/busybox'))).isFile());
  const p = await svc.pull(`${reg.host}/fmt/plain:1`);
  const dirs = svc.layerDirs(p);
  t.is(dirs.length, 2);
  t.is(await readFile(join(dirs[0], 'etc/plain'), 'utf8'), 'not compressed');
  t.true((await stat(join(dirs[1], 'bin/busybox'))).isFile());
  // Same busybox tar: the gzip and plain layers have one diff id, hence one snapshot.
  t.is(d.chainIds[0], p.chainIds[0]);
});

test('concurrent pulls of one image share one download of each blob', async (t) => {
  const reg = await startRegistry({ t });
  const pusher = await imageService(t);
  const top = await tarLayer([{ type: 'file', path: 'x', content: 'x' }]);
  const img = await buildBusyboxImage({ extraLayers: [{ tar: top }] });
  await pusher.pushImage(`${reg.host}/conc/app:1`, img);
  const proxy = await countingProxy(t, reg.url);

  const svc = await imageService(t);
  const ref = `${proxy.host}/conc/app:1`;
  const recs = await Promise.all([svc.pull(ref), svc.pull(ref), svc.pull(ref)]);
  t.true(recs.every((r) => r.manifest.digest === img.manifestDigest));
  const blobGets = proxy.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/sha256:'));
  t.is(blobGets.length, 1 + img.layers.length, 'config and each layer fetched once');
  t.is(new Set(blobGets.map((r) => r.path)).size, blobGets.length);
  // A pull of what is already here downloads nothing.
  const before = proxy.requests.length;
  await svc.pull(ref);
  t.false(proxy.requests.slice(before).some((r) => r.path.includes('/blobs/')));
});

test('an image pushed by skopeo pulls', async (t) => {
  const reg = await startRegistry({ t });
  const img = await buildBusyboxImage({ config: { Cmd: ['true'] } });
  const layout = await tempDir(t, 'swarmd-layout-');
  await writeOciLayout(layout, img, 'v1');
  await pushOciLayoutWithSkopeo(layout, 'v1', `${reg.host}/sko/busybox:v1`);
  const svc = await imageService(t);
  const rec = await svc.pull(`${reg.host}/sko/busybox:v1`);
  t.is(rec.manifest.digest, img.manifestDigest);
  t.deepEqual((await svc.config(rec)).config?.Cmd, ['true']);
});

test('push from the content store to another registry (upload) or repository (mount), then pull it elsewhere', async (t) => {
  const reg = await startRegistry({ t });
  const img = await buildBusyboxImage({ extraLayers: [{ tar: await tarLayer([{ type: 'file', path: 'pushed', content: 'yes' }]) }] });
  const a = await imageService(t);
  await a.pushImage(`${reg.host}/src/app:1`, img);
  await a.pull(`${reg.host}/src/app:1`);
  const proxy = await countingProxy(t, reg.url);
  const d = await a.push(`${proxy.host}/dst/app:2`, { source: `${reg.host}/src/app:1` });
  t.is(d, img.manifestDigest, 'the manifest is pushed byte for byte');
  const uploads = proxy.requests.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/'));
  t.is(uploads.length, 1 + img.layers.length);
  // Pushing again sends no blob: HEAD finds them all.
  const n = proxy.requests.length;
  await a.push(`${proxy.host}/dst/app:2`, { source: `${reg.host}/src/app:1` });
  t.false(proxy.requests.slice(n).some((r) => r.method === 'PUT' && r.path.includes('/blobs/')));

  // Within one registry, blobs are mounted from the source repository, not uploaded.
  const c = await imageService(t);
  await c.pull(`${proxy.host}/src/app:1`);
  const m = proxy.requests.length;
  t.is(await c.push(`${proxy.host}/mounted/app:1`, { source: `${proxy.host}/src/app:1` }), img.manifestDigest);
  const after = proxy.requests.slice(m);
  t.is(after.filter((r) => r.method === 'POST' && r.path.includes('mount=sha256')).length, 1 + img.layers.length);
  t.false(after.some((r) => r.method === 'PUT' && r.path.includes('/blobs/')), 'no blob bytes sent');

  const b = await imageService(t);
  t.is((await b.pull(`${reg.host}/mounted/app:1`)).manifest.digest, img.manifestDigest);
  const rec = await b.pull(`${reg.host}/dst/app:2`);
  t.is(rec.manifest.digest, img.manifestDigest);
  t.is(await readFile(join(b.layerDirs(rec)[0], 'pushed'), 'utf8'), 'yes');
});

test('a missing image is NOT_FOUND naming the reference, and nothing is left behind', async (t) => {
  const reg = await startRegistry({ t });
  const svc = await imageService(t);
  const err = await t.throwsAsync(svc.pull(`${reg.host}/no/such:tag`), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.NOT_FOUND);
  t.true(err.message.includes(`${reg.host}/no/such:tag`), err.message);
  const st = await storeState(svc.root);
  t.deepEqual([st.blobs, st.snapshots, st.images, st.ingest], [[], [], 0, []]);
  const local = await t.throwsAsync(svc.get(`${reg.host}/no/such:tag`), { instanceOf: SwarmError });
  t.is(local.code, ErrorCode.NOT_FOUND);
});

test('a pulled image with a whiteout and an opaque dir mounts as overlayfs with them applied', async (t) => {
  const reg = await startRegistry({ t });
  const pusher = await imageService(t);
  const mid = await tarLayer([
    { type: 'dir', path: 'srv/data' },
    { type: 'file', path: 'srv/data/old', content: 'old' },
    { type: 'file', path: 'srv/file', content: 'linked' },
    { type: 'link', path: 'srv/hard', target: 'srv/file' },
    { type: 'symlink', path: 'srv/soft', target: 'file' },
  ]);
  const top = await tarLayer([
    { type: 'whiteout', path: 'etc/group' },
    { type: 'opaque', path: 'srv/data' },
    { type: 'file', path: 'srv/data/new', content: 'new' },
  ]);
  const img = await buildBusyboxImage({ extraLayers: [{ tar: mid }, { tar: top, compression: 'none' }] });
  await pusher.pushImage(`${reg.host}/wh/app:1`, img);
  const svc = await imageService(t);
  const rec = await svc.pull(`${reg.host}/wh/app:1`);
  const dirs = svc.layerDirs(rec);
  t.is(dirs.length, 3);
  t.true((await lstat(join(dirs[0], 'etc/group'))).isCharacterDevice());
  t.is((await run('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(dirs[0], 'srv/data')])).stdout, 'y');
  t.is((await lstat(join(dirs[1], 'srv/hard'))).ino, (await lstat(join(dirs[1], 'srv/file'))).ino);

  const mnt = await tempDir(t, 'swarmd-ovl-');
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${dirs.join(':')}`, mnt]);
  t.teardown(() => run('umount', [mnt]).catch(() => undefined));
  t.false((await readdir(join(mnt, 'etc'))).includes('group'), 'the whiteout hides /etc/group');
  t.true((await readdir(join(mnt, 'etc'))).includes('passwd'));
  t.deepEqual(await readdir(join(mnt, 'srv/data')), ['new'], 'the opaque dir hides the lower contents');
  t.is(await readFile(join(mnt, 'srv/soft'), 'utf8'), 'linked');
  t.is(await readFile(join(mnt, 'srv/hard'), 'utf8'), 'linked');
  t.true((await stat(join(mnt, 'bin/busybox'))).isFile());
  await run('umount', [mnt]);
});

test('chunked uploads (PATCH with Content-Range) push big blobs in pieces', async (t) => {
  const reg = await startRegistry({ t });
  const proxy = await countingProxy(t, reg.url);
  const img = await buildBusyboxImage({ compression: 'none' });
  const chunk = 256 * 1024;
  const pusher = await imageService(t, { registry: { uploadChunkSize: chunk } });
  t.is(await pusher.pushImage(`${proxy.host}/chunks/app:1`, img), img.manifestDigest);
  const patches = proxy.requests.filter((r) => r.method === 'PATCH');
  t.is(patches.length, Math.ceil(img.layers[0].size / chunk), 'the layer in chunks; the small config in one PUT');
  // Also from the content store (ranges read from the blob file).
  const a = await imageService(t, { registry: { uploadChunkSize: chunk } });
  await a.pull(`${reg.host}/chunks/app:1`);
  await a.push(`${proxy.host}/chunks/copy:1`, { source: `${reg.host}/chunks/app:1` });
  t.is(proxy.requests.filter((r) => r.method === 'PATCH').length, 2 * patches.length);
  const b = await imageService(t);
  const rec = await b.pull(`${reg.host}/chunks/copy:1`);
  t.is(rec.manifest.digest, img.manifestDigest);
  t.true((await stat(join(b.layerDirs(rec)[0], 'bin/busybox'))).isFile());
});
