/**
 * A canary config as given with an update (`--canary-*`): checked, with the defaults filled in.
 * Pure. Each problem names the field (canary.steps, canary.check_success...).
 */
import { invalidArgument } from '@swarmd/common/errors';
import type { CanaryConfig, ServiceSpec } from '@swarmd/proto';

/** Default success ratio of the HTTP checks over a step. */
export const DEFAULT_CHECK_SUCCESS = 0.99;

/** `c` checked for `spec` (the service's new spec), defaults filled in; INVALID_ARGUMENT naming every problem. */
export function checkCanaryConfig(c: Readonly<CanaryConfig>, spec: Readonly<ServiceSpec>): CanaryConfig {
  const p: string[] = [];
  if (spec.mode?.$case !== 'replicated') p.push('canary: canary rollouts are for replicated services (a global service runs one task per node: use a rolling update)');
  else if (Number(spec.mode.replicated.replicas) < 1) p.push('canary: the service has 0 replicas: there is no traffic to split (scale it up first)');
  if (c.steps.length === 0) p.push('canary.steps: at least one weight is needed (--canary-weight P or --canary-steps P1,P2,...)');
  c.steps.forEach((w, i) => {
    if (!Number.isInteger(w) || w < 1 || w > 100) p.push(`canary.steps[${i}]: ${w} is not a weight in percent (1..100)`);
    else if (i > 0 && w <= c.steps[i - 1]) p.push(`canary.steps[${i}]: weights must increase (${c.steps[i - 1]} then ${w})`);
  });
  if (!Number.isSafeInteger(c.intervalMs) || c.intervalMs < 0) p.push(`canary.interval_ms: ${c.intervalMs} must be ≥ 0 (0: manual, promote by hand)`);
  else if (c.intervalMs > 0 && c.intervalMs < 1000) p.push(`canary.interval_ms: ${c.intervalMs} ms is shorter than a second: the gate could not be checked over it`);
  if (!Number.isSafeInteger(Number(c.replicas)) || Number(c.replicas) < 0) p.push(`canary.replicas: ${c.replicas} must be ≥ 0 (0: from the first weight)`);
  if (!(c.maxFailureRatio >= 0 && c.maxFailureRatio <= 1)) p.push(`canary.max_failure_ratio: ${c.maxFailureRatio} must be between 0 and 1`);
  if (c.checkSuccess !== 0 && !(c.checkSuccess > 0 && c.checkSuccess <= 1)) p.push(`canary.check_success: ${c.checkSuccess} must be a ratio in (0, 1]`);
  if (c.checkPath && !c.checkPath.startsWith('/')) p.push(`canary.check_path: "${c.checkPath}" must start with /`);
  if (c.checkPath && [...c.checkPath].some((ch) => ch <= ' ' || ch === '\x7f')) p.push(`canary.check_path: "${c.checkPath}" holds spaces or control characters`);
  if (!Number.isInteger(c.checkPort) || c.checkPort < 0 || c.checkPort > 65535) p.push(`canary.check_port: ${c.checkPort} is not a port`);
  const ports = spec.endpoint?.ports ?? [];
  const port = c.checkPort || ports[0]?.targetPort || 0;
  if (c.checkPath && !port) p.push('canary.check_port: the service publishes no port to check: give --canary-check-port');
  if (p.length) throw invalidArgument(p.join('; '), { details: { fields: p.map((x) => x.split(':')[0]) } });
  return { ...c, steps: [...c.steps], checkPort: c.checkPath ? port : 0, checkSuccess: c.checkSuccess || DEFAULT_CHECK_SUCCESS };
}
