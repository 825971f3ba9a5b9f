/**
 * The HTTP check of a canary task (`--canary-check-path`): from its host, `GET http://ADDR:PORT/PATH`
 * once every interval (default 1 s), a 2xx or 3xx answer within the timeout counting as a
 * success. The counts since the task started go to the managers with its status; the rollout's
 * gate compares them over each step (manager rollout/plan.ts).
 */
import { request } from 'node:http';
import type { CanaryCheckStatus } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import { systemClock, type Clock } from '@swarmd/common/clock';

export interface CanaryCheckOptions {
  /** Host (the task's address), port and path. */
  host: string;
  port: number;
  path: string;
  intervalMs?: number;
  timeoutMs?: number;
  clock?: Clock;
  /** After every check: the counts so far. */
  onResult(s: CanaryCheckStatus): void;
}

/** One GET: undefined when it succeeded, else what went wrong. */
export function checkOnce(o: { host: string; port: number; path: string; timeoutMs: number }): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request({ host: o.host, port: o.port, path: o.path, method: 'GET', timeout: o.timeoutMs, headers: { 'user-agent': 'swarmd-canary-check', connection: 'close' } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      res.on('end', () => resolve(code >= 200 && code < 400 ? undefined : `HTTP ${code}`));
      res.on('error', (err) => resolve(describeError(err)));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    req.on('error', (err) => resolve(describeError(err)));
    req.end();
  });
}

/** Runs the check until stop(); counts start at `from` (a restarted agent goes on from the reported counts). */
export function startCanaryCheck(o: CanaryCheckOptions, from?: CanaryCheckStatus): { stop(): void } {
  const clock = o.clock ?? systemClock;
  const interval = o.intervalMs ?? 1000;
  const timeoutMs = o.timeoutMs ?? Math.min(2000, Math.max(100, interval));
  const stopped = new AbortController();
  const s: CanaryCheckStatus = { ok: from?.ok ?? 0, total: from?.total ?? 0, lastError: from?.lastError ?? '', lastAt: from?.lastAt ?? 0 };
  void (async () => {
    while (!stopped.signal.aborted) {
      const started = clock.now();
      const err = await checkOnce({ host: o.host, port: o.port, path: o.path, timeoutMs });
      if (stopped.signal.aborted) return;
      s.total++;
      if (err) s.lastError = `GET ${o.path}: ${err}`;
      else s.ok++;
      s.lastAt = clock.now();
      o.onResult({ ...s });
      await clock.sleep(Math.max(0, interval - (clock.now() - started)), stopped.signal).catch(() => undefined);
    }
  })();
  return { stop: () => stopped.abort() };
}
