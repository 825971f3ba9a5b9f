import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import {
  ControlClient,
  CreateConfigRequest,
  CreateSecretRequest,
  ServiceSpec,
  type CreateConfigResponse,
  type CreateSecretResponse,
  type CreateServiceResponse,
  type GetSecretResponse,
  type ListSecretsResponse,
  type ListServicesResponse,
  type RemoveSecretResponse,
  type RemoveServiceResponse,
} from '@swarmd/proto';
import { open, seal, SECRETS_KEY_FILE } from '../src/index.js';
import { FAST_RAFT, freePort, issueCert, startTestManager, waitFor } from './helpers/managers.js';

const p = <T>(f: (cb: (e: grpc.ServiceError | null, r: T) => void) => unknown) => new Promise<T>((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));

/** The Control calls these tests make, over the manager's local socket. */
function control(sock: string) {
  const c = new ControlClient(`unix://${sock}`, grpc.credentials.createInsecure());
  const api = {
    createSecret: (r: Partial<CreateSecretRequest>) => p<CreateSecretResponse>((cb) => c.createSecret(CreateSecretRequest.fromPartial(r), cb)),
    getSecret: (secretId: string) => p<GetSecretResponse>((cb) => c.getSecret({ secretId }, cb)),
    listSecrets: (labels: Record<string, string> = {}) => p<ListSecretsResponse>((cb) => c.listSecrets({ filters: { names: [], labels } }, cb)),
    removeSecret: (secretId: string) => p<RemoveSecretResponse>((cb) => c.removeSecret({ secretId }, cb)),
    createConfig: (r: Partial<CreateConfigRequest>) => p<CreateConfigResponse>((cb) => c.createConfig(CreateConfigRequest.fromPartial(r), cb)),
    createService: (spec: ServiceSpec) => p<CreateServiceResponse>((cb) => c.createService({ spec, noResolveImage: true, requestId: '' }, cb)),
    listServices: () => p<ListServicesResponse>((cb) => c.listServices({ filters: undefined }, cb)),
    removeService: (serviceId: string) => p<RemoveServiceResponse>((cb) => c.removeService({ serviceId }, cb)),
  };
  return { c, api };
}

const socketPath = () => join(tmpdir(), `swarmd-stacks-${randomBytes(6).toString('hex')}.sock`);

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

async function filesHolding(dir: string, bytes: Buffer): Promise<string[]> {
  const hits: string[] = [];
  for (const f of await filesUnder(dir)) if ((await readFile(f)).includes(bytes)) hits.push(f);
  return hits;
}

test('sealing: what the store holds opens only with the key; a changed byte is refused', (t) => {
  const key = randomBytes(32);
  const sealed = seal(key, Buffer.from('hunter2'));
  t.false(sealed.includes(Buffer.from('hunter2')));
  t.is(open(key, sealed).toString(), 'hunter2');
  t.throws(() => open(randomBytes(32), sealed), { message: /does not open/ });
  sealed[sealed.length - 1] ^= 1;
  t.throws(() => open(key, sealed), { message: /does not open/ });
});

test("a secret's bytes are in no file of a manager's Raft WAL or snapshots; a config's plain bytes are (the scan finds them)", async (t) => {
  const sock = socketPath();
  const raft = { ...FAST_RAFT, fsync: true, snapshotEvery: 5 };
  const m = await startTestManager(t, { bootstrap: 'init', raft, controlSocket: sock });
  const { c, api } = control(sock);
  t.teardown(() => c.close());
  const secret = Buffer.from(`secret-${randomBytes(16).toString('hex')}`);
  const config = Buffer.from(`config-${randomBytes(16).toString('hex')}`);
  const created = await api.createSecret({ spec: { annotations: { name: 'db_password', labels: {} }, data: secret } });
  t.is(created.secret?.spec?.data.length, 0, 'the response carries no data');
  await api.createConfig({ spec: { annotations: { name: 'app_config', labels: {} }, data: config } });
  // More entries than snapshotEvery, so that the secret lands in a snapshot too.
  for (let i = 0; i < 12; i++) await api.createConfig({ spec: { annotations: { name: `filler${i}`, labels: {} }, data: Buffer.from('x') } });
  const raftDir = join(m.dir, 'raft');
  await waitFor('a snapshot on disk', async () => (await filesUnder(raftDir)).some((f) => f.endsWith('.snap')));
  await m.m.stop();
  const files = await filesUnder(raftDir);
  t.true(files.some((f) => f.endsWith('.snap')) && files.some((f) => /wal/i.test(f)), `WAL and snapshot files: ${files.join(', ')}`);
  t.deepEqual(await filesHolding(raftDir, secret), [], 'no Raft file holds the secret');
  t.true((await filesHolding(raftDir, config)).length > 0, 'the config is found in the same files');
  t.deepEqual(await filesHolding(raftDir, Buffer.from(secret.toString('base64'))), [], 'nor its base64');
  // The key lives beside, not in, the raft dir, and opens what the store holds after a restart.
  t.false(files.some((f) => f.endsWith(SECRETS_KEY_FILE)));
  const again = await startTestManager(t, { bootstrap: 'resume', dir: m.dir, port: Number(m.addr.split(':')[1]), tls: m.tls, raft: FAST_RAFT });
  await waitFor('leader again', () => again.m.isLeader());
  const stored = again.m.store.view((tx) => tx.find('secret', { name: 'db_password' })[0]);
  t.is(open(await readFile(join(m.dir, SECRETS_KEY_FILE)), stored.spec!.data).toString(), secret.toString());
});

test('secrets: inspect never shows the data, a name is unique, a service naming an unknown one is refused, removal is refused while a service uses it', async (t) => {
  const sock = socketPath();
  const m = await startTestManager(t, { bootstrap: 'init', controlSocket: sock });
  await waitFor('leader', () => m.m.isLeader());
  const { c, api } = control(sock);
  t.teardown(() => c.close());
  const s = await api.createSecret({ spec: { annotations: { name: 'pw', labels: { a: 'b' } }, data: Buffer.from('hunter2') } });
  const got = await api.getSecret('pw');
  t.is(got.secret?.id, s.secret?.id);
  t.is(got.secret?.spec?.data.length, 0);
  t.regex(got.secret?.digest ?? '', /^[0-9a-f]{64}$/);
  const listed = await api.listSecrets({ a: 'b' });
  t.deepEqual(listed.secrets.map((x) => [x.spec?.annotations?.name, x.spec?.data.length]), [['pw', 0]]);
  const dup = await t.throwsAsync(api.createSecret({ spec: { annotations: { name: 'pw', labels: {} }, data: Buffer.from('x') } }));
  t.is((dup as grpc.ServiceError).code, grpc.status.ALREADY_EXISTS);
  const empty = await t.throwsAsync(api.createSecret({ spec: { annotations: { name: 'empty', labels: {} }, data: Buffer.alloc(0) } }));
  t.regex((empty as grpc.ServiceError).details, /the data is empty/);

  const spec = (secret: string) =>
    ServiceSpec.fromPartial({ annotations: { name: 'db' }, task: { container: { image: 'busybox:latest', secrets: [{ secretName: secret, file: { name: '', uid: '0', gid: '0', mode: 0o400 } }] } } });
  const unknown = await t.throwsAsync(api.createService(spec('nosuch')));
  t.regex((unknown as grpc.ServiceError).details, /secret nosuch not found/);
  t.is((await api.listServices()).services.length, 0, 'nothing was created');
  const svc = await api.createService(spec('pw'));
  const ref = svc.service?.spec?.task?.container?.secrets[0];
  t.deepEqual([ref?.secretId, ref?.secretName, ref?.file?.name, ref?.file?.mode], [s.secret?.id, 'pw', '/run/secrets/pw', 0o400]);
  const inUse = await t.throwsAsync(api.removeSecret('pw'));
  t.regex((inUse as grpc.ServiceError).details, /secret pw is in use by service db/);
  await api.removeService('db');
  await api.removeSecret('pw');
  t.is((await api.listSecrets()).secrets.length, 0);
});

test('a manager that joins receives the secrets key and opens the secrets the store holds', async (t) => {
  const a = await startTestManager(t, { bootstrap: 'init', hostname: 'a' });
  const key = await readFile(join(a.dir, SECRETS_KEY_FILE));
  t.is(key.length, 32);
  const bPort = await freePort();
  const bTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${bPort}`);
  const b = await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: bTls, port: bPort });
  t.deepEqual(await readFile(join(b.dir, SECRETS_KEY_FILE)), key);
  t.false(b.m.isLeader());
});
