import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ControlClient, CreateSecretRequest, RaftMembershipClient, type RaftJoinResponse, type Cluster, type CreateSecretResponse, type GetSecretResponse, type GetUnlockKeyResponse } from '@swarmd/proto';
import {
  KeyFileKeeper,
  clientCredentials,
  isWrapped,
  keyringOf,
  makeObject,
  newSecretsKey,
  newUnlockKey,
  open,
  parseUnlockKey,
  readSecretsKey,
  readSecretsKeyFile,
  startManager,
  unwrapKey,
  wrapKey,
  writeSecretsKey,
  SECRETS_KEY_FILE,
  type Manager,
} from '../src/index.js';
import { FAST_RAFT, freePort, tempDir, testLogger, waitFor } from './helpers/managers.js';

const p = <T>(f: (cb: (e: grpc.ServiceError | null, r: T) => void) => unknown) => new Promise<T>((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));

test('unlock key wrapping: the right key opens the secrets key; a wrong one is refused; the file holds no key bytes', (t) => {
  const key = newSecretsKey();
  const unlock = newUnlockKey();
  t.regex(unlock, /^SWMKEY-1-[A-Za-z0-9+/]{43}=$/);
  const wrapped = wrapKey(unlock, key);
  t.true(isWrapped(wrapped));
  t.is(wrapped.indexOf(key), -1);
  t.deepEqual(unwrapKey(unlock, wrapped), key);
  t.deepEqual(unwrapKey(`  ${unlock}\n`, wrapped), key); // blanks around a pasted key do not matter
  t.throws(() => unwrapKey(newUnlockKey(), wrapped), { message: /not the right one/ });
  const flipped = Buffer.from(wrapped);
  flipped[flipped.length - 1] ^= 1;
  t.throws(() => unwrapKey(unlock, flipped), { message: /not the right one/ });
  // Two wraps of the same key differ (fresh salt and IV).
  t.notDeepEqual(wrapKey(unlock, key), wrapped);
});

test('unlock key parsing: malformed keys are refused with what is wrong', (t) => {
  t.is(parseUnlockKey(newUnlockKey(Buffer.alloc(32, 7))).length, 32);
  t.throws(() => parseUnlockKey(''), { message: /empty/ });
  t.throws(() => parseUnlockKey('SWMTKN-1-abc'), { message: /does not start with SWMKEY-1-/ });
  t.throws(() => parseUnlockKey('SWMKEY-1-' + Buffer.alloc(16).toString('base64')), { message: /base64 of 32 bytes/ });
  t.throws(() => parseUnlockKey('SWMKEY-1-!!!!'), { message: /malformed/ });
});

test('key file: wrapped, it reads as locked and opens only with its unlock key', async (t) => {
  const dir = await tempDir(t);
  const key = newSecretsKey();
  const unlock = newUnlockKey();
  await writeSecretsKey(dir, key, unlock);
  const f = await readSecretsKeyFile(dir);
  t.true(f?.locked);
  await t.throwsAsync(readSecretsKey(dir), { message: /is locked \(autolock\)/ });
  await t.throwsAsync(readSecretsKey(dir, newUnlockKey()), { message: /not the right one/ });
  t.deepEqual(await readSecretsKey(dir, unlock), key);
  await writeSecretsKey(dir, key);
  t.deepEqual(await readFile(join(dir, SECRETS_KEY_FILE)), key);
  t.false((await readSecretsKeyFile(dir))?.locked);
});

test('key file keeper: the file follows the cluster: wrapped with its unlock key, rewrapped on rotation, plain when autolock is off', async (t) => {
  const dir = await tempDir(t);
  const key = newSecretsKey();
  await writeSecretsKey(dir, key);
  const keyring = keyringOf(key);
  let cluster: Cluster = makeObject('cluster', { id: 'c1', removedNodeIds: [], defaultAddressPool: [], subnetSize: 0 });
  const keeper = new KeyFileKeeper({ stateDir: dir, keyring, cluster: () => cluster, current: '', logger: testLogger() });
  const first = newUnlockKey();
  cluster = { ...cluster, unlockKeySealed: keyring.seal(Buffer.from(first)) };
  await keeper.check();
  t.deepEqual(await readSecretsKey(dir, first), key);
  const second = newUnlockKey();
  cluster = { ...cluster, unlockKeySealed: keyring.seal(Buffer.from(second)) };
  await keeper.check();
  await t.throwsAsync(readSecretsKey(dir, first), { message: /not the right one/ });
  t.deepEqual(await readSecretsKey(dir, second), key);
  cluster = { ...cluster, unlockKeySealed: Buffer.alloc(0) };
  await keeper.check();
  t.deepEqual(await readFile(join(dir, SECRETS_KEY_FILE)), key);
});

/** Control calls over a manager's local socket. */
function control(sock: string) {
  const c = new ControlClient(`unix://${sock}`, grpc.credentials.createInsecure());
  return {
    c,
    cluster: () => p<{ clusters: Cluster[] }>((cb) => c.listClusters({}, cb)).then((r) => r.clusters[0]),
    autolock: async (on: boolean, rotateUnlockKey = false) => {
      const cur = (await p<{ clusters: Cluster[] }>((cb) => c.listClusters({}, cb))).clusters[0];
      return p<{ cluster: Cluster | undefined }>((cb) =>
        c.updateCluster(
          { clusterId: cur.id, clusterVersion: cur.meta!.version, spec: { ...cur.spec!, autolockManagers: on }, rotateWorkerToken: false, rotateManagerToken: false, rotateUnlockKey },
          cb,
        ),
      );
    },
    unlockKey: () => p<GetUnlockKeyResponse>((cb) => c.getUnlockKey({}, cb)).then((r) => r.unlockKey),
    unlock: (unlockKey: string) => p<object>((cb) => c.unlock({ unlockKey }, cb)),
    createSecret: (name: string, data: Buffer) => p<CreateSecretResponse>((cb) => c.createSecret(CreateSecretRequest.fromPartial({ spec: { annotations: { name, labels: {} }, data } }), cb)),
    getSecret: (secretId: string) => p<GetSecretResponse>((cb) => c.getSecret({ secretId }, cb)),
  };
}

async function startInDir(dir: string, port: number, o: Partial<Parameters<typeof startManager>[0]>): Promise<Manager> {
  const addr = `127.0.0.1:${port}`;
  return startManager({ stateDir: dir, listenAddr: addr, advertiseAddr: addr, logger: testLogger(), raft: FAST_RAFT, bootstrap: 'init', hostname: 'a', ...o });
}

test('autolock: a restarted manager waits locked, refuses every call and a wrong key, and the right key opens it with its secrets', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const sock = join(dir, 'control.sock');
  const a = await startInDir(dir, port, {});
  let ctl = control(sock);
  const data = randomBytes(64);
  const secretId = (await ctl.createSecret('db_password', data)).secret!.id;
  await ctl.autolock(true);
  const unlock = await ctl.unlockKey();
  t.regex(unlock, /^SWMKEY-1-/);
  t.is((await ctl.cluster()).unlockKeySealed.length, 0, 'the control API never returns the sealed unlock key');
  await waitFor('secrets.key wrapped', async () => (await readSecretsKeyFile(dir))?.locked === true);
  await t.throwsAsync(ctl.unlock(unlock), { code: grpc.status.FAILED_PRECONDITION, message: /not locked/ });
  const tls = a.tls();
  await a.stop();
  ctl.c.close();

  // The file alone opens nothing: neither as a key nor as the store's key.
  const onDisk = await readFile(join(dir, SECRETS_KEY_FILE));
  t.not(onDisk.length, 32);

  let restarted: Manager | undefined;
  const giveUp = new AbortController();
  const starting = startInDir(dir, port, { bootstrap: 'resume', tls, signal: giveUp.signal }).then((m) => (restarted = m));
  t.teardown(async () => {
    giveUp.abort();
    await (await starting.catch(() => undefined))?.stop();
  });
  ctl = control(sock);
  t.teardown(() => ctl.c.close());
  await waitFor('the locked manager answering', () =>
    ctl.cluster().then(
      () => false,
      (e: grpc.ServiceError) => /locked/.test(e.message),
    ),
  );
  const locked = await t.throwsAsync(ctl.cluster());
  t.regex(locked?.message ?? '', /this manager is locked.*swarmctl swarm unlock/);
  t.is((locked as grpc.ServiceError).metadata.get('swarmd-reason')[0], 'LOCKED');
  await t.throwsAsync(ctl.unlock(newUnlockKey()), { code: grpc.status.INVALID_ARGUMENT, message: /not the right one/ });
  await t.throwsAsync(ctl.unlock('not-a-key'), { code: grpc.status.INVALID_ARGUMENT, message: /does not start with SWMKEY-1-/ });
  t.is(restarted, undefined, 'still locked after wrong keys');
  t.deepEqual(await readFile(join(dir, SECRETS_KEY_FILE)), onDisk, 'a wrong key changes nothing');

  await ctl.unlock(unlock);
  const m = await starting;
  await waitFor('leader again', () => m.isLeader());
  ctl.c.close();
  ctl = control(sock);
  await waitFor('the control socket serving', () => ctl.cluster().then(() => true, () => false));
  // The secret sealed before the restart opens with the key the unlock key unwrapped.
  const key = unwrapKey(unlock, onDisk);
  const stored = m.store.view((tx) => tx.get('secret', secretId))!;
  t.deepEqual(open(key, stored.spec!.data), data);
  t.is((await ctl.getSecret(secretId)).secret?.spec?.annotations?.name, 'db_password');
  // Autolock off: the file is the plain key again.
  await ctl.autolock(false);
  await waitFor('secrets.key plain', async () => (await readSecretsKeyFile(dir))?.locked === false);
  t.deepEqual(await readFile(join(dir, SECRETS_KEY_FILE)), key);
  t.is(await ctl.unlockKey(), '');
});

test('unlock key rotation: the file is rewrapped with the new key, the old one no longer opens it; rotation without autolock is refused', async (t) => {
  const dir = await tempDir(t);
  const m = await startInDir(dir, await freePort(), {});
  t.teardown(() => m.stop());
  const ctl = control(join(dir, 'control.sock'));
  t.teardown(() => ctl.c.close());
  await t.throwsAsync(ctl.autolock(false, true), { code: grpc.status.INVALID_ARGUMENT, message: /autolock is off/ });
  await ctl.autolock(true);
  const first = await ctl.unlockKey();
  await ctl.autolock(true, true);
  const second = await ctl.unlockKey();
  t.not(second, first);
  await waitFor('secrets.key rewrapped', async () => {
    const f = await readSecretsKeyFile(dir);
    if (!f?.locked) return false;
    try {
      unwrapKey(second, f.wrapped);
      return true;
    } catch {
      return false;
    }
  });
  const f = await readSecretsKeyFile(dir);
  t.throws(() => unwrapKey(first, f!.locked ? f!.wrapped : Buffer.alloc(0)), { message: /not the right one/ });
  // A spec update that does not name autolock (as swarmctl sends it: the current value) keeps the key.
  await ctl.autolock(true);
  t.is(await ctl.unlockKey(), second);
});

test('under autolock a member that joins again (a manager certificate taken from its disk) is not handed the secrets key', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const m = await startInDir(dir, port, {});
  t.teardown(() => m.stop());
  const ctl = control(join(dir, 'control.sock'));
  t.teardown(() => ctl.c.close());
  const raft = new RaftMembershipClient(`127.0.0.1:${port}`, clientCredentials(m.tls()));
  t.teardown(() => raft.close());
  const rejoin = () => p<RaftJoinResponse>((cb) => raft.join({ addr: `127.0.0.1:${port}` }, cb));
  t.is((await rejoin()).secretsKey.length, 32, 'without autolock a member joining again gets the key (as before)');
  await ctl.autolock(true);
  const r = await rejoin();
  t.is(r.raftId, m.raftId);
  t.is(r.secretsKey.length, 0);
});
