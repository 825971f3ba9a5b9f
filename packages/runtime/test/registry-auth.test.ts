import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, run, SwarmError } from '@swarmd/common';
import { buildBusyboxImage, requires, startRegistry, type Teardown } from '@swarmd/testkit';
import { imageService, storeState, tempDir } from './images-helpers.js';

// htpasswd comes from apache2-utils (bcrypt is the only format docker-registry accepts).
const test = requires('root', 'registry', 'busybox');

async function htpasswdRegistry(t: Teardown) {
  const dir = await tempDir(t, 'swarmd-htpasswd-');
  const file = join(dir, 'htpasswd');
  const { stdout } = await run('htpasswd', ['-nbB', 'bob', 'right-password']);
  await writeFile(file, stdout.trim() + '\n');
  return startRegistry({ t, extraConfig: ['auth:', '  htpasswd:', '    realm: swarmd-test', `    path: ${file}`].join('\n') });
}

test('a registry with htpasswd (Basic) auth takes the right credentials and refuses others clearly', async (t) => {
  const reg = await htpasswdRegistry(t);
  const img = await buildBusyboxImage();
  const ref = `${reg.host}/private/busybox:1`;
  const good = { username: 'bob', password: 'right-password' };
  const pusher = await imageService(t);

  // Push without credentials: refused, naming the registry.
  const anon = await t.throwsAsync(pusher.pushImage(ref, img), { instanceOf: SwarmError });
  t.is(anon.code, ErrorCode.UNAUTHENTICATED);
  t.regex(anon.message, new RegExp(`registry ${reg.host} requires authentication`));
  t.is(await pusher.pushImage(ref, img, { auth: good }), img.manifestDigest);

  const svc = await imageService(t);
  const rec = await svc.pull(ref, { auth: good });
  t.is(rec.manifest.digest, img.manifestDigest);

  const other = await imageService(t);
  const wrong = await t.throwsAsync(other.pull(ref, { auth: { username: 'bob', password: 'wrong' } }), { instanceOf: SwarmError });
  t.is(wrong.code, ErrorCode.UNAUTHENTICATED);
  t.true(wrong.message.includes(`registry ${reg.host} refused the credentials of user "bob"`), wrong.message);
  const noCreds = await t.throwsAsync(other.pull(ref), { instanceOf: SwarmError });
  t.is(noCreds.code, ErrorCode.UNAUTHENTICATED);
  const st = await storeState(other.root);
  t.deepEqual([st.blobs, st.snapshots, st.images, st.ingest], [[], [], 0, []], 'nothing half-made');

  // One client, wrong then right password: the failed attempt is not remembered.
  const same = await imageService(t);
  await t.throwsAsync(same.pull(ref, { auth: { username: 'bob', password: 'wrong' } }), { instanceOf: SwarmError });
  t.is((await same.pull(ref, { auth: good })).manifest.digest, img.manifestDigest);
  await t.throwsAsync(same.pull(ref, { auth: { username: 'bob', password: 'wrong' } }), { instanceOf: SwarmError });

  // Credentials can also come from the client's per-registry lookup.
  const viaLookup = await imageService(t, { registry: { credentials: (r) => (r === reg.host ? good : undefined) } });
  t.is((await viaLookup.pull(ref)).manifest.digest, img.manifestDigest);
});
