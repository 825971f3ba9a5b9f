import { lstat, mkdir, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { ErrorCode, run, SwarmError } from '@swarmd/common';
import { buildImage, requires, sha256, tarLayer, writeOciLayout, type BuiltImage, type Teardown } from '@swarmd/testkit';
import { unpackLayer } from '../src/index.js';
import { imageService, storeState, tempDir } from './images-helpers.js';

const test = requires('root');

type Raw = Partial<tar.Header> & { name: string; body?: string };

/** A tar with any header tar-stream can write (devices, fifos, owners, PAX xattrs). */
async function rawTar(entries: Raw[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((res) => pack.on('end', () => res()));
  for (const { body, ...h } of entries) {
    await new Promise<void>((res, rej) => {
      const cb = (e?: Error | null) => (e ? rej(e) : res());
      const hdr = { mtime: new Date(1_000_000_000_000), uid: 0, gid: 0, mode: 0o644, ...h };
      if (body !== undefined) pack.entry({ ...hdr, size: Buffer.byteLength(body) }, body, cb);
      else pack.entry(hdr, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function importImage(t: Teardown, img: BuiltImage) {
  const svc = await imageService(t);
  const layout = await tempDir(t, 'swarmd-layout-');
  await writeOciLayout(layout, img, 'latest');
  return { svc, rec: () => svc.importOciLayout(layout, 'test/unpack:latest') };
}

test('whiteouts and opaque dirs take overlay form, and overlayfs hides what they delete', async (t) => {
  const lower = await tarLayer([
    { type: 'dir', path: 'etc' },
    { type: 'file', path: 'etc/motd', content: 'hello' },
    { type: 'file', path: 'etc/keep', content: 'kept' },
    { type: 'dir', path: 'var/cache' },
    { type: 'file', path: 'var/cache/old1', content: '1' },
    { type: 'dir', path: 'var/cache/sub' },
    { type: 'file', path: 'var/cache/sub/old2', content: '2' },
  ]);
  const upper = await tarLayer([
    { type: 'dir', path: 'etc' },
    { type: 'whiteout', path: 'etc/motd' },
    { type: 'dir', path: 'var/cache' },
    { type: 'opaque', path: 'var/cache' },
    { type: 'file', path: 'var/cache/new', content: 'new' },
  ]);
  const img = buildImage({ layers: [{ tar: lower }, { tar: upper, compression: 'none' }] });
  const { svc, rec: importIt } = await importImage(t, img);
  const rec = await importIt();
  const [top, bottom] = svc.layerDirs(rec);
  t.is(top, join(svc.root, 'snapshots', rec.chainIds[1].slice(7), 'fs'));
  // .wh.motd → a character device 0:0 named motd
  const wh = await lstat(join(top, 'etc/motd'));
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0);
  t.deepEqual(await readdir(join(top, 'etc')), ['motd'], 'no .wh. file is left');
  // .wh..wh..opq → trusted.overlay.opaque=y on the dir
  const { stdout } = await run('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', join(top, 'var/cache')]);
  t.is(stdout, 'y');
  t.deepEqual(await readdir(join(top, 'var/cache')), ['new']);
  t.deepEqual((await readdir(join(bottom, 'var/cache'))).sort(), ['old1', 'sub']);

  // What a container would see.
  const mnt = await tempDir(t, 'swarmd-ovl-');
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${[top, bottom].join(':')}`, mnt]);
  t.teardown(() => run('umount', [mnt]).catch(() => undefined));
  t.deepEqual(await readdir(join(mnt, 'etc')), ['keep']);
  t.is(await readFile(join(mnt, 'etc/keep'), 'utf8'), 'kept');
  t.deepEqual(await readdir(join(mnt, 'var/cache')), ['new']);
  await run('umount', [mnt]);
});

test('hard links, symlinks, devices, fifos, owners, modes, mtimes and xattrs are kept', async (t) => {
  const layer = await rawTar([
    { name: 'd/', type: 'directory', mode: 0o755 },
    { name: 'd/data', type: 'file', body: 'payload', uid: 1000, gid: 1001, mode: 0o640 },
    { name: 'd/data-link', type: 'link', linkname: 'd/data' },
    { name: 'd/sym', type: 'symlink', linkname: 'data', uid: 7, gid: 8 },
    { name: 'd/abs', type: 'symlink', linkname: '/etc/shadow' },
    { name: 'd/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
    { name: 'd/blk', type: 'block-device', devmajor: 7, devminor: 0, mode: 0o660 },
    { name: 'd/fifo', type: 'fifo', mode: 0o600 },
    { name: 'd/suid', type: 'file', body: '#!', mode: 0o4755, uid: 0, gid: 0 },
    { name: 'ro/', type: 'directory', mode: 0o555, uid: 5, gid: 6, mtime: new Date(1234_000) },
    { name: 'ro/inside', type: 'file', body: 'x' },
    { name: 'x', type: 'file', body: 'xa', pax: { 'SCHILY.xattr.user.note': 'hi' } },
  ]);
  const img = buildImage({ layers: [{ tar: layer }] });
  const { svc, rec: importIt } = await importImage(t, img);
  const [fs] = svc.layerDirs(await importIt());
  const data = await lstat(join(fs, 'd/data'));
  const link = await lstat(join(fs, 'd/data-link'));
  t.is(link.ino, data.ino, 'hard link shares the inode');
  t.is(data.nlink, 2);
  t.deepEqual([data.uid, data.gid, data.mode & 0o7777], [1000, 1001, 0o640]);
  t.is(data.mtimeMs, 1_000_000_000_000);
  const sym = await lstat(join(fs, 'd/sym'));
  t.true(sym.isSymbolicLink());
  t.deepEqual([sym.uid, sym.gid], [7, 8], 'lchown, not chown through the link');
  t.is(await readlink(join(fs, 'd/sym')), 'data');
  t.is(await readlink(join(fs, 'd/abs')), '/etc/shadow', 'an absolute symlink is data, not followed');
  const nul = await lstat(join(fs, 'd/null'));
  t.true(nul.isCharacterDevice());
  t.is(nul.rdev, (1 << 8) | 3);
  t.true((await lstat(join(fs, 'd/blk'))).isBlockDevice());
  t.true((await lstat(join(fs, 'd/fifo'))).isFIFO());
  t.is((await stat(join(fs, 'd/suid'))).mode & 0o7777, 0o4755, 'set-uid survives chown');
  const ro = await stat(join(fs, 'ro'));
  t.deepEqual([ro.mode & 0o7777, ro.uid, ro.gid, ro.mtimeMs], [0o555, 5, 6, 1234_000], 'dir metadata set after its entries');
  t.is(await readFile(join(fs, 'ro/inside'), 'utf8'), 'x');
  t.is((await run('getfattr', ['--only-values', '-n', 'user.note', join(fs, 'x')])).stdout, 'hi');
});

test('binary xattr values (like security.capability) are kept byte for byte', async (t) => {
  // tar-stream writes PAX values as text: write a placeholder, then put the raw bytes in its place.
  const bytes = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x80, 0x00, 0xc3]);
  const placeholder = 'Q'.repeat(bytes.length);
  const layer = await rawTar([{ name: 'bin', type: 'file', body: 'b', pax: { 'SCHILY.xattr.user.bin': placeholder } }]);
  const at = layer.indexOf(`user.bin=${placeholder}`) + 'user.bin='.length;
  t.true(at > 'user.bin='.length);
  bytes.copy(layer, at);
  const dir = await tempDir(t);
  const res = await unpackLayer(Readable.from([layer]), dir);
  t.deepEqual(res.skippedXattrs, []);
  const { stdout } = await run('getfattr', ['-e', 'hex', '-n', 'user.bin', join(dir, 'bin')]);
  t.true(stdout.includes(`user.bin=0x${bytes.toString('hex')}`), stdout);
});

test('entries cannot escape the layer: `..` names refused, symlinked parents resolved inside', async (t) => {
  const outside = await tempDir(t, 'swarmd-outside-');
  // A symlink to an absolute path outside, then a file "through" it: lands inside the layer.
  const viaLink = await rawTar([
    { name: 'esc', type: 'symlink', linkname: outside },
    { name: 'esc/pwned', type: 'file', body: 'no' },
    { name: 'up', type: 'symlink', linkname: '../../../../../../..' + outside },
    { name: 'up/pwned2', type: 'file', body: 'no' },
  ]);
  const { svc, rec } = await importImage(t, buildImage({ layers: [{ tar: viaLink }] }));
  const [fs] = svc.layerDirs(await rec());
  t.deepEqual(await readdir(outside), [], 'nothing written outside');
  t.is(await readFile(join(fs, outside, 'pwned'), 'utf8'), 'no');
  t.is(await readFile(join(fs, outside, 'pwned2'), 'utf8'), 'no');

  for (const bad of [
    [{ name: '../evil', type: 'file', body: 'x' }],
    [{ name: 'a/../../evil', type: 'file', body: 'x' }],
    [{ name: 'f', type: 'file', body: 'x' }, { name: 'hl', type: 'link', linkname: '../../etc/passwd' }],
  ] as Raw[][]) {
    const { svc: s2, rec: r2 } = await importImage(t, buildImage({ layers: [{ tar: await rawTar(bad) }] }));
    const err = await t.throwsAsync(r2(), { instanceOf: SwarmError });
    t.is(err.code, ErrorCode.DATA_LOSS);
    t.regex(err.message, /outside the layer/);
    const st = await storeState(s2.root);
    t.deepEqual([st.snapshots, st.images], [[], 0], 'no snapshot (not even a temp dir) and no image');
  }
  t.deepEqual(await readdir(outside), []);
});

test('a layer whose tar does not match its diff id is refused and leaves no snapshot', async (t) => {
  const img = buildImage({ layers: [{ tar: await tarLayer([{ type: 'file', path: 'a', content: 'a' }]) }] });
  // Claim another diff id in the config, and re-make the manifest over it.
  const config = JSON.parse(img.config.toString()) as { rootfs: { diff_ids: string[] } };
  const wrong = sha256('something else');
  config.rootfs.diff_ids = [wrong];
  const cfg = Buffer.from(JSON.stringify(config));
  const manifest = JSON.parse(img.manifest.toString()) as { config: { digest: string; size: number } };
  manifest.config = { ...manifest.config, digest: sha256(cfg), size: cfg.length };
  const mb = Buffer.from(JSON.stringify(manifest));
  const bad: BuiltImage = { ...img, config: cfg, configDigest: sha256(cfg), manifest: mb, manifestDigest: sha256(mb) };
  const { svc, rec } = await importImage(t, bad);
  const err = await t.throwsAsync(rec(), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.DATA_LOSS);
  t.true(err.message.includes(wrong) && err.message.includes(img.layers[0].diffId), err.message);
  const st = await storeState(svc.root);
  t.deepEqual([st.snapshots, st.images], [[], 0]);
});

test('unpackLayer detects gzip by its magic whatever the media type says', async (t) => {
  const tarBuf = await tarLayer([{ type: 'file', path: 'f', content: 'gz' }]);
  const { gzipSync } = await import('node:zlib');
  const dir = await tempDir(t);
  await mkdir(join(dir, 'a'));
  await mkdir(join(dir, 'b'));
  const r1 = await unpackLayer(Readable.from([gzipSync(tarBuf)]), join(dir, 'a'), { mediaType: 'application/vnd.oci.image.layer.v1.tar' });
  const r2 = await unpackLayer(Readable.from([tarBuf]), join(dir, 'b'), { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
  t.is(r1.diffId, sha256(tarBuf));
  t.is(r2.diffId, sha256(tarBuf));
  t.is(await readFile(join(dir, 'a/f'), 'utf8'), 'gz');
  const err = await t.throwsAsync(unpackLayer(Readable.from([Buffer.from('garbage that is no tar at all'.repeat(40))]), join(dir, 'b')), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.DATA_LOSS);
});

test('"./" names, the layer root entry, and entries replacing others of another type', async (t) => {
  const layer = await rawTar([
    { name: './', type: 'directory', mode: 0o750, mtime: new Date(5000) },
    { name: './etc/', type: 'directory', mode: 0o755 },
    { name: './etc/x', type: 'file', body: 'file first' },
    { name: './etc/x/', type: 'directory', mode: 0o700 },
    { name: './etc/x/inner', type: 'file', body: 'in' },
    { name: './etc/y/', type: 'directory', mode: 0o755 },
    { name: './etc/y/z', type: 'file', body: 'z' },
    { name: './etc/y', type: 'symlink', linkname: 'x' },
  ]);
  const dir = await tempDir(t);
  await unpackLayer(Readable.from([layer]), dir);
  const root = await stat(dir);
  t.deepEqual([root.mode & 0o777, root.mtimeMs], [0o750, 5000], 'the root entry sets the layer dir');
  t.true((await stat(join(dir, 'etc/x'))).isDirectory());
  t.is(await readFile(join(dir, 'etc/x/inner'), 'utf8'), 'in');
  t.is(await readlink(join(dir, 'etc/y')), 'x', 'a later symlink replaces the directory');
  t.is((await stat(join(dir, 'etc/x'))).mode & 0o777, 0o700, "the replaced directory's mode is not applied through the symlink");
});

test('metadata and opaque markers of a directory replaced by a symlink are not applied through it', async (t) => {
  const outside = await tempDir(t, 'swarmd-outside-');
  const before = await stat(outside);
  const layer = await rawTar([
    { name: 'd/', type: 'directory', mode: 0o777, uid: 4242, gid: 4242, mtime: new Date(0) },
    { name: 'd/.wh..wh..opq', type: 'file', body: '' },
    { name: 'd', type: 'symlink', linkname: outside },
  ]);
  const dir = await tempDir(t);
  await unpackLayer(Readable.from([layer]), dir);
  const after = await stat(outside);
  t.deepEqual([after.mode, after.uid, after.gid, after.mtimeMs], [before.mode, before.uid, before.gid, before.mtimeMs]);
  const xattrs = await run('getfattr', ['-d', '-m', '-', outside]);
  t.false(xattrs.stdout.includes('overlay'), 'no opaque marker set through the link');
});
