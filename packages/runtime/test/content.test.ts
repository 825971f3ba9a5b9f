import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { ErrorCode, SwarmError } from '@swarmd/common';
import { sha256Of } from '@swarmd/registry';
import { LocalContentStore } from '../src/index.js';

async function store(t: { teardown(fn: () => unknown): void }) {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-content-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const s = new LocalContentStore(root);
  await s.init();
  return { s, root };
}

test('a blob is written once, verified, readable, listed and deleted', async (t) => {
  const { s, root } = await store(t);
  const data = Buffer.from('hello content');
  const d = sha256Of(data);
  const w = await s.writer('ref1', d);
  await w.write(data.subarray(0, 5));
  await w.write(data.subarray(5));
  const info = await w.commit(data.length);
  t.deepEqual([info.digest, info.size], [d, data.length]);
  t.deepEqual(await readdir(join(root, 'content', 'blobs', 'sha256')), [d.slice(7)]);
  t.deepEqual(await readdir(join(root, 'content', 'ingest')), [], 'no temp file left');
  t.deepEqual(await s.readAll(d), data);
  const chunks: Buffer[] = [];
  for await (const c of (await s.read(d)) as AsyncIterable<Buffer>) chunks.push(c);
  t.deepEqual(Buffer.concat(chunks), data);
  // The same content again is no error and changes nothing.
  t.is((await s.put(data, d)).digest, d);
  t.is((await s.put(data)).digest, d, 'without an expected digest it is stored under its own');
  t.deepEqual((await s.list()).map((i) => i.digest), [d]);
  await s.delete(d);
  t.false(await s.exists(d));
  const err = await t.throwsAsync(s.info(d), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.NOT_FOUND);
});

test('a digest or size mismatch commits nothing and says which blob', async (t) => {
  const { s, root } = await store(t);
  const want = sha256Of('expected bytes');
  const w = await s.writer('bad', want);
  await w.write(Buffer.from('other bytes'));
  const err = await t.throwsAsync(w.commit(), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.DATA_LOSS);
  t.true(err.message.includes(want), err.message);
  t.regex(err.message, /digest mismatch/);
  const w2 = await s.writer('short', sha256Of('abc'));
  await w2.write(Buffer.from('abc'));
  const err2 = await t.throwsAsync(w2.commit(4), { instanceOf: SwarmError });
  t.is(err2.code, ErrorCode.DATA_LOSS);
  t.regex(err2.message, /size mismatch: got 3 bytes, expected 4/);
  t.deepEqual(await readdir(join(root, 'content', 'blobs', 'sha256')), []);
  t.deepEqual(await readdir(join(root, 'content', 'ingest')), []);
});

test('an aborted write leaves nothing; cleanIngest removes leftovers', async (t) => {
  const { s, root } = await store(t);
  const w = await s.writer('x', undefined);
  await w.write(Buffer.from('partial'));
  await w.abort();
  t.deepEqual(await readdir(join(root, 'content', 'ingest')), []);
  const w2 = await s.writer('y', undefined);
  await w2.write(Buffer.from('kept while active'));
  t.is(await s.cleanIngest(), 0, 'an active ingest is not removed');
  await w2.abort();
});

test('ensure() runs one fetch per digest for concurrent callers', async (t) => {
  const { s } = await store(t);
  const data = Buffer.from('shared download');
  const d = sha256Of(data);
  let fetches = 0;
  const fetch = async () => {
    fetches++;
    await new Promise((r) => setImmediate(r));
    await s.put(data, d);
  };
  const results = await Promise.all([s.ensure(d, fetch), s.ensure(d, fetch), s.ensure(d, fetch)]);
  t.is(fetches, 1);
  t.deepEqual(results, ['fetched', 'fetched', 'fetched']);
  t.is(await s.ensure(d, fetch), 'exists');
  t.is(fetches, 1);
});

test('bad digests are refused', async (t) => {
  const { s } = await store(t);
  const err = await t.throwsAsync(s.writer('x', 'sha256:nothex'), { instanceOf: SwarmError });
  t.is(err.code, ErrorCode.INVALID_ARGUMENT);
});
