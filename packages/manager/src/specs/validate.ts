import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import {
  type ServiceSpec,
  type TaskSpec,
  type Resources,
  type HealthConfig,
  Mount_Type,
  RestartPolicy_Condition,
  PortConfig_Protocol,
  PortConfig_PublishMode,
  EndpointSpec_ResolutionMode,
  UpdateConfig_FailureAction,
  UpdateConfig_Order,
  type UpdateConfig,
} from '@swarmd/proto';
import { parseConstraint } from './constraint.js';

/** Docker's rule for service names (and a DNS label's length). */
export const SERVICE_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
export const MAX_NAME_LENGTH = 63;
/** The smallest memory limit runc accepts (as Docker). */
export const MIN_MEMORY_BYTES = 4 * 1024 * 1024;

type Problems = string[];

const isInt = (n: number): boolean => Number.isSafeInteger(n);
const nonNeg = (p: Problems, field: string, n: number | undefined): void => {
  if (n === undefined) return;
  if (!isInt(n) || n < 0) p.push(`${field}: must be ≥ 0`);
};
const inEnum = (e: object, v: number): boolean => v !== -1 && Object.values(e).includes(v);

/**
 * Checks a service spec as the control API receives it (before or after applyServiceDefaults).
 * Throws INVALID_ARGUMENT naming every bad field, e.g. `spec.task.container.image: required`;
 * `details.fields` lists them one per entry.
 */
export function validateServiceSpec(spec: Readonly<ServiceSpec> | undefined): void {
  const p = serviceSpecProblems(spec);
  if (p.length > 0) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, p.join('; '), { details: { fields: p } });
}

/** The problems validateServiceSpec would report (empty when the spec is valid). */
export function serviceSpecProblems(spec: Readonly<ServiceSpec> | undefined): string[] {
  const p: Problems = [];
  if (!spec) return ['spec: required'];
  const name = spec.annotations?.name ?? '';
  if (name === '') p.push('spec.annotations.name: required');
  else if (name.length > MAX_NAME_LENGTH) p.push(`spec.annotations.name: at most ${MAX_NAME_LENGTH} characters`);
  else if (!SERVICE_NAME_RE.test(name)) p.push(`spec.annotations.name: "${name}" must match [a-zA-Z0-9][a-zA-Z0-9_.-]*`);
  for (const k of Object.keys(spec.annotations?.labels ?? {})) if (k === '') p.push('spec.annotations.labels: empty label name');

  if (spec.mode?.$case === 'replicated') {
    const r = spec.mode.replicated.replicas;
    if (!isInt(r) || r < 0) p.push('spec.mode.replicated.replicas: must be ≥ 0');
  }
  taskSpecProblems(p, 'spec.task', spec.task, spec.mode?.$case === 'global');
  if (spec.update) updateConfigProblems(p, 'spec.update', spec.update);
  if (spec.rollback) updateConfigProblems(p, 'spec.rollback', spec.rollback);

  const ep = spec.endpoint;
  if (ep) {
    if (!inEnum(EndpointSpec_ResolutionMode, ep.mode)) p.push('spec.endpoint.mode: vip or dnsrr');
    const seen = new Set<string>();
    ep.ports.forEach((port, i) => {
      const f = `spec.endpoint.ports[${i}]`;
      if (!isInt(port.targetPort) || port.targetPort < 1 || port.targetPort > 65535) p.push(`${f}.target_port: must be 1-65535`);
      if (!isInt(port.publishedPort) || port.publishedPort < 0 || port.publishedPort > 65535) p.push(`${f}.published_port: must be 0-65535`);
      if (!inEnum(PortConfig_Protocol, port.protocol)) p.push(`${f}.protocol: tcp, udp or sctp`);
      if (!inEnum(PortConfig_PublishMode, port.publishMode)) p.push(`${f}.publish_mode: ingress or host`);
      if (port.publishedPort > 0) {
        const key = `${port.publishedPort}/${port.protocol}`;
        if (seen.has(key)) p.push(`${f}.published_port: ${port.publishedPort}/${PortConfig_Protocol[port.protocol]?.toLowerCase() ?? port.protocol} is published twice`);
        seen.add(key);
      }
      if (ep.mode === EndpointSpec_ResolutionMode.DNSRR && port.publishMode === PortConfig_PublishMode.INGRESS && port.publishedPort > 0)
        p.push(`${f}: a port published in ingress mode cannot be used with dnsrr endpoint mode`);
    });
  }
  return p;
}

function resourcesProblems(p: Problems, f: string, r: Readonly<Resources> | undefined, isLimit: boolean): void {
  if (!r) return;
  nonNeg(p, `${f}.nano_cpus`, r.nanoCpus);
  nonNeg(p, `${f}.memory_bytes`, r.memoryBytes);
  if (isLimit && r.memoryBytes > 0 && r.memoryBytes < MIN_MEMORY_BYTES) p.push(`${f}.memory_bytes: must be ≥ 4 MiB (${MIN_MEMORY_BYTES} bytes)`);
}

function durationProblems(p: Problems, f: string, ms: number): void {
  if (!isInt(ms) || ms < 0) p.push(`${f}: must be ≥ 0`);
}

function healthProblems(p: Problems, f: string, h: Readonly<HealthConfig>): void {
  if (h.test.length > 0) {
    const kind = h.test[0];
    if (kind !== 'CMD' && kind !== 'CMD-SHELL' && kind !== 'NONE') p.push(`${f}.test: must start with CMD, CMD-SHELL or NONE`);
    else if (kind !== 'NONE' && h.test.length < 2) p.push(`${f}.test: ${kind} needs a command`);
  }
  for (const [k, v] of [
    ['interval_ms', h.intervalMs],
    ['timeout_ms', h.timeoutMs],
    ['start_period_ms', h.startPeriodMs],
  ] as const) {
    // Docker: 0 means "inherit", otherwise at least 1 ms.
    if (!isInt(v) || v < 0) p.push(`${f}.${k}: must be 0 or a positive duration`);
  }
  if (!isInt(h.retries) || h.retries < 0) p.push(`${f}.retries: must be ≥ 0`);
}

function taskSpecProblems(p: Problems, f: string, t: Readonly<TaskSpec> | undefined, global: boolean): void {
  if (!t) {
    p.push(`${f}: required`);
    return;
  }
  const c = t.container;
  if (!c) p.push(`${f}.container: required`);
  else {
    const cf = `${f}.container`;
    if (!c.image) p.push(`${cf}.image: required`);
    else if (/\s/.test(c.image)) p.push(`${cf}.image: "${c.image}" is not a valid reference (whitespace)`);
    else {
      const repo = c.image.split('@')[0].replace(/:[^/]*$/, '');
      const path = repo.includes('/') && /[.:]|^localhost$/.test(repo.split('/')[0]) ? repo.slice(repo.indexOf('/') + 1) : repo;
      if (path !== path.toLowerCase()) p.push(`${cf}.image: "${c.image}": repository name must be lowercase`);
    }
    c.env.forEach((e, i) => {
      const eq = e.indexOf('=');
      if (eq === 0 || e === '') p.push(`${cf}.env[${i}]: "${e}" has no variable name`);
    });
    if (c.dir && !c.dir.startsWith('/')) p.push(`${cf}.dir: "${c.dir}" must be an absolute path`);
    if (c.hostname.length > 63) p.push(`${cf}.hostname: at most 63 characters`);
    if (c.stopSignal && !/^(SIG)?[A-Z0-9+]+$|^\d+$/.test(c.stopSignal)) p.push(`${cf}.stop_signal: "${c.stopSignal}" is not a signal`);
    durationProblems(p, `${cf}.stop_grace_period_ms`, c.stopGracePeriodMs);
    const targets = new Set<string>();
    c.mounts.forEach((m, i) => {
      const mf = `${cf}.mounts[${i}]`;
      if (!inEnum(Mount_Type, m.type)) p.push(`${mf}.type: bind, volume or tmpfs`);
      if (!m.target) p.push(`${mf}.target: required`);
      else if (!m.target.startsWith('/')) p.push(`${mf}.target: "${m.target}" must be an absolute path`);
      else if (m.target !== '/' && targets.has(m.target.replace(/\/+$/, ''))) p.push(`${mf}.target: "${m.target}" is mounted twice`);
      if (m.target) targets.add(m.target.replace(/\/+$/, ''));
      switch (m.type) {
        case Mount_Type.BIND:
          if (!m.source) p.push(`${mf}.source: required for a bind mount`);
          else if (!m.source.startsWith('/')) p.push(`${mf}.source: "${m.source}" must be an absolute path for a bind mount`);
          break;
        case Mount_Type.VOLUME:
          if (m.source && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(m.source)) p.push(`${mf}.source: "${m.source}" is not a valid volume name`);
          break;
        case Mount_Type.TMPFS:
          if (m.source) p.push(`${mf}.source: must be empty for tmpfs`);
          nonNeg(p, `${mf}.tmpfs_size_bytes`, m.tmpfsSizeBytes);
          break;
      }
    });
    if (c.healthcheck) healthProblems(p, `${cf}.healthcheck`, c.healthcheck);
  }

  const r = t.resources;
  if (r) {
    resourcesProblems(p, `${f}.resources.limits`, r.limits, true);
    resourcesProblems(p, `${f}.resources.reservations`, r.reservations, false);
    nonNeg(p, `${f}.resources.pids_limit`, r.pidsLimit);
    const l = r.limits;
    const res = r.reservations;
    if (l && res) {
      if (l.memoryBytes > 0 && res.memoryBytes > l.memoryBytes) p.push(`${f}.resources.reservations.memory_bytes: above the limit`);
      if (l.nanoCpus > 0 && res.nanoCpus > l.nanoCpus) p.push(`${f}.resources.reservations.nano_cpus: above the limit`);
    }
  }

  const rp = t.restart;
  if (rp) {
    if (!inEnum(RestartPolicy_Condition, rp.condition)) p.push(`${f}.restart.condition: none, on-failure or any`);
    durationProblems(p, `${f}.restart.delay_ms`, rp.delayMs);
    durationProblems(p, `${f}.restart.window_ms`, rp.windowMs);
    nonNeg(p, `${f}.restart.max_attempts`, rp.maxAttempts);
  }

  const pl = t.placement;
  if (pl) {
    pl.constraints.forEach((expr, i) => {
      const c2 = parseConstraint(expr);
      if (typeof c2 === 'string') p.push(`${f}.placement.constraints[${i}]: ${c2}`);
    });
    pl.preferences.forEach((pref, i) => {
      const d = pref.spreadDescriptor;
      if (!/^node\.labels\.[^\s]+$/i.test(d)) p.push(`${f}.placement.preferences[${i}].spread_descriptor: "${d}": only node.labels.<name> is supported`);
    });
    pl.platforms.forEach((pf, i) => {
      if (!pf.os && !pf.architecture) p.push(`${f}.placement.platforms[${i}]: os or architecture required`);
    });
    nonNeg(p, `${f}.placement.max_replicas`, pl.maxReplicas);
    if (global && pl.maxReplicas > 0) p.push(`${f}.placement.max_replicas: only for replicated services`);
  }

  const nets = new Set<string>();
  t.networks.forEach((n, i) => {
    if (!n.target) p.push(`${f}.networks[${i}].target: required`);
    else if (nets.has(n.target)) p.push(`${f}.networks[${i}].target: "${n.target}" is attached twice`);
    nets.add(n.target);
  });
}

function updateConfigProblems(p: Problems, f: string, u: Readonly<UpdateConfig>): void {
  nonNeg(p, `${f}.parallelism`, u.parallelism);
  durationProblems(p, `${f}.delay_ms`, u.delayMs);
  durationProblems(p, `${f}.monitor_ms`, u.monitorMs);
  if (!(u.maxFailureRatio >= 0 && u.maxFailureRatio <= 1)) p.push(`${f}.max_failure_ratio: must be between 0 and 1`);
  if (!inEnum(UpdateConfig_FailureAction, u.failureAction)) p.push(`${f}.failure_action: pause, continue or rollback`);
  if (!inEnum(UpdateConfig_Order, u.order)) p.push(`${f}.order: stop-first or start-first`);
}
