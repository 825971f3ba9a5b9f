import test from 'ava';
import { parseChallenges, RegistryClient } from '../src/index.js';

test('WWW-Authenticate challenges are parsed', (t) => {
  t.deepEqual(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
  ]);
  t.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  t.deepEqual(parseChallenges(['Basic realm=r', 'Bearer realm="x\\"y"']), [
    { scheme: 'basic', params: { realm: 'r' } },
    { scheme: 'bearer', params: { realm: 'x"y' } },
  ]);
  t.deepEqual(parseChallenges(undefined), []);
});

test('plain HTTP only for loopback and insecure registries', (t) => {
  const c = new RegistryClient({ insecureRegistries: ['10.231.0.0/16', 'reg.test:5000', 'plain.test'] });
  t.teardown(() => c.close());
  t.is(c.schemeFor('127.0.0.1:5000'), 'http');
  t.is(c.schemeFor('127.9.9.9'), 'http');
  t.is(c.schemeFor('localhost:5000'), 'http');
  t.is(c.schemeFor('[::1]:5000'), 'http');
  t.is(c.schemeFor('10.231.4.1:5000'), 'http');
  t.is(c.schemeFor('10.232.4.1:5000'), 'https');
  t.is(c.schemeFor('reg.test:5000'), 'http');
  t.is(c.schemeFor('reg.test:5001'), 'https');
  t.is(c.schemeFor('plain.test:1234'), 'http');
  t.is(c.schemeFor('ghcr.io'), 'https');
  t.is(c.baseUrl('docker.io').href, 'https://registry-1.docker.io/');
});
