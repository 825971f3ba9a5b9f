import test from 'ava';
import { ErrorCode, SwarmError } from '@swarmd/common';
import { familiarReference, formatReference, parseReference } from '../src/index.js';

const D = 'sha256:' + 'ab'.repeat(32);

const good: [string, string, string][] = [
  // input, canonical, familiar
  ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
  ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36'],
  ['library/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
  ['docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
  ['index.docker.io/library/busybox:x', 'docker.io/library/busybox:x', 'busybox:x'],
  ['registry-1.docker.io/me/app', 'docker.io/me/app:latest', 'me/app:latest'],
  ['me/app:v1.2-rc_3', 'docker.io/me/app:v1.2-rc_3', 'me/app:v1.2-rc_3'],
  ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
  ['localhost:5000/a/b/c:t', 'localhost:5000/a/b/c:t', 'localhost:5000/a/b/c:t'],
  ['127.0.0.1:5000/test/busybox:v1', '127.0.0.1:5000/test/busybox:v1', '127.0.0.1:5000/test/busybox:v1'],
  ['10.231.4.1:5000/x', '10.231.4.1:5000/x:latest', '10.231.4.1:5000/x:latest'],
  ['[::1]:5000/x:y', '[::1]:5000/x:y', '[::1]:5000/x:y'],
  ['ghcr.io/org/repo.name/sub__x:1', 'ghcr.io/org/repo.name/sub__x:1', 'ghcr.io/org/repo.name/sub__x:1'],
  [`busybox@${D}`, `docker.io/library/busybox@${D}`, `busybox@${D}`],
  [`busybox:1@${D}`, `docker.io/library/busybox:1@${D}`, `busybox:1@${D}`],
  [`host:5000/a@${D}`, `host:5000/a@${D}`, `host:5000/a@${D}`],
  ['Registry.Example.com/a', 'Registry.Example.com/a:latest', 'Registry.Example.com/a:latest'],
  ['a-b--c/d', 'docker.io/a-b--c/d:latest', 'a-b--c/d:latest'],
];

for (const [input, canonical, familiar] of good) {
  test(`parse ${input}`, (t) => {
    const r = parseReference(input);
    t.is(formatReference(r), canonical);
    t.is(familiarReference(r), familiar);
    t.is(formatReference(parseReference(canonical)), canonical, 'canonical form is stable');
  });
}

test('parts of a full reference', (t) => {
  t.deepEqual(parseReference(`localhost:5000/a/b:t@${D}`), { domain: 'localhost:5000', path: 'a/b', tag: 't', digest: D });
  t.deepEqual(parseReference('busybox'), { domain: 'docker.io', path: 'library/busybox', tag: 'latest' });
  t.deepEqual(parseReference(`x@${D}`), { domain: 'docker.io', path: 'library/x', digest: D }, 'a digest alone gets no default tag');
});

const bad: [string, RegExp][] = [
  ['', /empty reference/],
  ['Foo:bar', /^invalid reference "Foo:bar": repository name must be lowercase$/],
  ['docker.io/Foo', /repository name must be lowercase/],
  ['busybox:', /invalid tag ""/],
  ['busybox:-x', /invalid tag "-x"/],
  [`busybox:${'a'.repeat(129)}`, /invalid tag/],
  ['busybox@sha256:abc', /invalid digest "sha256:abc"/],
  [`busybox@sha256:${'A'.repeat(64)}`, /invalid sha256 digest/],
  [`busybox@md5:${'a'.repeat(32)}`, /unsupported digest algorithm/],
  ['a//b', /empty path component/],
  ['a/b/', /empty path component/],
  ['/a', /empty path component|missing repository name/],
  ['-a', /invalid repository name component "-a"/],
  ['a_', /invalid repository name component "a_"/],
  ['a...b', /invalid repository name component/],
  ['host:99999/a', /invalid registry host "host:99999"/],
  ['-host.com/a', /invalid registry host/],
  [' busybox', /spaces/],
  [':tag', /missing repository name/],
  [`a/${'b'.repeat(260)}`, /longer than 255/],
];

for (const [input, msg] of bad) {
  test(`refuse ${JSON.stringify(input).slice(0, 40)}`, (t) => {
    const err = t.throws(() => parseReference(input), { instanceOf: SwarmError });
    t.is(err.code, ErrorCode.INVALID_ARGUMENT);
    t.regex(err.message, msg);
  });
}
