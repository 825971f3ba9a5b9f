import test from 'ava';
import { healthAfterProbe, healthSettings } from '../src/health/health-check.js';

const spec = (test: string[], o: Partial<{ intervalMs: number; timeoutMs: number; retries: number; startPeriodMs: number }> = {}) => ({
  test,
  intervalMs: 0,
  timeoutMs: 0,
  retries: 0,
  startPeriodMs: 0,
  ...o,
});

test('healthSettings: CMD, CMD-SHELL, NONE, the image default and Docker defaults', (t) => {
  t.deepEqual(healthSettings(spec(['CMD', 'curl', '-f', 'x']), undefined)?.argv, ['curl', '-f', 'x']);
  t.deepEqual(healthSettings(spec(['CMD-SHELL', 'test -f /ok']), undefined)?.argv, ['/bin/sh', '-c', 'test -f /ok']);
  t.is(healthSettings(spec(['NONE']), { Test: ['CMD', 'true'] }), undefined, 'NONE disables the image check');
  t.is(healthSettings(undefined, undefined), undefined);
  const img = healthSettings(spec([]), { Test: ['CMD-SHELL', 'true'], Interval: 2e9, Timeout: 1e9, Retries: 5, StartPeriod: 3e9 });
  t.deepEqual(img, { argv: ['/bin/sh', '-c', 'true'], intervalMs: 2000, timeoutMs: 1000, retries: 5, startPeriodMs: 3000 });
  t.like(healthSettings(spec(['CMD', 'x']), undefined), { intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 });
  t.like(healthSettings(spec([], { intervalMs: 100 }), { Test: ['CMD', 'y'], Interval: 5e9 }), { argv: ['y'], intervalMs: 100 }, 'spec fields win');
});

test('healthAfterProbe: start period, retries, recovery', (t) => {
  let s = { status: 'starting' as const, failures: 0 } as Parameters<typeof healthAfterProbe>[0];
  s = healthAfterProbe(s, false, true, 2);
  t.deepEqual(s, { status: 'starting', failures: 0 }, 'failures in the start period do not count');
  s = healthAfterProbe(s, false, false, 2);
  t.deepEqual(s, { status: 'starting', failures: 1 });
  s = healthAfterProbe(s, true, false, 2);
  t.deepEqual(s, { status: 'healthy', failures: 0 });
  s = healthAfterProbe(s, false, true, 2);
  t.deepEqual(s, { status: 'healthy', failures: 1 }, 'once healthy, the start period is over');
  s = healthAfterProbe(s, false, false, 2);
  t.deepEqual(s, { status: 'unhealthy', failures: 2 });
});
