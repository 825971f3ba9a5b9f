import type { ServiceSpec, UpdateConfig, RestartPolicy } from '@swarmd/proto';
import { RestartPolicy_Condition, UpdateConfig_FailureAction, UpdateConfig_Order } from '@swarmd/proto';

/** Docker's defaults (docker service create), in one place. */
export const SERVICE_DEFAULTS = {
  replicas: 1,
  restart: { condition: RestartPolicy_Condition.ANY, delayMs: 5_000, maxAttempts: 0, windowMs: 0 } satisfies RestartPolicy,
  stopGracePeriodMs: 10_000,
  update: {
    parallelism: 1,
    delayMs: 0,
    failureAction: UpdateConfig_FailureAction.PAUSE,
    monitorMs: 5_000,
    maxFailureRatio: 0,
    order: UpdateConfig_Order.STOP_FIRST,
  } satisfies UpdateConfig,
  rollback: {
    parallelism: 1,
    delayMs: 0,
    failureAction: UpdateConfig_FailureAction.PAUSE,
    monitorMs: 5_000,
    maxFailureRatio: 0,
    order: UpdateConfig_Order.STOP_FIRST,
  } satisfies UpdateConfig,
} as const;

/**
 * A copy of `spec` with Docker's defaults filled in where the user gave nothing: replicated mode
 * with 1 replica, restart policy any/5 s, stop grace period 10 s, update and rollback config
 * (parallelism 1, pause on failure, monitor 5 s, stop-first). Given values are kept. Proto3
 * cannot tell "unset" from 0 for scalars, so a message that is present is kept whole, except
 * stop_grace_period_ms where 0 means "default".
 */
export function applyServiceDefaults(spec: Readonly<ServiceSpec>): ServiceSpec {
  const s = structuredClone(spec) as ServiceSpec;
  s.mode ??= { $case: 'replicated', replicated: { replicas: SERVICE_DEFAULTS.replicas } };
  if (s.task) {
    s.task.restart ??= { ...SERVICE_DEFAULTS.restart };
    if (s.task.container && !s.task.container.stopGracePeriodMs) s.task.container.stopGracePeriodMs = SERVICE_DEFAULTS.stopGracePeriodMs;
  }
  s.update ??= { ...SERVICE_DEFAULTS.update };
  s.rollback ??= { ...SERVICE_DEFAULTS.rollback };
  return s;
}
