/**
 * `service create` / `service update` flags → a ServiceSpec (pure: no I/O but what is passed in).
 * Flag names follow `docker service create`. A bad value throws a UsageError naming the flag, so
 * nothing is sent.
 */
import type { CanaryFlags } from './canary.js';
import { Annotations, ConfigReference, SecretReference, EndpointSpec, EndpointSpec_ResolutionMode, HealthConfig, Mount, Mount_Type, Placement, PortConfig, PortConfig_Protocol, PortConfig_PublishMode, RegistryAuth, ResourceRequirements, Resources, RestartPolicy, RestartPolicy_Condition, UpdateConfig, UpdateConfig_FailureAction, UpdateConfig_Order } from '@swarmd/proto/gen/swarm/types';
import { ContainerSpec, ServiceSpec, TaskSpec } from '@swarmd/proto/gen/swarm/specs';
import { UsageError } from './errors.js';
import { parseDuration } from './format.js';

export interface CommonFlags {
  env?: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  'container-label'?: string[];
  'reserve-cpu'?: string;
  'reserve-memory'?: string;
  'limit-cpu'?: string;
  'limit-memory'?: string;
  'limit-pids'?: number;
  'restart-condition'?: string;
  'restart-delay'?: string;
  'restart-max-attempts'?: number;
  'restart-window'?: string;
  'health-cmd'?: string;
  'health-interval'?: string;
  'health-timeout'?: string;
  'health-retries'?: number;
  'health-start-period'?: string;
  'no-healthcheck'?: boolean;
  'stop-signal'?: string;
  'stop-grace-period'?: string;
  'stop-drain-period'?: string;
  'endpoint-mode'?: string;
  entrypoint?: string;
  replicas?: number;
  'update-parallelism'?: number;
  'update-delay'?: string;
  'update-order'?: string;
  'update-failure-action'?: string;
  'update-monitor'?: string;
  'update-max-failure-ratio'?: string;
  'rollback-parallelism'?: number;
  'rollback-delay'?: string;
  'rollback-order'?: string;
  'rollback-failure-action'?: string;
  'rollback-monitor'?: string;
  'rollback-max-failure-ratio'?: string;
}

export interface CreateFlags extends CommonFlags {
  name?: string;
  mode?: string;
  label?: string[];
  mount?: string[];
  constraint?: string[];
  'placement-pref'?: string[];
  publish?: string[];
  network?: string[];
  secret?: string[];
  config?: string[];
}

export interface UpdateFlags extends CommonFlags, CanaryFlags {
  image?: string;
  args?: string;
  'env-add'?: string[];
  'env-rm'?: string[];
  'label-add'?: string[];
  'label-rm'?: string[];
  'container-label-add'?: string[];
  'container-label-rm'?: string[];
  'constraint-add'?: string[];
  'constraint-rm'?: string[];
  'mount-add'?: string[];
  'mount-rm'?: string[];
  'publish-add'?: string[];
  'publish-rm'?: string[];
  'network-add'?: string[];
  'network-rm'?: string[];
  'secret-add'?: string[];
  'secret-rm'?: string[];
  'config-add'?: string[];
  'config-rm'?: string[];
  force?: boolean;
}

const usage = (cmd: string) => (m: string) => new UsageError(m, cmd);

/** `64M`, `1G`, `512k`, `1.5g`, `1024` (bytes), binary units as Docker's RAMInBytes. */
export function parseMemory(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) return undefined;
  const mult: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.round(parseFloat(m[1]) * mult[m[2].toLowerCase()]);
}

/** `0.5`, `2` CPUs → nano CPUs. */
export function parseCpus(s: string): number | undefined {
  if (!/^\d+(\.\d+)?$/.test(s.trim())) return undefined;
  return Math.round(parseFloat(s) * 1e9);
}

function duration(flag: string, v: string | undefined, bad: (m: string) => Error): number | undefined {
  if (v === undefined) return undefined;
  const ms = v === '0' ? 0 : parseDuration(v);
  if (ms === undefined) throw bad(`--${flag} ${v}: expected a duration like 10s, 1m30s, 500ms`);
  return ms;
}

function keyValues(flag: string, values: readonly string[] | undefined, bad: (m: string) => Error, requireEq = false): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const i = v.indexOf('=');
    const k = i < 0 ? v : v.slice(0, i);
    if (!k.trim() || (requireEq && i < 0)) throw bad(`--${flag} ${v}: expected KEY=VALUE`);
    out[k] = i < 0 ? '' : v.slice(i + 1);
  }
  return out;
}

/** `--publish 8080:80[/udp]`, `80`, or `published=8080,target=80,mode=host,protocol=udp`. */
export function parsePort(v: string, bad: (m: string) => Error, flag = 'publish'): PortConfig {
  const port = PortConfig.fromPartial({ protocol: PortConfig_Protocol.TCP, publishMode: PortConfig_PublishMode.INGRESS });
  const num = (x: string, what: string) => {
    const n = Number(x);
    if (!/^\d+$/.test(x) || n < 1 || n > 65535) throw bad(`--${flag} ${v}: ${what} "${x}" is not a port (1-65535)`);
    return n;
  };
  const proto = (x: string) => {
    const p = { tcp: PortConfig_Protocol.TCP, udp: PortConfig_Protocol.UDP, sctp: PortConfig_Protocol.SCTP }[x.toLowerCase()];
    if (p === undefined) throw bad(`--${flag} ${v}: protocol "${x}" is tcp, udp or sctp`);
    return p;
  };
  if (v.includes('=')) {
    for (const part of v.split(',')) {
      const [k, val = ''] = part.split('=', 2);
      switch (k.trim()) {
        case 'published':
          port.publishedPort = num(val, 'published');
          break;
        case 'target':
          port.targetPort = num(val, 'target');
          break;
        case 'mode':
          if (val === 'host') port.publishMode = PortConfig_PublishMode.HOST;
          else if (val === 'ingress') port.publishMode = PortConfig_PublishMode.INGRESS;
          else throw bad(`--${flag} ${v}: mode "${val}" is host or ingress`);
          break;
        case 'protocol':
          port.protocol = proto(val);
          break;
        default:
          throw bad(`--${flag} ${v}: unknown field "${k}" (published, target, mode, protocol)`);
      }
    }
    if (!port.targetPort) throw bad(`--${flag} ${v}: target= is required`);
    return port;
  }
  const [ports, p] = v.split('/', 2);
  if (p !== undefined) port.protocol = proto(p);
  const parts = ports.split(':');
  if (parts.length === 1) port.targetPort = num(parts[0], 'target');
  else if (parts.length === 2) {
    port.publishedPort = num(parts[0], 'published');
    port.targetPort = num(parts[1], 'target');
  } else throw bad(`--${flag} ${v}: expected PUBLISHED:TARGET[/PROTOCOL] or published=,target=,mode=,protocol=`);
  return port;
}

/** `type=bind|volume|tmpfs,source=,target=,readonly[=true|false]` (src/dst/destination/ro accepted). */
export function parseMount(v: string, bad: (m: string) => Error, flag = 'mount'): Mount {
  const m = Mount.fromPartial({ type: Mount_Type.VOLUME });
  for (const part of v.split(',')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const val = eq < 0 ? undefined : part.slice(eq + 1);
    const bool = () => {
      if (val === undefined || val === 'true' || val === '1') return true;
      if (val === 'false' || val === '0') return false;
      throw bad(`--${flag} ${v}: ${k}="${val}" is true or false`);
    };
    switch (k) {
      case 'type':
        if (val === 'bind') m.type = Mount_Type.BIND;
        else if (val === 'volume') m.type = Mount_Type.VOLUME;
        else if (val === 'tmpfs') m.type = Mount_Type.TMPFS;
        else throw bad(`--${flag} ${v}: type "${val}" is bind, volume or tmpfs`);
        break;
      case 'source':
      case 'src':
        m.source = val ?? '';
        break;
      case 'target':
      case 'dst':
      case 'destination':
        m.target = val ?? '';
        break;
      case 'readonly':
      case 'ro':
        m.readOnly = bool();
        break;
      case 'volume-driver':
        m.volumeDriver = val ?? '';
        break;
      case 'volume-label': {
        const [lk, lv = ''] = (val ?? '').split('=', 2);
        m.volumeLabels[lk] = lv;
        break;
      }
      case 'tmpfs-size': {
        const n = parseMemory(val ?? '');
        if (n === undefined) throw bad(`--${flag} ${v}: tmpfs-size "${val}" is not a size (e.g. 64M)`);
        m.tmpfsSizeBytes = n;
        break;
      }
      case 'tmpfs-mode':
        if (!/^[0-7]{3,4}$/.test(val ?? '')) throw bad(`--${flag} ${v}: tmpfs-mode "${val}" is an octal mode (e.g. 1777)`);
        m.tmpfsMode = parseInt(val!, 8);
        break;
      default:
        throw bad(`--${flag} ${v}: unknown field "${k}" (type, source, target, readonly, volume-driver, volume-label, tmpfs-size, tmpfs-mode)`);
    }
  }
  if (!m.target) throw bad(`--${flag} ${v}: target= is required`);
  if (!m.target.startsWith('/')) throw bad(`--${flag} ${v}: target "${m.target}" must be an absolute path`);
  if (m.type === Mount_Type.BIND && !m.source) throw bad(`--${flag} ${v}: a bind mount needs source=`);
  if (m.type === Mount_Type.BIND && !m.source.startsWith('/')) throw bad(`--${flag} ${v}: a bind mount's source "${m.source}" must be an absolute path`);
  if (m.type === Mount_Type.TMPFS && m.source) throw bad(`--${flag} ${v}: a tmpfs mount takes no source`);
  return m;
}

/**
 * `--secret NAME` or `source=NAME,target=PATH,uid=0,gid=0,mode=0444` (src= accepted); a secret's
 * relative target goes under /run/secrets, a config's default target is /NAME.
 */
export function parseDataRef(kind: 'secret' | 'config', v: string, bad: (m: string) => Error, flag: string = kind): { name: string; file: { name: string; uid: string; gid: string; mode: number } } {
  const r = { name: '', file: { name: '', uid: '0', gid: '0', mode: 0o444 } };
  if (!v.includes('=')) r.name = v;
  else
    for (const part of v.split(',')) {
      const eq = part.indexOf('=');
      const k = part.slice(0, eq).trim();
      const val = part.slice(eq + 1);
      if (eq < 0) throw bad(`--${flag} ${v}: "${part}" is not KEY=VALUE`);
      if (k === 'source' || k === 'src') r.name = val;
      else if (k === 'target') r.file.name = val;
      else if (k === 'uid' || k === 'gid') {
        if (!/^\d+$/.test(val)) throw bad(`--${flag} ${v}: ${k} "${val}" must be a number`);
        r.file[k] = val;
      } else if (k === 'mode') {
        if (!/^0?[0-7]{3}$/.test(val)) throw bad(`--${flag} ${v}: mode "${val}" is an octal mode (e.g. 0400)`);
        r.file.mode = parseInt(val, 8);
      } else throw bad(`--${flag} ${v}: unknown field "${k}" (source, target, uid, gid, mode)`);
    }
  if (!r.name) throw bad(`--${flag} ${v}: source= is required`);
  if (kind === 'secret') r.file.name = r.file.name ? (r.file.name.startsWith('/') ? r.file.name : `/run/secrets/${r.file.name}`) : `/run/secrets/${r.name}`;
  else {
    r.file.name ||= `/${r.name}`;
    if (!r.file.name.startsWith('/')) throw bad(`--${flag} ${v}: a config's target must be an absolute path`);
  }
  return r;
}

/** Shell-like split of `--entrypoint "sh -c"` / `--health-cmd` is not needed: words on blanks, quotes kept together. */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

const ENDPOINT_MODES: Record<string, EndpointSpec_ResolutionMode> = { vip: EndpointSpec_ResolutionMode.VIP, dnsrr: EndpointSpec_ResolutionMode.DNSRR };

/**
 * `--endpoint-mode vip|dnsrr` (as Docker's): how the service's name resolves on its networks, to
 * one virtual IP balanced over the tasks, or to the tasks' own addresses (round robin, no VIP).
 * Applied after the ports, so that a dnsrr service publishing a port through the routing mesh
 * (which needs the VIP) is refused here, naming the port.
 */
function applyEndpointMode(spec: ServiceSpec, v: string | undefined, bad: (m: string) => Error): void {
  if (v === undefined) return;
  const mode = ENDPOINT_MODES[v];
  if (mode === undefined) throw bad(`--endpoint-mode ${v}: expected vip or dnsrr`);
  if (!spec.endpoint && mode === EndpointSpec_ResolutionMode.VIP) return; // the default already
  const ep = (spec.endpoint ??= EndpointSpec.fromPartial({ mode: EndpointSpec_ResolutionMode.VIP }));
  ep.mode = mode;
  const ingress = ep.ports.find((p) => p.publishMode === PortConfig_PublishMode.INGRESS && p.publishedPort > 0);
  if (mode === EndpointSpec_ResolutionMode.DNSRR && ingress)
    throw bad(`--endpoint-mode dnsrr: port ${ingress.publishedPort} is published through the routing mesh, which needs the service's VIP; publish it with mode=host, or keep --endpoint-mode vip`);
}

const RESTART: Record<string, RestartPolicy_Condition> = { none: RestartPolicy_Condition.NONE, 'on-failure': RestartPolicy_Condition.ON_FAILURE, any: RestartPolicy_Condition.ANY };

/** The flags both commands share, applied onto `spec` (which is changed in place). */
function applyCommon(spec: ServiceSpec, f: CommonFlags, bad: (m: string) => Error): void {
  const task = spec.task!;
  const c = task.container!;
  for (const e of f.env ?? []) {
    if (!e || e.startsWith('=')) throw bad(`--env ${e}: expected KEY=VALUE`);
    const k = e.split('=')[0];
    c.env = c.env.filter((x) => x.split('=')[0] !== k);
    c.env.push(e);
  }
  if (f.workdir !== undefined) {
    if (f.workdir && !f.workdir.startsWith('/')) throw bad(`--workdir ${f.workdir}: must be an absolute path`);
    c.dir = f.workdir;
  }
  if (f.user !== undefined) c.user = f.user;
  if (f.hostname !== undefined) c.hostname = f.hostname;
  Object.assign(c.labels, keyValues('container-label', f['container-label'], bad));
  if (f.entrypoint !== undefined) c.command = splitWords(f.entrypoint);

  const res = (task.resources ??= ResourceRequirements.create());
  const cpu = (flag: 'reserve-cpu' | 'limit-cpu') => {
    const v = f[flag];
    if (v === undefined) return undefined;
    const n = parseCpus(v);
    if (n === undefined) throw bad(`--${flag} ${v}: expected a number of CPUs like 0.5 or 2`);
    return n;
  };
  const mem = (flag: 'reserve-memory' | 'limit-memory') => {
    const v = f[flag];
    if (v === undefined) return undefined;
    const n = parseMemory(v);
    if (n === undefined) throw bad(`--${flag} ${v}: expected a size like 64M or 1G`);
    return n;
  };
  const rc = cpu('reserve-cpu');
  const rm = mem('reserve-memory');
  const lc = cpu('limit-cpu');
  const lm = mem('limit-memory');
  if (rc !== undefined || rm !== undefined) {
    res.reservations ??= Resources.create();
    if (rc !== undefined) res.reservations.nanoCpus = rc;
    if (rm !== undefined) res.reservations.memoryBytes = rm;
  }
  if (lc !== undefined || lm !== undefined) {
    res.limits ??= Resources.create();
    if (lc !== undefined) res.limits.nanoCpus = lc;
    if (lm !== undefined) res.limits.memoryBytes = lm;
  }
  if (f['limit-pids'] !== undefined) {
    if (!Number.isInteger(f['limit-pids']) || f['limit-pids'] < 0) throw bad(`--limit-pids ${f['limit-pids']}: expected a whole number ≥ 0`);
    res.pidsLimit = f['limit-pids'];
  }
  if (!res.limits && !res.reservations && !res.pidsLimit) task.resources = undefined;

  const restartGiven = ['restart-condition', 'restart-delay', 'restart-max-attempts', 'restart-window'].some((k) => f[k as keyof CommonFlags] !== undefined);
  if (restartGiven) {
    const r = (task.restart ??= RestartPolicy.fromPartial({ condition: RestartPolicy_Condition.ANY, delayMs: 5000 }));
    if (f['restart-condition'] !== undefined) {
      const cond = RESTART[f['restart-condition']];
      if (cond === undefined) throw bad(`--restart-condition ${f['restart-condition']}: expected none, on-failure or any`);
      r.condition = cond;
    }
    r.delayMs = duration('restart-delay', f['restart-delay'], bad) ?? r.delayMs;
    r.windowMs = duration('restart-window', f['restart-window'], bad) ?? r.windowMs;
    if (f['restart-max-attempts'] !== undefined) {
      if (!Number.isInteger(f['restart-max-attempts']) || f['restart-max-attempts'] < 0) throw bad(`--restart-max-attempts ${f['restart-max-attempts']}: expected a whole number ≥ 0`);
      r.maxAttempts = f['restart-max-attempts'];
    }
  }

  const healthGiven = ['health-cmd', 'health-interval', 'health-timeout', 'health-retries', 'health-start-period'].some((k) => f[k as keyof CommonFlags] !== undefined);
  if (f['no-healthcheck'] && healthGiven) throw bad('--no-healthcheck conflicts with the --health-* flags');
  if (f['no-healthcheck']) c.healthcheck = HealthConfig.fromPartial({ test: ['NONE'] });
  else if (healthGiven) {
    const h = (c.healthcheck ??= HealthConfig.create());
    if (f['health-cmd'] !== undefined) {
      if (!f['health-cmd'].trim()) throw bad('--health-cmd: empty command');
      h.test = ['CMD-SHELL', f['health-cmd']];
    }
    h.intervalMs = duration('health-interval', f['health-interval'], bad) ?? h.intervalMs;
    h.timeoutMs = duration('health-timeout', f['health-timeout'], bad) ?? h.timeoutMs;
    h.startPeriodMs = duration('health-start-period', f['health-start-period'], bad) ?? h.startPeriodMs;
    if (f['health-retries'] !== undefined) {
      if (!Number.isInteger(f['health-retries']) || f['health-retries'] < 0) throw bad(`--health-retries ${f['health-retries']}: expected a whole number ≥ 0`);
      h.retries = f['health-retries'];
    }
  }
  if (f['stop-signal'] !== undefined) {
    if (!/^(SIG)?[A-Z0-9+]+$|^\d+$/i.test(f['stop-signal'])) throw bad(`--stop-signal ${f['stop-signal']}: not a signal (e.g. SIGTERM)`);
    c.stopSignal = f['stop-signal'].toUpperCase();
  }
  c.stopGracePeriodMs = duration('stop-grace-period', f['stop-grace-period'], bad) ?? c.stopGracePeriodMs;
  const drain = duration('stop-drain-period', f['stop-drain-period'], bad);
  if (drain !== undefined) c.stopDrainPeriodMs = drain === 0 ? -1 : drain;
  applyUpdateConfig(spec, f, bad);
  if (f.replicas !== undefined) {
    if (!Number.isInteger(f.replicas) || f.replicas < 0) throw bad(`--replicas ${f.replicas}: expected a whole number ≥ 0`);
    if (spec.mode?.$case === 'global') throw bad('--replicas can only be used with replicated mode');
    spec.mode = { $case: 'replicated', replicated: { replicas: f.replicas } };
  }
}

/** Docker's update config defaults (`docker service create --help`), the ones the manager fills in too. */
const UPDATE_DEFAULTS = UpdateConfig.fromPartial({ parallelism: 1, failureAction: UpdateConfig_FailureAction.PAUSE, monitorMs: 5_000, order: UpdateConfig_Order.STOP_FIRST });
const UPDATE_ORDER: Record<string, UpdateConfig_Order> = { 'stop-first': UpdateConfig_Order.STOP_FIRST, 'start-first': UpdateConfig_Order.START_FIRST };
const FAILURE_ACTION: Record<string, UpdateConfig_FailureAction> = {
  pause: UpdateConfig_FailureAction.PAUSE,
  continue: UpdateConfig_FailureAction.CONTINUE,
  rollback: UpdateConfig_FailureAction.ROLLBACK,
};
type ConfigPrefix = 'update' | 'rollback';
const configFlags = (k: ConfigPrefix) => [`${k}-parallelism`, `${k}-delay`, `${k}-order`, `${k}-failure-action`, `${k}-monitor`, `${k}-max-failure-ratio`] as const;

/**
 * The `--update-*` flags onto spec.update and the `--rollback-*` ones onto spec.rollback (Docker's
 * names; Docker's defaults for what is not given and not set yet).
 */
function applyUpdateConfig(spec: ServiceSpec, f: CommonFlags, bad: (m: string) => Error): void {
  for (const k of ['update', 'rollback'] as const) applyConfigFlags(spec, k, f as unknown as Record<string, string | number | undefined>, bad);
}

function applyConfigFlags(spec: ServiceSpec, k: ConfigPrefix, f: Record<string, string | number | undefined>, bad: (m: string) => Error): void {
  if (!configFlags(k).some((x) => f[x] !== undefined)) return;
  const u = (spec[k] ??= { ...UPDATE_DEFAULTS });
  const p = f[`${k}-parallelism`];
  if (p !== undefined) {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 0) throw bad(`--${k}-parallelism ${p}: expected a whole number ≥ 0 (0 = all at once)`);
    u.parallelism = p;
  }
  const str = (x: string | number | undefined): string | undefined => (x === undefined ? undefined : String(x));
  u.delayMs = duration(`${k}-delay`, str(f[`${k}-delay`]), bad) ?? u.delayMs;
  u.monitorMs = duration(`${k}-monitor`, str(f[`${k}-monitor`]), bad) ?? u.monitorMs;
  const order = str(f[`${k}-order`]);
  if (order !== undefined) {
    if (UPDATE_ORDER[order] === undefined) throw bad(`--${k}-order ${order}: expected stop-first or start-first`);
    u.order = UPDATE_ORDER[order];
  }
  const action = str(f[`${k}-failure-action`]);
  if (action !== undefined) {
    if (FAILURE_ACTION[action] === undefined || (k === 'rollback' && action === 'rollback')) {
      throw bad(`--${k}-failure-action ${action}: expected pause, continue${k === 'update' ? ' or rollback' : ''}`);
    }
    u.failureAction = FAILURE_ACTION[action];
  }
  const ratio = str(f[`${k}-max-failure-ratio`]);
  if (ratio !== undefined) {
    const r = Number(ratio);
    if (!/^\d*\.?\d+$/.test(ratio.trim()) || !(r >= 0 && r <= 1)) throw bad(`--${k}-max-failure-ratio ${ratio}: expected a number from 0 to 1 (e.g. 0.25)`);
    u.maxFailureRatio = r;
  }
}

function checkConstraint(flag: string, expr: string, bad: (m: string) => Error): string {
  if (!/^[^=!]+(==|!=)[^=!]+$/.test(expr)) throw bad(`--${flag} ${expr}: expected KEY==VALUE or KEY!=VALUE (e.g. node.labels.zone==a)`);
  return expr;
}

/** The spec of `service create [flags] IMAGE [COMMAND] [ARG...]`. */
export function specOfCreateFlags(f: CreateFlags, image: string, command: readonly string[], pullAuth?: RegistryAuth): ServiceSpec {
  const bad = usage('service create');
  if (!image) throw bad('service create: an IMAGE is required');
  if (/\s/.test(image)) throw bad(`IMAGE "${image}": not an image reference`);
  const mode = f.mode ?? 'replicated';
  if (mode !== 'replicated' && mode !== 'global') throw bad(`--mode ${mode}: expected replicated or global`);
  if (mode === 'global' && f.replicas !== undefined) throw bad('--replicas can only be used with replicated mode');
  if (f.name !== undefined && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(f.name)) throw bad(`--name ${f.name}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*`);
  const spec = ServiceSpec.fromPartial({
    annotations: { name: f.name ?? '', labels: keyValues('label', f.label, bad) },
    task: {
      container: { image, args: [...command], pullAuth },
      networks: (f.network ?? []).map((target) => ({ target })),
    },
    mode: mode === 'global' ? { $case: 'global', global: {} } : { $case: 'replicated', replicated: { replicas: 1 } },
  });
  const c = spec.task!.container!;
  applyCommon(spec, f, bad);
  c.mounts = (f.mount ?? []).map((m) => parseMount(m, bad));
  const constraints = (f.constraint ?? []).map((x) => checkConstraint('constraint', x, bad));
  const prefs = (f['placement-pref'] ?? []).map((p) => {
    const m = /^spread=(.+)$/.exec(p);
    if (!m) throw bad(`--placement-pref ${p}: expected spread=node.labels.NAME`);
    return { spreadDescriptor: m[1] };
  });
  if (constraints.length || prefs.length) spec.task!.placement = Placement.fromPartial({ constraints, preferences: prefs });
  c.secrets = (f.secret ?? []).map((x) => {
    const r = parseDataRef('secret', x, bad);
    return SecretReference.fromPartial({ secretName: r.name, file: r.file });
  });
  c.configs = (f.config ?? []).map((x) => {
    const r = parseDataRef('config', x, bad);
    return ConfigReference.fromPartial({ configName: r.name, file: r.file });
  });
  const ports = (f.publish ?? []).map((p) => parsePort(p, bad));
  if (ports.length) spec.endpoint = EndpointSpec.fromPartial({ mode: EndpointSpec_ResolutionMode.VIP, ports });
  applyEndpointMode(spec, f['endpoint-mode'], bad);
  return spec;
}

/** A new spec: `current` with the `service update` flags applied. Throws when nothing changes. */
export function applyUpdateFlags(current: ServiceSpec, f: UpdateFlags, networks: readonly { id: string; spec?: { annotations?: { name: string } } }[] = []): ServiceSpec {
  const bad = usage('service update');
  const spec = structuredClone(current);
  spec.task ??= TaskSpec.create();
  const c = (spec.task.container ??= ContainerSpec.create());
  if (f.image !== undefined) {
    if (!f.image || /\s/.test(f.image)) throw bad(`--image ${f.image}: not an image reference`);
    c.image = f.image;
  }
  if (f.args !== undefined) c.args = splitWords(f.args);
  for (const k of f['env-rm'] ?? []) c.env = c.env.filter((e) => e.split('=')[0] !== k);
  applyCommon(spec, { ...f, env: [...(f.env ?? []), ...(f['env-add'] ?? [])] }, bad);
  const labels = (spec.annotations ??= Annotations.create()).labels;
  for (const k of f['label-rm'] ?? []) delete labels[k];
  Object.assign(labels, keyValues('label-add', f['label-add'], bad));
  for (const k of f['container-label-rm'] ?? []) delete c.labels[k];
  Object.assign(c.labels, keyValues('container-label-add', f['container-label-add'], bad));
  if (f['constraint-add']?.length || f['constraint-rm']?.length) {
    const pl = (spec.task.placement ??= Placement.create());
    pl.constraints = pl.constraints.filter((x) => !(f['constraint-rm'] ?? []).includes(x));
    for (const x of f['constraint-add'] ?? []) if (!pl.constraints.includes(checkConstraint('constraint-add', x, bad))) pl.constraints.push(x);
  }
  if (f['mount-rm']?.length) c.mounts = c.mounts.filter((m) => !(f['mount-rm'] ?? []).includes(m.target));
  for (const m of f['mount-add'] ?? []) {
    const mount = parseMount(m, bad, 'mount-add');
    c.mounts = [...c.mounts.filter((x) => x.target !== mount.target), mount];
  }
  if (f['publish-rm']?.length || f['publish-add']?.length) {
    const ep = (spec.endpoint ??= EndpointSpec.fromPartial({ mode: EndpointSpec_ResolutionMode.VIP }));
    const rm = (f['publish-rm'] ?? []).map((p) => parsePort(p, bad, 'publish-rm'));
    ep.ports = ep.ports.filter((p) => !rm.some((r) => r.targetPort === p.targetPort && (!r.publishedPort || r.publishedPort === p.publishedPort)));
    for (const p of f['publish-add'] ?? []) ep.ports.push(parsePort(p, bad, 'publish-add'));
  }
  applyEndpointMode(spec, f['endpoint-mode'], bad);
  if (f['network-rm']?.length || f['network-add']?.length) {
    // Stored targets are network ids (names for host/none): match a flag by name, id or id prefix.
    const idOf = (ref: string): string => networks.find((n) => n.id === ref || n.spec?.annotations?.name === ref)?.id ?? networks.find((n) => n.id.startsWith(ref))?.id ?? ref;
    for (const ref of f['network-rm'] ?? []) {
      const id = idOf(ref);
      if (!spec.task.networks.some((n) => n.target === id || n.target === ref)) throw bad(`--network-rm ${ref}: the service is not attached to it`);
      spec.task.networks = spec.task.networks.filter((n) => n.target !== id && n.target !== ref);
    }
    for (const ref of f['network-add'] ?? []) {
      if (!ref) throw bad('--network-add: give a network name');
      const id = idOf(ref);
      if (spec.task.networks.some((n) => n.target === id || n.target === ref)) throw bad(`--network-add ${ref}: the service is already attached to it`);
      spec.task.networks.push({ target: ref, aliases: [] });
    }
  }
  // By source name or target, as Docker's --secret-rm / --config-rm.
  const rmRef = (ref: string, name: string, file: string | undefined) => ref === name || ref === file;
  c.secrets = c.secrets.filter((r) => !(f['secret-rm'] ?? []).some((x) => rmRef(x, r.secretName, r.file?.name)));
  for (const x of f['secret-add'] ?? []) {
    const r = parseDataRef('secret', x, bad, 'secret-add');
    c.secrets = [...c.secrets.filter((s) => s.file?.name !== r.file.name), SecretReference.fromPartial({ secretName: r.name, file: r.file })];
  }
  c.configs = c.configs.filter((r) => !(f['config-rm'] ?? []).some((x) => rmRef(x, r.configName, r.file?.name)));
  for (const x of f['config-add'] ?? []) {
    const r = parseDataRef('config', x, bad, 'config-add');
    c.configs = [...c.configs.filter((s) => s.file?.name !== r.file.name), ConfigReference.fromPartial({ configName: r.name, file: r.file })];
  }
  if (f.force) spec.task.forceUpdate = (spec.task.forceUpdate || 0) + 1;
  if (JSON.stringify(spec) === JSON.stringify(current)) {
    // A canary rollout moves traffic to new tasks of a changed spec: its flags alone change nothing.
    const canary = f['canary-weight'] !== undefined || f['canary-steps'] !== undefined;
    throw bad(canary ? 'service update: nothing to change: a canary rollout needs a change to the service to roll out (e.g. --image, --env-add), or --force' : 'service update: nothing to change (give at least one flag, or --force)');
  }
  return spec;
}

/**
 * A name for a service created without --name (Docker makes one up too): the image's last path
 * component and a random suffix, e.g. `nginx-k3x9q`. `rand` gives 5 base-36 characters.
 */
export function defaultServiceName(image: string, rand: () => string): string {
  const repo = image.split('@')[0].replace(/:[^/]*$/, '');
  const base = (repo.split('/').pop() ?? 'service').replace(/[^a-zA-Z0-9_.-]/g, '').replace(/^[^a-zA-Z0-9]+/, '').slice(0, 50) || 'service';
  return `${base}-${rand()}`;
}

/** The registry host of an image reference, as the keys of ~/.docker/config.json name it. */
export function registryOf(image: string): string {
  const slash = image.indexOf('/');
  if (slash < 0) return 'docker.io';
  const first = image.slice(0, slash);
  return /[.:]/.test(first) || first === 'localhost' ? first : 'docker.io';
}

/** Credentials for `image` from a docker config.json's `auths` (`auth` = base64 user:pass, or username/password, identitytoken). */
export function registryAuthOf(dockerConfig: unknown, image: string): RegistryAuth | undefined {
  const auths = (dockerConfig as { auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }> } | undefined)?.auths ?? {};
  const reg = registryOf(image);
  const keys = reg === 'docker.io' ? ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'] : [reg, `https://${reg}`, `http://${reg}`, `https://${reg}/v1/`];
  for (const k of keys) {
    const a = auths[k];
    if (!a) continue;
    let username = a.username ?? '';
    let password = a.password ?? '';
    if (a.auth) {
      const dec = Buffer.from(a.auth, 'base64').toString();
      const i = dec.indexOf(':');
      if (i > 0) {
        username = dec.slice(0, i);
        password = dec.slice(i + 1);
      }
    }
    if (username || password || a.identitytoken) return RegistryAuth.fromPartial({ username, password, identityToken: a.identitytoken });
  }
  return undefined;
}
