import test from 'ava';
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wal, WalCorruptError } from '../src/durable/wal.js';
import { EntryType, type Entry } from '../src/pb/raft/raft.js';

async function tmp(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'raft-wal-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function ent(index: number, term = 1, size = 16): Entry {
  return { index, term, type: EntryType.ENTRY_NORMAL, data: Buffer.alloc(size, index % 251) };
}

function range(lo: number, hi: number, term = 1, size = 16): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(ent(i, term, size));
  return out;
}

test('append and recover entries and hard state', async (t) => {
  const dir = await tmp(t);
  const { wal, state } = await Wal.open(dir);
  t.deepEqual(state.entries, []);
  t.is(state.hardState, undefined);
  await wal.save({ term: 1, vote: 1, commit: 0 }, range(1, 10));
  await wal.save({ term: 2, vote: 2, commit: 7 }, range(11, 12, 2));
  await wal.close();
  const r = await Wal.open(dir);
  t.deepEqual(r.state.hardState, { term: 2, vote: 2, commit: 7 });
  t.deepEqual(
    r.state.entries.map((e) => [e.index, e.term]),
    range(1, 12).map((e) => [e.index, e.index > 10 ? 2 : 1]),
  );
  t.deepEqual(r.state.entries[3].data, ent(4).data);
  await r.wal.close();
});

test('group commit: many concurrent saves share one fsync', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir);
  const saves: Promise<void>[] = [];
  for (let i = 1; i <= 200; i++) saves.push(wal.save(undefined, [ent(i)]));
  await Promise.all(saves);
  t.true(wal.stats.fsyncs <= 3, `fsyncs ${wal.stats.fsyncs}`);
  t.true(wal.stats.writes <= 3, `writes ${wal.stats.writes}`);
  await wal.close();
  const r = await Wal.open(dir);
  t.is(r.state.entries.length, 200);
  await r.wal.close();
});

test('a conflicting suffix written by a new leader replaces the old one on replay', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir);
  await wal.save({ term: 1, vote: 1, commit: 3 }, range(1, 8, 1));
  await wal.save({ term: 2, vote: 2, commit: 3 }, range(5, 6, 2));
  await wal.close();
  const r = await Wal.open(dir);
  t.deepEqual(
    r.state.entries.map((e) => `${e.index}/${e.term}`),
    ['1/1', '2/1', '3/1', '4/1', '5/2', '6/2'],
  );
  await r.wal.close();
});

test('segments are cut, replayed in order, and released behind a snapshot', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir, { segmentBytes: 4096 });
  for (let i = 1; i <= 100; i += 10) await wal.save({ term: 1, vote: 1, commit: i }, range(i, i + 9, 1, 100));
  const before = wal.segmentFiles().length;
  t.true(before > 3, `segments ${before}`);
  await wal.saveSnapshot({ index: 60, term: 1 }, false);
  const released = await wal.releaseTo(60);
  t.true(released > 0);
  t.is(wal.segmentFiles().length, before - released);
  await wal.save({ term: 1, vote: 1, commit: 100 }, []);
  await wal.close();
  const r = await Wal.open(dir, { segmentBytes: 4096 });
  t.deepEqual(r.state.snapshot, { index: 60, term: 1 });
  t.is(r.state.entries[0].index, 61);
  t.is(r.state.entries[r.state.entries.length - 1].index, 100);
  t.is(r.state.hardState?.commit, 100);
  await r.wal.close();
});

test('an install marker drops the entries before it', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir);
  await wal.save({ term: 1, vote: 1, commit: 2 }, range(1, 5));
  await wal.saveSnapshot({ index: 50, term: 3 }, true);
  await wal.save({ term: 3, vote: 0, commit: 50 }, range(51, 52, 3));
  await wal.close();
  const r = await Wal.open(dir);
  t.deepEqual(r.state.snapshot, { index: 50, term: 3 });
  t.deepEqual(
    r.state.entries.map((e) => e.index),
    [51, 52],
  );
  await r.wal.close();
});

test('a torn tail (crash between write and fsync) is truncated and logged', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir);
  await wal.save({ term: 1, vote: 1, commit: 5 }, range(1, 10));
  await wal.close();
  const [seg] = await readdir(dir);
  const path = join(dir, seg);
  const full = (await stat(path)).size;
  // Simulate the crash: the last record only partly reached the disk.
  await truncate(path, full - 7);
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (m: string, f?: Record<string, unknown>) => warnings.push(`${m} ${JSON.stringify(f)}`) };
  const r = await Wal.open(dir, { logger });
  // The last record (the hard state) was torn; the entries before it are intact.
  t.is(r.state.entries.length, 10);
  t.is(r.state.hardState, undefined);
  t.is(warnings.length, 1);
  t.regex(warnings[0], /torn tail/);
  // Writing after recovery works and survives another restart.
  await r.wal.save({ term: 1, vote: 1, commit: 11 }, range(11, 11));
  await r.wal.close();
  const r2 = await Wal.open(dir);
  t.is(r2.state.entries.length, 11);
  t.is(r2.state.hardState?.commit, 11);
  await r2.wal.close();
});

test('a torn tail of zeros or garbage after the last full record is truncated', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir);
  await wal.save({ term: 1, vote: 1, commit: 5 }, range(1, 3));
  await wal.close();
  const [seg] = await readdir(dir);
  await appendFile(join(dir, seg), Buffer.alloc(300));
  const r = await Wal.open(dir);
  t.is(r.state.entries.length, 3);
  await r.wal.close();
  await appendFile(join(dir, seg), Buffer.from([20, 0, 0, 0, 1, 2, 3]));
  const r2 = await Wal.open(dir);
  t.is(r2.state.entries.length, 3);
  await r2.wal.close();
});

test('a corrupt record in the middle refuses to start, naming file and offset', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir);
  await wal.save({ term: 1, vote: 1, commit: 5 }, range(1, 10));
  await wal.close();
  const [seg] = await readdir(dir);
  const path = join(dir, seg);
  const buf = await readFile(path);
  const recordSize = buf.length / 11; // 10 equal entry records + the hard state (different size)
  t.true(recordSize > 0);
  // Flip a byte inside the payload of the 3rd record.
  const off3 = buf.readUInt32LE(0) + 9 + buf.readUInt32LE(buf.readUInt32LE(0) + 9) + 9;
  buf[off3 + 12] ^= 0xff;
  await writeFile(path, buf);
  const err = await t.throwsAsync(Wal.open(dir), { instanceOf: WalCorruptError });
  t.is(err.file, path);
  t.is(err.offset, off3);
  t.regex(err.message, new RegExp(`${seg}.*offset ${off3}`));
  // The file was not modified.
  t.deepEqual(await readFile(path), buf);
});

test('a corrupt record in an older segment refuses to start', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir, { segmentBytes: 2048 });
  for (let i = 1; i <= 60; i += 10) await wal.save(undefined, range(i, i + 9, 1, 100));
  await wal.close();
  const segs = (await readdir(dir)).sort();
  t.true(segs.length > 1);
  const path = join(dir, segs[0]);
  const buf = await readFile(path);
  // Corrupt the very last record of a non-last segment: still not a torn tail.
  buf[buf.length - 1] ^= 0xff;
  await writeFile(path, buf);
  const err = await t.throwsAsync(Wal.open(dir, { segmentBytes: 2048 }), { instanceOf: WalCorruptError });
  t.is(err.file, path);
});

test('after several snapshots and releases the log still replays (segment heads carry older markers)', async (t) => {
  const dir = await tmp(t);
  const { wal } = await Wal.open(dir, { segmentBytes: 2048 });
  let next = 1;
  const write = async (n: number) => {
    for (let i = 0; i < n; i += 5) {
      await wal.save({ term: 1, vote: 1, commit: next + 4 }, range(next, next + 4, 1, 100));
      next += 5;
    }
  };
  await write(100);
  await wal.saveSnapshot({ index: 60, term: 1 }, false);
  await wal.releaseTo(60);
  await write(100); // new segments are headed by the marker at 60
  await wal.saveSnapshot({ index: 150, term: 1 }, false);
  t.true((await wal.releaseTo(150)) > 0);
  await write(30);
  await wal.close();
  const r = await Wal.open(dir, { segmentBytes: 2048 });
  t.deepEqual(r.state.snapshot, { index: 150, term: 1 });
  t.is(r.state.entries[0].index, 151);
  t.is(r.state.entries[r.state.entries.length - 1].index, next - 1);
  t.is(r.state.entries.length, next - 1 - 150);
  await r.wal.close();
});
