// The canary HTTP check against a real HTTP server on loopback.
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CanaryCheckStatus } from '@swarmd/proto';
import { checkOnce, startCanaryCheck } from '../src/task-runner/canary-check.js';

async function server(t: import('ava').ExecutionContext, status: () => number): Promise<number> {
  const s = createServer((req, res) => {
    res.statusCode = req.url === '/healthz' ? status() : 404;
    res.end('x');
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  return (s.address() as AddressInfo).port;
}

test('one check: 2xx and 3xx succeed; 5xx, 404 and a refused connection say what went wrong', async (t) => {
  let code = 200;
  const port = await server(t, () => code);
  t.is(await checkOnce({ host: '127.0.0.1', port, path: '/healthz', timeoutMs: 1000 }), undefined);
  code = 302;
  t.is(await checkOnce({ host: '127.0.0.1', port, path: '/healthz', timeoutMs: 1000 }), undefined);
  code = 500;
  t.is(await checkOnce({ host: '127.0.0.1', port, path: '/healthz', timeoutMs: 1000 }), 'HTTP 500');
  t.is(await checkOnce({ host: '127.0.0.1', port, path: '/nope', timeoutMs: 1000 }), 'HTTP 404');
  t.regex((await checkOnce({ host: '127.0.0.1', port: 1, path: '/healthz', timeoutMs: 1000 })) ?? '', /ECONNREFUSED/);
});

test('the check counts successes and failures from where the last report left them, and stops', async (t) => {
  let n = 0;
  const port = await server(t, () => (++n % 2 === 0 ? 500 : 200));
  const results: CanaryCheckStatus[] = [];
  const check = startCanaryCheck({ host: '127.0.0.1', port, path: '/healthz', intervalMs: 20, timeoutMs: 5000, onResult: (r) => results.push(r) }, { ok: 10, total: 12, lastError: '', lastAt: 0 });
  while (results.length < 6) await new Promise((r) => setTimeout(r, 20));
  check.stop();
  const last = results[results.length - 1];
  t.is(last.total, 12 + results.length);
  t.is(last.ok, 10 + results.filter((_, i) => i % 2 === 0).length);
  t.is(last.lastError, 'GET /healthz: HTTP 500');
  const count = results.length;
  await new Promise((r) => setTimeout(r, 100));
  t.is(results.length, count, 'nothing after stop()');
});
