import test from 'ava';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SnapshotFiles } from '../src/durable/snapshot-files.js';
import type { Snapshot } from '../src/pb/raft/raft.js';

function snap(index: number, term = 1): Snapshot {
  return { data: Buffer.from([index, term, 7]), metadata: { index, term, confState: { voters: [1, 2, 3], learners: [] } } };
}

test('snapshots are saved atomically, the newest is loaded, old ones pruned', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'raft-snap-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const files = new SnapshotFiles(dir, { keep: 2 });
  t.is(await files.loadNewest(), undefined);
  await files.save(snap(10));
  await files.save(snap(30, 2));
  await files.save(snap(20, 2));
  const newest = await files.loadNewest();
  t.deepEqual(newest, snap(30, 2));
  t.is(await files.prune(), 1);
  t.deepEqual((await readdir(dir)).sort(), ['0000000000000002-0000000000000014.snap', '0000000000000002-000000000000001e.snap']);
});

test('a corrupt newest snapshot is reported and the older one is used', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'raft-snap-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const errors: string[] = [];
  const logger = { debug() {}, info() {}, warn() {}, error: (m: string) => errors.push(m) };
  const files = new SnapshotFiles(dir, { logger });
  await files.save(snap(10));
  const p = await files.save(snap(20));
  const buf = await readFile(p);
  buf[buf.length - 1] ^= 0x55;
  await writeFile(p, buf);
  t.deepEqual(await files.loadNewest(), snap(10));
  t.is(errors.length, 1);
  // A leftover tmp file from a crash mid-save is ignored and pruned.
  await writeFile(join(dir, '0000000000000001-0000000000000063.snap.tmp'), 'partial');
  t.deepEqual(await files.loadNewest(), snap(10));
  await files.prune();
  t.false((await readdir(dir)).some((n) => n.endsWith('.tmp')));
});
