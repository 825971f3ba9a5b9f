/**
 * Container health checks (Docker's HEALTHCHECK semantics) run through ContainerService.exec.
 *
 * - `test`: ["CMD", argv…] | ["CMD-SHELL", "script"] (run with /bin/sh -c) | ["NONE"] (disabled).
 *   An empty test (or a spec without one) falls back to the image's HEALTHCHECK.
 * - A probe runs every `interval` (first one after `interval`), killed after `timeout`.
 * - Failures during `startPeriod` do not count; the first success ends it.
 * - `retries` consecutive failures → unhealthy (the task fails; the orchestrator replaces it).
 */
import type { HealthConfig } from '@swarmd/proto';
import type { Clock } from '@swarmd/common/clock';

export interface HealthSettings {
  argv: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** Docker's image config Healthcheck (durations in nanoseconds). */
export interface ImageHealthcheck {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  Retries?: number;
  StartPeriod?: number;
}

const DEFAULT_INTERVAL = 30_000;
const DEFAULT_TIMEOUT = 30_000;
const DEFAULT_RETRIES = 3;

/**
 * The effective health check: the spec's fields where set, else the image's, else Docker's
 * defaults. undefined when there is none (no test anywhere, or NONE).
 */
export function healthSettings(spec: HealthConfig | undefined, image: ImageHealthcheck | undefined): HealthSettings | undefined {
  const test = spec?.test.length ? spec.test : (image?.Test ?? []);
  if (test.length === 0 || test[0] === 'NONE') return undefined;
  let argv: string[];
  if (test[0] === 'CMD') argv = test.slice(1);
  else if (test[0] === 'CMD-SHELL') argv = ['/bin/sh', '-c', test.slice(1).join(' ')];
  else argv = ['/bin/sh', '-c', test.join(' ')];
  if (argv.length === 0) return undefined;
  const ns = (v: number | undefined) => (v ? Math.round(v / 1e6) : 0);
  return {
    argv,
    intervalMs: Number(spec?.intervalMs ?? 0) || ns(image?.Interval) || DEFAULT_INTERVAL,
    timeoutMs: Number(spec?.timeoutMs ?? 0) || ns(image?.Timeout) || DEFAULT_TIMEOUT,
    retries: (spec?.retries ?? 0) || (image?.Retries ?? 0) || DEFAULT_RETRIES,
    startPeriodMs: Number(spec?.startPeriodMs ?? 0) || ns(image?.StartPeriod) || 0,
  };
}

export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

/** The pure part: the next health status after one probe. */
export function healthAfterProbe(
  st: { status: HealthStatus; failures: number },
  ok: boolean,
  inStartPeriod: boolean,
  retries: number,
): { status: HealthStatus; failures: number } {
  if (ok) return { status: 'healthy', failures: 0 };
  if (st.status === 'starting' && inStartPeriod) return st;
  const failures = st.failures + 1;
  return { status: failures >= retries ? 'unhealthy' : st.status, failures };
}

export interface ProbeResult {
  exitCode: number;
  output: string;
}

/**
 * Probes until aborted; `onChange` sees each status change. Resolves when `signal` aborts or the
 * container turns unhealthy (a terminal verdict: the task fails).
 */
export async function runHealthChecks(o: {
  settings: HealthSettings;
  probe: (argv: string[], timeoutMs: number) => Promise<ProbeResult>;
  clock: Clock;
  signal: AbortSignal;
  onChange: (status: HealthStatus, lastOutput: string) => void;
}): Promise<void> {
  const { settings, clock, signal } = o;
  const started = clock.now();
  let st: { status: HealthStatus; failures: number } = { status: 'starting', failures: 0 };
  while (!signal.aborted) {
    try {
      await clock.sleep(settings.intervalMs, signal);
    } catch {
      return;
    }
    let ok: boolean;
    let output: string;
    try {
      const r = await o.probe(settings.argv, settings.timeoutMs);
      ok = r.exitCode === 0;
      output = r.output.trim() || `exit code ${r.exitCode}`;
    } catch (err) {
      ok = false;
      output = err instanceof Error ? err.message : String(err);
    }
    if (signal.aborted) return;
    const inStart = clock.now() - started < settings.startPeriodMs;
    const nextSt = healthAfterProbe(st, ok, inStart, settings.retries);
    const changed = nextSt.status !== st.status;
    st = nextSt;
    if (changed) o.onChange(st.status, output);
    if (st.status === 'unhealthy') return;
  }
}
