import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { ErrorCode, isSwarmError } from '@swarmd/common';
import { requires } from '@swarmd/testkit';
import { VolumeStore } from '../src/index.js';
import { logLines, newRuntime } from './container-helpers.js';

const rootTest = requires('root', 'runc', 'conmon', 'busybox');

test('volume store: create is idempotent, names and drivers are checked, remove refuses a volume in use', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-vol-'));
  let used = true;
  const vs = new VolumeStore(root, async () => used);
  const a = await vs.ensure('data');
  t.true(a.created);
  t.is(a.volume.mountpoint, join(root, 'volumes', 'data', '_data'));
  t.false((await vs.ensure('data')).created);
  t.deepEqual((await vs.list()).map((v) => v.name), ['data']);
  t.throws(() => vs.path('../etc'), { message: /not valid/ });
  const bad = await t.throwsAsync(vs.ensure('x', { driver: 'rexray' }));
  t.true(isSwarmError(bad, ErrorCode.INVALID_ARGUMENT));
  await t.throwsAsync(vs.remove('data'), { message: /in use/ });
  used = false;
  await vs.remove('data');
  t.deepEqual(await vs.list(), []);
  await t.throwsAsync(vs.remove('data'), { message: /not found/ });
});

rootTest('a named volume is created on first use, seeded from the image, and survives container replacement', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  await svc.create('v1', {
    image: busybox,
    spec: { command: ['sh', '-c', 'ls -A /data; echo "gen 1" > /data/state'], mounts: [{ type: 'volume', source: 'appdata', target: '/data' }] },
  });
  // The volume exists before the container runs.
  const vol = await svc.volumes.get('appdata');
  t.truthy(vol);
  t.is(vol!.mountpoint, join(root, 'volumes', 'appdata', '_data'));
  await svc.start('v1');
  t.is((await svc.wait('v1')).exitCode, 0);
  t.deepEqual(await logLines(svc, 'v1'), [], 'a new volume over a path the image lacks starts empty');
  await svc.remove('v1');
  t.is(await readFile(join(vol!.mountpoint, 'state'), 'utf8'), 'gen 1\n', 'kept after the container is gone');

  await svc.create('v2', { image: busybox, spec: { command: ['sh', '-c', 'cat /data/state'], mounts: [{ type: 'volume', source: 'appdata', target: '/data', readOnly: true }] } });
  await t.throwsAsync(svc.volumes.remove('appdata'), { message: /in use/ });
  await svc.start('v2');
  t.is((await svc.wait('v2')).exitCode, 0);
  t.deepEqual(await logLines(svc, 'v2'), ['stdout: gen 1']);
  await svc.remove('v2');

  // A new volume over a directory of the image starts with the image's files (Docker's copy-up).
  await svc.create('v3', { image: busybox, spec: { command: ['true'], mounts: [{ type: 'volume', source: 'etc', target: '/etc' }] } });
  t.truthy(await stat(join(root, 'volumes', 'etc', '_data', 'passwd')));
  await svc.remove('v3', { force: true });
  await svc.volumes.remove('appdata');
  await t.throwsAsync(stat(vol!.mountpoint), { code: 'ENOENT' });
});
