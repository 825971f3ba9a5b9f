import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ErrorCode, isSwarmError } from '@swarmd/common';
import { requires } from '@swarmd/testkit';
import { Mounter, OverlaySnapshotter, isMountPoint, mountsUnder, resolveInRoot, resolveUserFrom } from '../src/index.js';

async function layers(t: { teardown(fn: () => unknown): void }) {
  const base = await mkdtemp(join(tmpdir(), 'swarmd-snap-'));
  t.teardown(async () => {
    for (const m of await mountsUnder(base)) await new Mounter().unmount(m);
    await rm(base, { recursive: true, force: true });
  });
  const low = join(base, 'l1');
  const top = join(base, 'l2');
  await mkdir(join(low, 'etc'), { recursive: true });
  await mkdir(join(top, 'etc'), { recursive: true });
  await writeFile(join(low, 'etc', 'a'), 'low a');
  await writeFile(join(low, 'etc', 'b'), 'low b');
  await writeFile(join(top, 'etc', 'a'), 'top a');
  return { base, low, top };
}

test('prepare returns an overlay mount with layers top first and its own upper and work dirs', async (t) => {
  const { base, low, top } = await layers(t);
  const s = new OverlaySnapshotter(join(base, 'containers'));
  const mounts = await s.prepare('c1', [top, low]);
  t.deepEqual(mounts, [
    {
      type: 'overlay',
      source: 'overlay',
      options: [`lowerdir=${top}:${low}`, `upperdir=${join(base, 'containers', 'c1', 'upper')}`, `workdir=${join(base, 'containers', 'c1', 'work')}`, 'index=off'],
    },
  ]);
  t.deepEqual(await s.mounts('c1'), mounts);
  t.is((await s.stat('c1')).kind, 'active');
  await t.throwsAsync(s.prepare('c1', [low]), { message: /already exists/ });
  t.deepEqual(await s.view('v1', [low]), [{ type: 'bind', source: low, options: ['rbind', 'ro'] }]);
  t.deepEqual(await s.view('v2', [top, low]), [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${top}:${low}`] }]);
  const missing = await t.throwsAsync(s.prepare('c2', [join(base, 'nope')]));
  t.true(isSwarmError(missing, ErrorCode.NOT_FOUND));
  t.throws(() => s.dir('../x'), { message: /not valid/ });
  await s.remove('c1');
  t.deepEqual(await readdir(join(base, 'containers', 'c1')), []);
  await t.throwsAsync(s.stat('c1'), { message: /not found/ });
});

test('users resolve from passwd and group text', (t) => {
  const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/srv/app:/bin/sh\n';
  const group = 'root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:app\n';
  t.deepEqual(resolveUserFrom('app', passwd, group), { uid: 1000, gid: 1000, additionalGids: [1000, 50, 10], home: '/srv/app' });
  t.deepEqual(resolveUserFrom('app:staff', passwd, group), { uid: 1000, gid: 50, additionalGids: [50], home: '/srv/app' });
  t.deepEqual(resolveUserFrom('', passwd, group), { uid: 0, gid: 0, additionalGids: [0], home: '/root' });
  t.deepEqual(resolveUserFrom('4242:7', undefined, undefined), { uid: 4242, gid: 7, additionalGids: [7], home: '/' });
  t.throws(() => resolveUserFrom('ghost', passwd, group), { message: /user "ghost" not found/ });
  t.throws(() => resolveUserFrom('ghost', undefined, undefined), { message: /has no \/etc\/passwd/ });
  t.throws(() => resolveUserFrom('app:ghosts', passwd, group), { message: /group "ghosts" not found/ });
  t.throws(() => resolveUserFrom('a:b:c', passwd, group), { message: /expected/ });
});

test("supplementary groups are Docker's: the primary group first, then the groups listing the user, only when no group is forced", (t) => {
  // What `docker run -u ...` (dockerd 20.10) sets as additionalGids for this passwd and group.
  const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n';
  const group = 'root:x:0:\ndaemon:x:1:app\ncrew:x:2345:app\n';
  t.deepEqual(resolveUserFrom('app', passwd, group).additionalGids, [2345, 1], 'the primary group once, even when it lists the user');
  t.deepEqual(resolveUserFrom('app:daemon', passwd, group).additionalGids, [1]);
  t.deepEqual(resolveUserFrom('1234:2345', passwd, group).additionalGids, [2345]);
  t.deepEqual(resolveUserFrom('4321', passwd, group).additionalGids, [0]);
});

test('paths resolve inside the rootfs, never escaping through symlinks', async (t) => {
  const { base } = await layers(t);
  const root = join(base, 'l1');
  const { symlink } = await import('node:fs/promises');
  await symlink('/etc/a', join(root, 'abs'));
  await symlink('../../../../../../etc/b', join(root, 'etc', 'rel'));
  t.is(await resolveInRoot(root, '/abs'), join(root, 'etc', 'a'));
  t.is(await resolveInRoot(root, '/etc/rel'), join(root, 'etc', 'b'));
  t.is(await resolveInRoot(root, '/../../x'), join(root, 'x'));
});

requires('root')('an overlay snapshot mounts: the top layer wins, writes go to upper, the view is read-only', async (t) => {
  const { base, low, top } = await layers(t);
  const s = new OverlaySnapshotter(join(base, 'containers'));
  const m = new Mounter();
  const target = join(base, 'containers', 'c1', 'rootfs');
  const [ov] = await s.prepare('c1', [top, low]);
  await mkdir(target, { recursive: true });
  await m.mount(ov, target);
  t.true(await isMountPoint(target));
  t.is(await readFile(join(target, 'etc', 'a'), 'utf8'), 'top a');
  t.is(await readFile(join(target, 'etc', 'b'), 'utf8'), 'low b');
  await writeFile(join(target, 'etc', 'c'), 'new');
  await rm(join(target, 'etc', 'b'));
  t.is(await readFile(join(base, 'containers', 'c1', 'upper', 'etc', 'c'), 'utf8'), 'new');
  t.is(await readFile(join(low, 'etc', 'b'), 'utf8'), 'low b', 'the layer is untouched');

  const vt = join(base, 'view');
  await mkdir(vt);
  const [view] = await s.view('v', [top]);
  await m.mount(view, vt);
  t.is(await readFile(join(vt, 'etc', 'a'), 'utf8'), 'top a');
  await t.throwsAsync(writeFile(join(vt, 'x'), 'x'), { code: 'EROFS' });

  // Many long layer paths overflow one page of mount options: relative lowerdirs then.
  const many: string[] = [];
  for (let i = 0; i < 60; i++) {
    const d = join(base, 'layers', `${'x'.repeat(60)}-${i}`);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, `f${i}`), String(i));
    many.push(d);
  }
  const [big] = await s.prepare('big', many);
  t.true(big.options.join(',').length > 4096);
  const bt = join(base, 'big');
  await mkdir(bt);
  await m.mount(big, bt);
  t.is(await readFile(join(bt, 'f59'), 'utf8'), '59');

  await m.unmountAll(base);
  t.deepEqual(await mountsUnder(base), []);
  await s.remove('c1');
});
