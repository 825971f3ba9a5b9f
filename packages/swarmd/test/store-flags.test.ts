// `swarmd init --store etcd ...` with bad flags: a real swarmd process says what is wrong and
// leaves no state dir behind.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestCa, freePort, requires, startEtcd } from '@swarmd/testkit';

const MAIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');

function swarmdInit(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [MAIN, 'init', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => res({ code, stderr }));
  });
}

test('swarmd init --store etcd: missing endpoints, flags without --store etcd, an unreadable or non-PEM file, a malformed URL and an unreachable etcd are refused by name, and no state dir is left', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-store-flags-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const notPem = join(root, 'not.pem');
  await writeFile(notPem, 'hello\n');
  const closed = `http://127.0.0.1:${await freePort()}`;
  const cases: [string, string[], RegExp][] = [
    ['no endpoints', ['--store', 'etcd'], /--store etcd: --etcd-endpoints is required/],
    ['endpoints without --store etcd', ['--etcd-endpoints', closed], /--etcd-endpoints: only with --store etcd/],
    ['unknown backend', ['--store', 'zookeeper'], /store: .*'raft' \| 'etcd'|store.*(raft|etcd)/i],
    ['unreadable CA', ['--store', 'etcd', '--etcd-endpoints', closed, '--etcd-cacert', join(root, 'nope.pem')], /--etcd-cacert \S+nope\.pem: cannot read it \(.*ENOENT/],
    ['not PEM', ['--store', 'etcd', '--etcd-endpoints', closed, '--etcd-cert', notPem, '--etcd-key', notPem], /--etcd-cert \S+not\.pem: not a PEM file/],
    ['cert without key', ['--store', 'etcd', '--etcd-endpoints', closed, '--etcd-cert', notPem], /--etcd-cert and --etcd-key go together/],
    ['malformed URL', ['--store', 'etcd', '--etcd-endpoints', '127.0.0.1:2379'], /--etcd-endpoints: "127\.0\.0\.1:2379" is not (a URL|an etcd client URL)/],
    ['unreachable etcd', ['--store', 'etcd', '--etcd-endpoints', closed], /cannot read etcd at http:\/\/127\.0\.0\.1:\d+ .*nothing was changed/],
  ];
  for (const [what, flags, re] of cases) {
    const dir = join(root, what.replace(/\W+/g, '-'));
    const port = await freePort();
    const r = await swarmdInit(['--state-dir', dir, '--listen-addr', `127.0.0.1:${port}`, ...flags]);
    t.not(r.code, 0, what);
    t.regex(r.stderr, re, what);
    t.false(existsSync(dir), `${what}: no state dir left`);
  }
});

requires('etcd')("swarmd init --store etcd on an etcd serving TLS: a CA that did not sign etcd's certificate, or no client certificate, is refused naming etcd and the TLS problem, and no state dir is left", async (t) => {
  const etcd = await startEtcd({ members: 1, tls: true, t });
  const root = await mkdtemp(join(tmpdir(), 'swarmd-store-tls-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const other = await createTestCa(join(root, 'other'), 'other-ca');
  const { ca, client } = etcd.tls!;
  const cases: [string, string[], RegExp][] = [
    ['wrong CA', ['--etcd-cacert', other.certFile, '--etcd-cert', client.certFile, '--etcd-key', client.keyFile], /init: cannot read etcd at https:\/\/127\.0\.0\.1:\d+: TLS: etcd's server certificate is not trusted: it is not signed by the CA given \(--etcd-cacert\)/],
    ['no client certificate', ['--etcd-cacert', ca.certFile], /init: cannot read etcd at https:\/\/127\.0\.0\.1:\d+: TLS: etcd requires a client certificate .*give --etcd-cert and --etcd-key/],
  ];
  for (const [what, flags, re] of cases) {
    const dir = join(root, what.replace(/\W+/g, '-'));
    const r = await swarmdInit(['--state-dir', dir, '--listen-addr', `127.0.0.1:${await freePort()}`, '--store', 'etcd', '--etcd-endpoints', etcd.endpoints.join(','), ...flags]);
    t.not(r.code, 0, what);
    t.regex(r.stderr, re, what);
    t.false(existsSync(dir), `${what}: no state dir left`);
  }
});
