/**
 * The real-process test: three raft-kv OS processes on loopback with their WALs on disk.
 * kill -9 of the leader during writes loses no acknowledged write; a member with a torn WAL tail
 * recovers; a member with a corrupt record in the middle of its WAL refuses to start.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KvClusterClient } from '../src/kv/kv-client.js';
import { bindServer, createRaftServer } from '../src/transport/grpc-transport.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'raft-kv.js');

async function freePort(): Promise<number> {
  const s = createRaftServer();
  const port = await bindServer(s, '127.0.0.1:0');
  s.forceShutdown();
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Proc {
  child: ChildProcess;
  stderr: string[];
  exited: Promise<number | null>;
}

class ProcCluster {
  readonly addrs = new Map<number, string>();
  readonly procs = new Map<number, Proc>();
  readonly all: ChildProcess[] = [];
  constructor(
    readonly root: string,
    readonly tickMs = 50,
  ) {}

  peersArg(): string {
    return [...this.addrs].map(([id, a]) => `${id}=${a}`).join(',');
  }

  dataDir(id: number): string {
    return join(this.root, `m${id}`);
  }

  start(id: number): Proc {
    const child = spawn(
      process.execPath,
      [BIN, '--id', String(id), '--listen', this.addrs.get(id)!, '--peers', this.peersArg(), '--data-dir', this.dataDir(id), '--tick-ms', String(this.tickMs)],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RAFT_KV_LOG_LEVEL: 'info' } },
    );
    this.all.push(child);
    const stderr: string[] = [];
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => stderr.push(d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const p = { child, stderr, exited };
    this.procs.set(id, p);
    return p;
  }

  async kill9(id: number): Promise<void> {
    const p = this.procs.get(id)!;
    p.child.kill('SIGKILL');
    await p.exited;
    this.procs.delete(id);
  }

  killAll(): void {
    for (const c of this.all) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }

  async leader(client: KvClusterClient, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const [id, addr] of this.addrs) {
        if (!this.procs.has(id)) continue;
        try {
          const st = await client.status(addr, 300);
          if (st.role === 'leader') return id;
        } catch {
          // not up yet
        }
      }
      await sleep(50);
    }
    throw new Error('no leader');
  }

  async lastSegment(id: number): Promise<string> {
    const dir = join(this.dataDir(id), 'wal');
    const segs = (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
    return join(dir, segs[segs.length - 1]);
  }
}

async function cluster(t: ExecutionContext): Promise<ProcCluster> {
  const root = await mkdtemp(join(tmpdir(), 'raft-proc-'));
  const c = new ProcCluster(root);
  t.teardown(async () => {
    c.killAll();
    await sleep(100);
    await rm(root, { recursive: true, force: true });
  });
  for (const id of [1, 2, 3]) c.addrs.set(id, `127.0.0.1:${await freePort()}`);
  for (const id of [1, 2, 3]) c.start(id);
  return c;
}

/** Writers that record every acknowledged write. */
function startWriters(client: KvClusterClient, n: number, prefix: string) {
  const acked = new Map<string, string>();
  let stop = false;
  let failures = 0;
  const loops = Array.from({ length: n }, async (_, w) => {
    for (let i = 0; !stop; i++) {
      const key = `${prefix}-${w}-${i}`;
      const value = `${key}:${Math.random().toString(36).slice(2)}`;
      try {
        await client.put(key, Buffer.from(value));
        acked.set(key, value);
      } catch {
        failures++;
      }
    }
  });
  return {
    acked,
    get failures() {
      return failures;
    },
    async stop() {
      stop = true;
      await Promise.all(loops);
    },
  };
}

async function checkAll(t: ExecutionContext, client: KvClusterClient, acked: Map<string, string>, what: string): Promise<void> {
  const keys = [...acked.keys()];
  let missing = 0;
  for (let i = 0; i < keys.length; i += 64) {
    await Promise.all(
      keys.slice(i, i + 64).map(async (k) => {
        const r = await client.get(k, true);
        if (!r.found || Buffer.from(r.value).toString() !== acked.get(k)) missing++;
      }),
    );
  }
  t.is(missing, 0, `${missing} of ${keys.length} acknowledged writes lost (${what})`);
}

test('kill -9 of the leader during writes loses no acknowledged write; it restarts and writes go on', async (t) => {
  const c = await cluster(t);
  const client = new KvClusterClient([...c.addrs.values()], { deadlineMs: 5000, attemptMs: 1000 });
  t.teardown(() => client.close());
  const leader = await c.leader(client);
  const writers = startWriters(client, 8, 'w');
  await sleep(1500);
  const beforeKill = writers.acked.size;
  t.true(beforeKill > 50, `only ${beforeKill} writes before the kill`);
  await c.kill9(leader);
  const killedAt = Date.now();
  // Writes resume under a new leader.
  while (writers.acked.size === beforeKill && Date.now() - killedAt < 10_000) await sleep(10);
  const failoverMs = Date.now() - killedAt;
  t.log(`first write accepted ${failoverMs} ms after kill -9 of the leader (member ${leader})`);
  t.true(writers.acked.size > beforeKill, 'writes accepted again after the kill');
  await sleep(500);
  c.start(leader);
  await sleep(1500);
  const afterRestart = writers.acked.size;
  await sleep(500);
  await writers.stop();
  t.true(writers.acked.size > afterRestart, 'writes accepted after the restart');
  t.log(`${writers.acked.size} acknowledged writes, ${writers.failures} failed (not acknowledged)`);
  await checkAll(t, client, writers.acked, 'read from the leader');
  // The restarted member itself has every acknowledged write (linearizable read through it).
  const direct = new KvClusterClient([c.addrs.get(leader)!], { deadlineMs: 10_000 });
  t.teardown(() => direct.close());
  await checkAll(t, direct, writers.acked, `read through the restarted member ${leader}`);
});

test('a torn WAL tail is truncated on restart; a corrupt WAL middle refuses to start, naming file and offset', async (t) => {
  const c = await cluster(t);
  const client = new KvClusterClient([...c.addrs.values()], { deadlineMs: 5000, attemptMs: 1000 });
  t.teardown(() => client.close());
  const leader = await c.leader(client);
  const writers = startWriters(client, 4, 't');
  await sleep(1000);
  await writers.stop();
  const [a, b] = [1, 2, 3].filter((id) => id !== leader);

  // Torn tail: the last record only partly reached the disk.
  await c.kill9(a);
  const segA = await c.lastSegment(a);
  const torn = Buffer.alloc(9 + 40);
  torn.writeUInt32LE(500, 0); // claims 500 payload bytes, only 40 follow
  torn[8] = 1;
  await appendFile(segA, torn);
  const pa = c.start(a);
  const more = startWriters(client, 4, 'after-torn');
  await sleep(1000);
  await more.stop();
  await checkAll(t, client, writers.acked, 'after the torn tail');
  await checkAll(t, client, more.acked, 'written after the torn member restarted');
  const direct = new KvClusterClient([c.addrs.get(a)!], { deadlineMs: 10_000 });
  t.teardown(() => direct.close());
  await checkAll(t, direct, more.acked, 'read through the member whose tail was torn');
  t.regex(pa.stderr.join(''), /torn tail truncated/);
  t.is(pa.child.exitCode, null, 'the torn member is still running');

  // Corrupt middle: flip a payload byte of a record in the middle of the segment.
  await c.kill9(b);
  const segB = await c.lastSegment(b);
  const buf = await readFile(segB);
  const offsets: number[] = [];
  for (let off = 0; off + 9 <= buf.length; off += 9 + buf.readUInt32LE(off)) offsets.push(off);
  t.true(offsets.length > 10, `only ${offsets.length} records`);
  const victim = offsets[Math.floor(offsets.length / 2)];
  buf[victim + 9 + Math.floor(buf.readUInt32LE(victim) / 2)] ^= 0xff;
  await writeFile(segB, buf);
  const pb = c.start(b);
  const code = await Promise.race([pb.exited, sleep(15_000).then(() => 'timeout' as const)]);
  t.not(code, 'timeout', 'the corrupt member should exit');
  t.not(code, 0);
  const err = pb.stderr.join('');
  t.regex(err, new RegExp(`${segB.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*offset ${victim}`));
  t.log(err.split('\n').find((l) => l.startsWith('raft-kv: refusing')) ?? err);
  // The two healthy members still serve writes.
  await client.put('still', Buffer.from('works'));
});
