import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ControlClient, type Cluster } from '@swarmd/proto';
import {
  CERTS_DIR,
  KeyFileKeeper,
  NODE_KEY_PEM,
  SECRETS_KEY_FILE,
  createKeyAndCsr,
  decryptKeyPem,
  encryptKeyPem,
  isEncryptedKeyPem,
  keyringOf,
  loadStateDirCerts,
  makeObject,
  newSecretsKey,
  newUnlockKey,
  saveNodeKey,
  startManager,
  tlsKeyPassphrase,
  writeSecretsKey,
  type Manager,
} from '../src/index.js';
import { FAST_RAFT, freePort, tempDir, testLogger, waitFor } from './helpers/managers.js';

const p = <T>(f: (cb: (e: grpc.ServiceError | null, r: T) => void) => unknown) => new Promise<T>((resolve, reject) => f((e, r) => (e ? reject(e) : resolve(r))));
const keyFileOf = (dir: string) => join(dir, CERTS_DIR, NODE_KEY_PEM);
/** The same PEM (node's export ends with a newline, the x509 library's does not). */
const pemOf = (pem: string): string => pem.trim();
const opensWith = (pem: string, unlockKey: string): boolean => {
  try {
    decryptKeyPem(pem, unlockKey);
    return true;
  } catch {
    return false;
  }
};
/** Whether something accepts TCP connections on the port. */
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

test('TLS key encryption: a standard encrypted PKCS#8 PEM that openssl opens with the derived passphrase; a wrong unlock key is refused', async (t) => {
  const { keyPem } = await createKeyAndCsr('n1');
  const unlock = newUnlockKey();
  const enc = encryptKeyPem(keyPem, unlock);
  t.true(isEncryptedKeyPem(enc));
  t.false(isEncryptedKeyPem(keyPem));
  t.notRegex(enc, /BEGIN PRIVATE KEY/);
  t.is(pemOf(decryptKeyPem(enc, unlock)), pemOf(keyPem));
  t.is(pemOf(decryptKeyPem(enc, `  ${unlock}\n`)), pemOf(keyPem));
  t.throws(() => decryptKeyPem(enc, newUnlockKey()), { message: /not the right one: it does not open this manager's TLS key/ });
  t.throws(() => decryptKeyPem(enc, 'SWMKEY-1-nope'), { message: /malformed/ });
  // The passphrase is not the one wrapping secrets.key, and openssl reads the file with it.
  const dir = await tempDir(t);
  await saveNodeKey(dir, keyPem, unlock);
  const { stdout } = await promisify(execFile)('openssl', ['pkey', '-in', keyFileOf(dir), '-passin', `pass:${tlsKeyPassphrase(unlock)}`]);
  t.is(pemOf(stdout), pemOf(keyPem));
});

test('key file keeper: the TLS key follows the cluster: encrypted with its unlock key, re-encrypted on rotation, plain when autolock is off', async (t) => {
  const dir = await tempDir(t);
  const key = newSecretsKey();
  await writeSecretsKey(dir, key);
  const { keyPem } = await createKeyAndCsr('n1');
  await saveNodeKey(dir, keyPem);
  const keyring = keyringOf(key);
  let cluster: Cluster = makeObject('cluster', { id: 'c1', removedNodeIds: [], defaultAddressPool: [], subnetSize: 0 });
  const keeper = new KeyFileKeeper({
    stateDir: dir,
    keyring,
    cluster: () => cluster,
    current: '',
    nodeKey: { current: '', write: (k) => saveNodeKey(dir, keyPem, k) },
    logger: testLogger(),
  });
  const onDisk = () => readFile(keyFileOf(dir), 'utf8');
  const first = newUnlockKey();
  cluster = { ...cluster, unlockKeySealed: keyring.seal(Buffer.from(first)) };
  await keeper.check();
  t.notRegex(await onDisk(), /BEGIN PRIVATE KEY/);
  t.is(pemOf(decryptKeyPem(await onDisk(), first)), pemOf(keyPem));
  // A renewed key written meanwhile takes the same form.
  t.is(await keeper.run(async (k) => k), first);
  const second = newUnlockKey();
  cluster = { ...cluster, unlockKeySealed: keyring.seal(Buffer.from(second)) };
  await keeper.check();
  t.false(opensWith(await onDisk(), first));
  t.is(pemOf(decryptKeyPem(await onDisk(), second)), pemOf(keyPem));
  cluster = { ...cluster, unlockKeySealed: Buffer.alloc(0) };
  await keeper.check();
  t.is(await onDisk(), keyPem, 'autolock off: the plain key as it was');
  t.is(await keeper.run(async (k) => k), '');
});

test('key file keeper: a TLS key left plain under autolock (state from before) is encrypted though secrets.key already is', async (t) => {
  const dir = await tempDir(t);
  const key = newSecretsKey();
  const keyring = keyringOf(key);
  const unlock = newUnlockKey();
  await writeSecretsKey(dir, key, unlock);
  const { keyPem } = await createKeyAndCsr('n1');
  await saveNodeKey(dir, keyPem);
  const cluster: Cluster = { ...makeObject('cluster', { id: 'c1', removedNodeIds: [], defaultAddressPool: [], subnetSize: 0 }), unlockKeySealed: keyring.seal(Buffer.from(unlock)) };
  const secretsBefore = await readFile(join(dir, SECRETS_KEY_FILE));
  const keeper = new KeyFileKeeper({ stateDir: dir, keyring, cluster: () => cluster, current: unlock, nodeKey: { current: '', write: (k) => saveNodeKey(dir, keyPem, k) }, logger: testLogger() });
  await keeper.check();
  t.is(pemOf(decryptKeyPem(await readFile(keyFileOf(dir), 'utf8'), unlock)), pemOf(keyPem));
  t.deepEqual(await readFile(join(dir, SECRETS_KEY_FILE)), secretsBefore, 'secrets.key already right: not rewritten');
});

function control(sock: string) {
  const c = new ControlClient(`unix://${sock}`, grpc.credentials.createInsecure());
  const cluster = () => p<{ clusters: Cluster[] }>((cb) => c.listClusters({}, cb)).then((r) => r.clusters[0]);
  return {
    c,
    cluster,
    autolock: async (on: boolean, rotateUnlockKey = false) => {
      const cur = await cluster();
      await p((cb) =>
        c.updateCluster({ clusterId: cur.id, clusterVersion: cur.meta!.version, spec: { ...cur.spec!, autolockManagers: on }, rotateWorkerToken: false, rotateManagerToken: false, rotateUnlockKey }, cb),
      );
    },
    unlockKey: () => p<{ unlockKey: string }>((cb) => c.getUnlockKey({}, cb)).then((r) => r.unlockKey),
    unlock: (unlockKey: string) => p<object>((cb) => c.unlock({ unlockKey }, cb)),
  };
}

test('autolock: a manager restarted with its TLS key encrypted serves no port, only its control socket, until the right key opens its TLS and secrets keys', async (t) => {
  const dir = await tempDir(t);
  const port = await freePort();
  const addr = `127.0.0.1:${port}`;
  const sock = join(dir, 'control.sock');
  const base = { stateDir: dir, listenAddr: addr, advertiseAddr: addr, logger: testLogger(), raft: FAST_RAFT, hostname: 'a' };
  const a = await startManager({ ...base, bootstrap: 'init' });
  let ctl = control(sock);
  await ctl.autolock(true);
  const unlock = await ctl.unlockKey();
  await waitFor('node-key.pem encrypted', async () => isEncryptedKeyPem(await readFile(keyFileOf(dir), 'utf8')));
  const plainKey = a.tls().keyPem;
  await a.stop();
  ctl.c.close();

  // What the daemon reads from disk: no private key in the clear.
  const fromDisk = (await loadStateDirCerts(dir))!;
  t.notRegex(fromDisk.keyPem, /BEGIN PRIVATE KEY/);
  const files = async () => [await readFile(keyFileOf(dir)), await readFile(join(dir, SECRETS_KEY_FILE))];
  const before = await files();

  let restarted: Manager | undefined;
  const giveUp = new AbortController();
  const starting = startManager({ ...base, bootstrap: 'resume', tls: fromDisk, signal: giveUp.signal }).then((m) => (restarted = m));
  t.teardown(async () => {
    giveUp.abort();
    await (await starting.catch(() => undefined))?.stop();
  });
  ctl = control(sock);
  t.teardown(() => ctl.c.close());
  await waitFor('the locked manager answering on its socket', () => ctl.cluster().then(() => false, (e: grpc.ServiceError) => /locked/.test(e.message)));
  t.false(await listening(port), 'no TCP port while the TLS key is locked');
  await t.throwsAsync(ctl.unlock(newUnlockKey()), { code: grpc.status.INVALID_ARGUMENT, message: /not the right one/ });
  t.is(restarted, undefined, 'still locked after a wrong key');
  t.deepEqual(await files(), before, 'a wrong key changes nothing');

  await ctl.unlock(unlock);
  const m = await starting;
  await waitFor('leader again', () => m.isLeader());
  t.is(pemOf(m.tls().keyPem), pemOf(plainKey), 'the TLS key is open in memory');
  t.true(await listening(port));
  t.true(isEncryptedKeyPem(await readFile(keyFileOf(dir), 'utf8')), 'and stays encrypted on disk');

  // A renewed certificate is saved with its key encrypted.
  await m.saveTls(m.tls());
  t.is(pemOf(decryptKeyPem(await readFile(keyFileOf(dir), 'utf8'), unlock)), pemOf(plainKey));

  // Rotation re-encrypts with the new key; autolock off writes it plain.
  ctl.c.close();
  ctl = control(sock);
  await waitFor('the control socket serving', () => ctl.cluster().then(() => true, () => false));
  await ctl.autolock(true, true);
  const second = await ctl.unlockKey();
  await waitFor('node-key.pem re-encrypted', async () => opensWith(await readFile(keyFileOf(dir), 'utf8'), second));
  t.false(opensWith(await readFile(keyFileOf(dir), 'utf8'), unlock));
  await ctl.autolock(false);
  await waitFor('node-key.pem plain', async () => !isEncryptedKeyPem(await readFile(keyFileOf(dir), 'utf8')));
  t.is(pemOf(await readFile(keyFileOf(dir), 'utf8')), pemOf(plainKey));
});
