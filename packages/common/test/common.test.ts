import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import test from 'ava';
import { createLogger, describeError, ErrorCode, isoTime, isSwarmError, loadConfig, run, SwarmError, wrapError, z } from '../src/index.js';

test('errors carry a code and a cause, and describe their chain', (t) => {
  const root = new Error('disk full');
  const e = wrapError(ErrorCode.UNAVAILABLE, 'cannot write WAL', root);
  t.is(e.code, 'UNAVAILABLE');
  t.is(e.cause, root);
  t.is(e.message, 'cannot write WAL: disk full');
  t.is(describeError(new SwarmError(ErrorCode.INTERNAL, 'apply failed', { cause: e })), 'apply failed: cannot write WAL: disk full');
  t.true(isSwarmError(e, ErrorCode.UNAVAILABLE));
  t.false(isSwarmError(e, ErrorCode.NOT_FOUND));
});

test('json logger writes one JSON object per line with component and fields', (t) => {
  const lines: string[] = [];
  const stream = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
  const log = createLogger({ format: 'json', component: 'manager/test', stream, level: 'debug' });
  log.child({ node: 'n1' }).info('elected', { term: 3 });
  const obj = JSON.parse(lines.join('').trim()) as Record<string, unknown>;
  t.like(obj, { level: 'info', message: 'elected', component: 'manager/test', node: 'n1', term: 3 });
  t.regex(String(obj.timestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.true(Math.abs(Date.parse(String(obj.timestamp)) - Date.now()) < 60_000);
});

test('isoTime formats as Date#toISOString does', (t) => {
  const edges = [0, -1, 1, 951_782_400_000, 951_868_799_999, 4_107_542_400_000, 253_402_300_799_999, -62_167_219_200_000, -2_208_988_800_001, Date.now()];
  for (const ms of edges) t.is(isoTime(ms), new Date(ms).toISOString(), String(ms));
  let seed = 42;
  for (let i = 0; i < 20_000; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    const ms = Math.floor((seed / 2_147_483_648) * 315_569_520_000_000) - 62_167_219_200_000; // years 0-9999
    if (isoTime(ms) !== new Date(ms).toISOString()) t.fail(`${ms}: ${isoTime(ms)} != ${new Date(ms).toISOString()}`);
  }
  t.pass();
});

test('human logger writes short text', (t) => {
  const out: string[] = [];
  const stream = new Writable({ write: (c: Buffer, _e, cb) => (out.push(c.toString()), cb()) });
  createLogger({ format: 'human', stream }).warn('node down', { id: 'abc' });
  t.is(out.join('').trim(), 'WARN node down id=abc');
});

const schema = z.object({ listenAddr: z.string(), heartbeatPeriodMs: z.number().int().positive().default(5000) }).strict();

test('config: file overlaid by flags, validated', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cfg-'));
  t.teardown(() => rm(dir, { recursive: true }));
  const file = join(dir, 'swarmd.yaml');
  await writeFile(file, 'listenAddr: 0.0.0.0:4242\nheartbeatPeriodMs: 2000\n');
  const cfg = await loadConfig(schema, { file, overrides: { heartbeatPeriodMs: 1000, listenAddr: undefined } });
  t.deepEqual(cfg, { listenAddr: '0.0.0.0:4242', heartbeatPeriodMs: 1000 });
});

test('config: bad input names the file and the field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cfg-'));
  t.teardown(() => rm(dir, { recursive: true }));
  const file = join(dir, 'bad.yaml');
  await writeFile(file, 'listenAddr: 1\nheartbeatPeriodMs: -3\nbogus: 1\n');
  const err = await t.throwsAsync(loadConfig(schema, { file }));
  t.true(isSwarmError(err, ErrorCode.INVALID_ARGUMENT));
  t.regex(err.message, /bad\.yaml/);
  t.regex(err.message, /listenAddr/);
  t.regex(err.message, /heartbeatPeriodMs/);
  t.regex(err.message, /bogus/);
  await writeFile(file, 'listenAddr: [unclosed\n');
  await t.throwsAsync(loadConfig(schema, { file }), { message: /not valid YAML/ });
  await t.throwsAsync(loadConfig(schema, { file: join(dir, 'missing.yaml') }), { message: /cannot read/ });
});

test('run reports the command and its stderr when it fails', async (t) => {
  const ok = await run('sh', ['-c', 'echo out; echo err >&2']);
  t.is(ok.stdout, 'out\n');
  const err = await t.throwsAsync(run('sh', ['-c', 'echo boom >&2; exit 3']));
  t.regex(err.message, /exit 3: boom/);
});
