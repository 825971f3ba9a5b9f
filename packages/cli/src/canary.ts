/**
 * Canary rollouts in the CLI: the `--canary-*` flags of `service update` as a CanaryConfig, the
 * rollout as `service inspect` shows it, and the wait with a live display of step, weight and
 * gate (`service update --canary-*`, `service promote`).
 */
import { CanaryConfig, EndpointSpec_ResolutionMode, Rollout_State, type Rollout } from '@swarmd/proto/gen/swarm/types';
import { type Service } from '@swarmd/proto/gen/swarm/objects';
import { WatchEvent_Action } from '@swarmd/proto/gen/swarm/control';
import type { Control } from './client/control-client.js';
import { UsageError } from './errors.js';
import { durationText, parseDuration } from './format.js';

export interface CanaryFlags {
  'canary-weight'?: number;
  'canary-steps'?: string;
  'canary-interval'?: string;
  'canary-replicas'?: number;
  'canary-max-failure-ratio'?: string;
  'canary-check-path'?: string;
  'canary-check-port'?: number;
  'canary-check-success'?: string;
}

const CMD = 'service update';

function ratio(flag: string, v: string | undefined): number {
  if (v === undefined) return 0;
  const n = Number(v);
  if (!/^\d*\.?\d+$/.test(v.trim()) || !(n >= 0 && n <= 1)) throw new UsageError(`--${flag} ${v}: expected a ratio between 0 and 1 (e.g. 0.2)`, CMD);
  return n;
}

/** The canary config the flags ask for; undefined when none is given. The flags' own values only (weights 1..100, increasing): the manager checks the rest. */
export function canaryConfigOf(a: CanaryFlags): CanaryConfig | undefined {
  const given = Object.entries(a).filter(([k, v]) => k.startsWith('canary-') && v !== undefined);
  if (given.length === 0) return undefined;
  if (a['canary-weight'] === undefined && a['canary-steps'] === undefined)
    throw new UsageError(`--${given[0][0]} needs --canary-weight P or --canary-steps P1,P2,...: they start the canary rollout`, CMD);
  if (a['canary-weight'] !== undefined && a['canary-steps'] !== undefined) throw new UsageError('give --canary-weight P (one step) or --canary-steps P1,P2,..., not both', CMD);
  let steps: number[];
  if (a['canary-steps'] !== undefined) {
    const parts = String(a['canary-steps']).split(',').map((x) => x.trim());
    steps = parts.map((x) => {
      if (!/^\d+$/.test(x)) throw new UsageError(`--canary-steps ${a['canary-steps']}: "${x}" is not a weight in percent (1..100)`, CMD);
      return Number(x);
    });
    steps.forEach((w, i) => {
      if (w < 1 || w > 100) throw new UsageError(`--canary-steps ${a['canary-steps']}: ${w} is not a weight in percent (1..100)`, CMD);
      if (i > 0 && w <= steps[i - 1]) throw new UsageError(`--canary-steps ${a['canary-steps']}: weights must increase (${steps[i - 1]} then ${w})`, CMD);
    });
  } else {
    const w = Number(a['canary-weight']);
    if (!Number.isInteger(w) || w < 1 || w > 100) throw new UsageError(`--canary-weight ${a['canary-weight']}: expected a whole percent (1..100)`, CMD);
    steps = [w];
  }
  let intervalMs = 0;
  const iv = a['canary-interval'];
  if (iv !== undefined && iv !== 'manual') {
    const ms = parseDuration(iv);
    if (ms === undefined || ms <= 0) throw new UsageError(`--canary-interval ${iv}: expected a duration like 30s or 1m, or "manual"`, CMD);
    intervalMs = ms;
  }
  const replicas = a['canary-replicas'];
  if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 1)) throw new UsageError(`--canary-replicas ${replicas}: expected a whole number ≥ 1`, CMD);
  const port = a['canary-check-port'];
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new UsageError(`--canary-check-port ${port}: expected a port (1..65535)`, CMD);
  if ((port !== undefined || a['canary-check-success'] !== undefined) && !a['canary-check-path'])
    throw new UsageError('--canary-check-port and --canary-check-success go with --canary-check-path /PATH (the HTTP check they configure)', CMD);
  return CanaryConfig.fromPartial({
    steps,
    intervalMs,
    replicas: replicas ?? 0,
    maxFailureRatio: ratio('canary-max-failure-ratio', a['canary-max-failure-ratio']),
    checkPath: a['canary-check-path'] ?? '',
    checkPort: port ?? 0,
    checkSuccess: ratio('canary-check-success', a['canary-check-success']),
  });
}

export const rolloutStateText = (st: Rollout_State | undefined): string => ((Rollout_State[st ?? 0] as string | undefined) ?? 'unknown').toLowerCase();

/** `step 2 of 3 at 50% (progressing): gate holding`, as the live display and inspect show it. */
export function rolloutLine(r: Rollout): string {
  const steps = r.config?.steps ?? [];
  if (r.state === Rollout_State.ABORTED) return `aborted: ${r.message}`;
  const where = r.state === Rollout_State.PROMOTING || r.state === Rollout_State.COMPLETED ? 'promoted' : `step ${r.step + 1} of ${steps.length} at ${r.weight}%`;
  return `${where} (${rolloutStateText(r.state)}): ${r.message}`;
}

/** Inspect's lines for a rollout (empty when the service never had one). */
export function rolloutDetails(s: Service): [string, string][] {
  const r = s.rollout;
  if (!r?.config) return [];
  const c = r.config;
  const dnsrr = s.spec?.endpoint?.mode === EndpointSpec_ResolutionMode.DNSRR;
  return [
    ['Canary rollout', rolloutLine(r)],
    [
      'Canary config',
      `steps ${c.steps.join(',')}%, interval ${c.intervalMs ? durationText(Number(c.intervalMs)) : 'manual'}, ${r.replicas} canary task(s), max failure ratio ${c.maxFailureRatio}` +
        (c.checkPath ? `, HTTP check GET ${c.checkPath} on port ${c.checkPort} (success ≥ ${Number(c.checkSuccess.toPrecision(4))})` : ''),
    ],
    ['Canary weight', dnsrr ? `${r.weight}% asked; dnsrr has no VIP: traffic follows DNS, so the canaries take their share of the tasks` : `${r.weight}% of new connections to the VIP and published ports`],
    ['Canary failures', r.failedTaskIds.join(', ')],
    ['Canary started', r.startedAt ? new Date(Number(r.startedAt)).toISOString() : ''],
    ['Canary next step', r.nextStepAt ? new Date(Number(r.nextStepAt)).toISOString() : ''],
  ];
}

export type RolloutWait = { outcome: 'waiting' | 'promoting' | 'completed'; service: Service } | { outcome: 'aborted'; service: Service; message: string };

/**
 * Follows a rollout, printing a line whenever its step, state or gate message changes, until it
 * waits for `promote` with the gate holding, passes its last step (promoting: the caller then
 * follows the rolling update), completes, or aborts. Gives up after `timeoutMs` without a change
 * (a timed step extends it by its interval).
 */
export async function followRollout(sc: Control, service: Service, o: { print(line: string): void; timeoutMs: number; refreshMs?: number }): Promise<RolloutWait> {
  let svc = service;
  let shown = '';
  let finish: (r: RolloutWait | Error) => void = () => undefined;
  const done = new Promise<RolloutWait | Error>((resolve) => (finish = resolve));
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    const r = svc.rollout;
    const ms = o.timeoutMs + (r?.config?.intervalMs ? Number(r.config.intervalMs) : 0);
    timer = setTimeout(() => finish(new Error(`service ${svc.spec?.annotations?.name}: the canary rollout made no progress for ${durationText(ms)}: ${r ? rolloutLine(r) : 'no rollout'}`)), ms);
  };
  const evaluate = () => {
    const r = svc.rollout;
    if (!r) return finish({ outcome: 'completed', service: svc });
    const line = rolloutLine(r);
    if (line !== shown) {
      shown = line;
      o.print(`canary: ${line}`);
      arm();
    }
    if (r.state === Rollout_State.ABORTED) return finish({ outcome: 'aborted', service: svc, message: r.message });
    if (r.state === Rollout_State.COMPLETED) return finish({ outcome: 'completed', service: svc });
    if (r.state === Rollout_State.PROMOTING) return finish({ outcome: 'promoting', service: svc });
    if (r.state === Rollout_State.WAITING && r.stepStartedAt) return finish({ outcome: 'waiting', service: svc });
  };
  const refresh = async () => {
    const cur = await sc.getService(service.id);
    if ((cur.meta?.version ?? 0) >= (svc.meta?.version ?? 0)) svc = cur;
    evaluate();
  };
  const w = sc.watchService(
    service.id,
    (e) => {
      if (e.service && e.service.id === service.id && e.action !== WatchEvent_Action.REMOVE && (e.service.meta?.version ?? 0) >= (svc.meta?.version ?? 0)) {
        svc = e.service;
        evaluate();
      }
    },
    () => undefined,
  );
  arm();
  const poll = setInterval(() => void refresh().catch(() => undefined), o.refreshMs ?? 2000);
  try {
    await refresh();
    const r = await done;
    if (r instanceof Error) throw r;
    return r;
  } finally {
    clearTimeout(timer);
    clearInterval(poll);
    w.close();
  }
}
