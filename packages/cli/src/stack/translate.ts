/**
 * A loaded Compose model → the objects of a stack (pure): service specs, networks, volumes,
 * secrets and configs, every name prefixed with the stack's (`NAME_web`), as `docker stack
 * deploy` does. Services get a `NAME_default` overlay network when they name none, and their
 * short compose name as a network alias on each of the stack's networks (so `web` resolves on
 * them). Keys this product does not act on come back as warnings; a value of the wrong type or
 * an unknown key is a ComposeError with the file, the line and the key, and nothing is made.
 *
 * File contents (env_file, secret/config files) are read through `readFile`, given by the caller.
 */
import { posix } from 'node:path';
import { ConfigReference, HealthConfig, Mount, Mount_Type, PortConfig, PortConfig_Protocol, PortConfig_PublishMode, RestartPolicy, RestartPolicy_Condition, SecretReference, UpdateConfig, UpdateConfig_FailureAction, UpdateConfig_Order, EndpointSpec_ResolutionMode } from '@swarmd/proto/gen/swarm/types';
import { ContainerSpec, NetworkSpec, ServiceSpec } from '@swarmd/proto/gen/swarm/specs';
import { parseDuration } from '../format.js';
import { parseCpus, parseMemory, splitWords } from '../service-spec.js';
import { parseEnvFile, type Env } from './interpolate.js';
import { ComposeError, isMap, loadCompose, pathText, type ComposeFile, type Path, type Yaml } from './load.js';

/** The label Docker puts on every object of a stack; `stack ls|ps|rm` find them by it. */
export const STACK_LABEL = 'com.docker.stack.namespace';

export interface StackNetwork {
  name: string;
  /** Declared `external: true`: must exist, is never created or removed. */
  external: boolean;
  spec: NetworkSpec;
}

export interface StackVolume {
  name: string;
  external: boolean;
}

export interface StackData {
  name: string;
  external: boolean;
  /** The data (file, content or environment variable); undefined when external. */
  data?: Buffer;
  labels: Record<string, string>;
}

export interface Stack {
  name: string;
  services: ServiceSpec[];
  networks: StackNetwork[];
  volumes: StackVolume[];
  secrets: StackData[];
  configs: StackData[];
  warnings: string[];
}

export interface TranslateOptions {
  /** Reads a file (env_file, secret and config files); paths are absolute. */
  readFile(path: string): Buffer;
  /** The variables for interpolation and for `environment` entries without a value. */
  env: Env;
}

/** Docker's defaults for what a compose file leaves out (the ones `docker service create` uses). */
const UPDATE_DEFAULTS = { parallelism: 1, delayMs: 0, failureAction: UpdateConfig_FailureAction.PAUSE, monitorMs: 5_000, maxFailureRatio: 0, order: UpdateConfig_Order.STOP_FIRST };
const RESTART_DEFAULTS = { condition: RestartPolicy_Condition.ANY, delayMs: 5_000, maxAttempts: 0, windowMs: 0 };
const STOP_GRACE_DEFAULT_MS = 10_000;

type Handling = 'ok' | 'warn';
const SERVICE_KEYS: Record<string, Handling> = {
  image: 'ok',
  command: 'ok',
  entrypoint: 'ok',
  environment: 'ok',
  env_file: 'ok',
  user: 'ok',
  working_dir: 'ok',
  hostname: 'ok',
  stop_grace_period: 'ok',
  stop_signal: 'ok',
  healthcheck: 'ok',
  ports: 'ok',
  networks: 'ok',
  volumes: 'ok',
  secrets: 'ok',
  configs: 'ok',
  deploy: 'ok',
  labels: 'ok',
  read_only: 'ok',
  tty: 'ok',
  tmpfs: 'ok',
  expose: 'ok',
  pids_limit: 'ok',
  // Valid Compose, not acted on by a stack (as `docker stack deploy` ignores them).
  build: 'warn',
  links: 'warn',
  depends_on: 'warn',
  container_name: 'warn',
  restart: 'warn',
  cap_add: 'warn',
  cap_drop: 'warn',
  cgroup_parent: 'warn',
  devices: 'warn',
  dns: 'warn',
  dns_search: 'warn',
  dns_opt: 'warn',
  domainname: 'warn',
  extra_hosts: 'warn',
  external_links: 'warn',
  init: 'warn',
  ipc: 'warn',
  isolation: 'warn',
  logging: 'warn',
  mac_address: 'warn',
  network_mode: 'warn',
  pid: 'warn',
  platform: 'warn',
  privileged: 'warn',
  profiles: 'warn',
  pull_policy: 'warn',
  security_opt: 'warn',
  shm_size: 'warn',
  stdin_open: 'warn',
  sysctls: 'warn',
  ulimits: 'warn',
  userns_mode: 'warn',
  volumes_from: 'warn',
  mem_limit: 'warn',
  mem_reservation: 'warn',
  memswap_limit: 'warn',
  mem_swappiness: 'warn',
  cpus: 'warn',
  cpu_shares: 'warn',
  cpu_quota: 'warn',
  cpu_period: 'warn',
  cpuset: 'warn',
  oom_score_adj: 'warn',
  oom_kill_disable: 'warn',
  group_add: 'warn',
  scale: 'warn',
  runtime: 'warn',
  storage_opt: 'warn',
  credential_spec: 'warn',
  blkio_config: 'warn',
  device_cgroup_rules: 'warn',
  annotations: 'warn',
  attach: 'warn',
  develop: 'warn',
  gpus: 'warn',
  label_file: 'warn',
  post_start: 'warn',
  pre_stop: 'warn',
  use_api_socket: 'warn',
  provider: 'warn',
  models: 'warn',
};
const DEPLOY_KEYS = ['mode', 'replicas', 'labels', 'placement', 'resources', 'restart_policy', 'update_config', 'rollback_config', 'endpoint_mode'];
const TOP_KEYS: Record<string, Handling> = { version: 'ok', services: 'ok', networks: 'ok', volumes: 'ok', secrets: 'ok', configs: 'ok', name: 'warn', include: 'warn', models: 'warn' };

/** What translating needs at hand: where the file is, how to fail at a key, warnings. */
class Ctx {
  readonly warnings: string[] = [];
  constructor(
    readonly locate: (p: Path) => { file?: string; line?: number },
    readonly dir: string,
  ) {}

  fail(path: Path, detail: string): never {
    const at = this.locate(path);
    throw new ComposeError(detail, at.file, at.line, pathText(path));
  }

  warn(path: Path, detail: string): void {
    this.warnings.push(`${pathText(path)}: ${detail}`);
  }

  map(v: Yaml | undefined, path: Path): Record<string, Yaml> {
    if (v === undefined || v === null) return {};
    if (!isMap(v)) this.fail(path, `expected a mapping, got ${kindOf(v)}`);
    return v;
  }

  str(v: Yaml | undefined, path: Path): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    this.fail(path, `expected a string, got ${kindOf(v)}`);
  }

  bool(v: Yaml | undefined, path: Path): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    this.fail(path, `expected true or false, got ${JSON.stringify(v)}`);
  }

  uint(v: Yaml | undefined, path: Path): number | undefined {
    if (v === undefined || v === null) return undefined;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) this.fail(path, `expected a whole number ≥ 0, got ${JSON.stringify(v)}`);
    return n;
  }

  duration(v: Yaml | undefined, path: Path): number | undefined {
    const s = this.str(v, path);
    if (s === undefined) return undefined;
    const ms = s === '0' ? 0 : parseDuration(s.replace(/us$|ns$/, ''));
    if (ms === undefined) this.fail(path, `expected a duration like 10s or 1m30s, got "${s}"`);
    return ms;
  }

  /** A string or a list of strings (command, entrypoint): a string is split into words. */
  words(v: Yaml | undefined, path: Path): string[] | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string') return splitWords(v);
    if (Array.isArray(v)) return v.map((x, i) => this.str(x, [...path, i]) ?? '');
    this.fail(path, `expected a string or a list of strings, got ${kindOf(v)}`);
  }

  /** `KEY: VALUE` mapping or `- KEY=VALUE` list; a key without a value is null. */
  keyValues(v: Yaml | undefined, path: Path): Map<string, string | null> {
    const out = new Map<string, string | null>();
    if (v === undefined || v === null) return out;
    if (Array.isArray(v)) {
      v.forEach((x, i) => {
        const s = this.str(x, [...path, i]) ?? '';
        const eq = s.indexOf('=');
        if (eq === 0 || !s) this.fail([...path, i], `expected KEY=VALUE, got "${s}"`);
        out.set(eq < 0 ? s : s.slice(0, eq), eq < 0 ? null : s.slice(eq + 1));
      });
      return out;
    }
    for (const [k, x] of Object.entries(this.map(v, path))) out.set(k, x === null ? null : (this.str(x, [...path, k]) ?? null));
    return out;
  }

  labels(v: Yaml | undefined, path: Path): Record<string, string> {
    return Object.fromEntries([...this.keyValues(v, path)].map(([k, x]) => [k, x ?? '']));
  }

  keys(o: Record<string, Yaml>, path: Path, allowed: Record<string, Handling> | readonly string[], why = 'is not supported by swarmd stacks; ignored'): void {
    const table: Record<string, Handling> = Array.isArray(allowed) ? Object.fromEntries((allowed as readonly string[]).map((k) => [k, 'ok' as const])) : (allowed as Record<string, Handling>);
    for (const k of Object.keys(o)) {
      if (k.startsWith('x-')) continue;
      const h = table[k];
      if (h === undefined) this.fail([...path, k], `unknown key "${k}" (allowed: ${Object.keys(table).filter((x) => table[x] === 'ok').join(', ')})`);
      if (h === 'warn') this.warn([...path, k], why);
    }
  }
}

function kindOf(v: Yaml): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

const STACK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Checks a stack name as Docker does (it prefixes every object's name). */
export function checkStackName(name: string): void {
  if (!STACK_NAME.test(name)) throw new Error(`stack name "${name}": use letters, digits, "_", "." and "-", starting with a letter or digit`);
}

/** Compose files → the stack's objects; ComposeError for a file that cannot be deployed. */
export function translateCompose(stackName: string, files: readonly ComposeFile[], o: TranslateOptions): Stack {
  checkStackName(stackName);
  const { model, locate } = loadCompose(files, o.env);
  const ctx = new Ctx(locate, files.length ? posix.dirname(files[0].path) : '.');
  ctx.keys(model, [], TOP_KEYS, 'is not used by swarmd stacks; ignored');
  const prefixed = (n: string) => `${stackName}_${n}`;
  const nsLabel = { [STACK_LABEL]: stackName };

  // Top-level networks (default: NAME_default, an overlay network).
  const netDecls = ctx.map(model.networks, ['networks']);
  const networks = new Map<string, StackNetwork>();
  for (const [key, raw] of Object.entries(netDecls)) networks.set(key, network(ctx, stackName, key, raw, nsLabel));

  const volDecls = ctx.map(model.volumes, ['volumes']);
  const volumes = new Map<string, StackVolume>();
  for (const [key, raw] of Object.entries(volDecls)) {
    const p = ['volumes', key];
    const v = ctx.map(raw, p);
    ctx.keys(v, p, { driver: 'ok', driver_opts: 'warn', external: 'ok', name: 'ok', labels: 'ok' });
    const driver = ctx.str(v.driver, [...p, 'driver']);
    if (driver && driver !== 'local') ctx.fail([...p, 'driver'], `only the "local" volume driver is supported, got "${driver}"`);
    const external = externalOf(ctx, v.external, [...p, 'external']);
    volumes.set(key, { name: ctx.str(v.name, [...p, 'name']) ?? (external ? key : prefixed(key)), external });
  }

  const secrets = dataDecls(ctx, 'secrets', model.secrets, prefixed, nsLabel, o);
  const configs = dataDecls(ctx, 'configs', model.configs, prefixed, nsLabel, o);

  const svcDecls = ctx.map(model.services, ['services']);
  if (Object.keys(svcDecls).length === 0) ctx.fail(['services'], 'the stack has no services');
  const usedNetworks = new Set<string>();
  const usedVolumes = new Set<string>();
  const services: ServiceSpec[] = [];
  for (const [key, raw] of Object.entries(svcDecls)) {
    services.push(service(ctx, { stackName, key, raw, networks, volumes, secrets, configs, usedNetworks, usedVolumes, nsLabel, o }));
  }
  if (usedNetworks.has('default') && !networks.has('default')) {
    networks.set('default', { name: prefixed('default'), external: false, spec: NetworkSpec.fromPartial({ annotations: { name: prefixed('default'), labels: { ...nsLabel } }, driver: 'overlay' }) });
  }
  return {
    name: stackName,
    services,
    networks: [...networks.entries()].filter(([k]) => usedNetworks.has(k)).map(([, n]) => n),
    volumes: [...volumes.entries()].filter(([k]) => usedVolumes.has(k)).map(([, v]) => v),
    secrets: [...secrets.values()],
    configs: [...configs.values()],
    warnings: ctx.warnings,
  };
}

function externalOf(ctx: Ctx, v: Yaml | undefined, path: Path): boolean {
  if (isMap(v)) {
    ctx.warn(path, 'external: {name: ...} is deprecated; use name: and external: true');
    return true;
  }
  return ctx.bool(v, path) ?? false;
}

function network(ctx: Ctx, stackName: string, key: string, raw: Yaml, nsLabel: Record<string, string>): StackNetwork {
  const p = ['networks', key];
  const n = ctx.map(raw, p);
  ctx.keys(n, p, { driver: 'ok', driver_opts: 'warn', ipam: 'ok', internal: 'ok', attachable: 'ok', labels: 'ok', external: 'ok', name: 'ok', enable_ipv6: 'warn' });
  const external = externalOf(ctx, n.external, [...p, 'external']);
  const name = ctx.str(n.name, [...p, 'name']) ?? (external ? key : `${stackName}_${key}`);
  const driver = ctx.str(n.driver, [...p, 'driver']) ?? 'overlay';
  if (driver !== 'overlay' && !external) ctx.fail([...p, 'driver'], `a stack's networks are overlay networks; driver "${driver}" is not supported`);
  const ipam = ctx.map(n.ipam, [...p, 'ipam']);
  ctx.keys(ipam, [...p, 'ipam'], { driver: 'warn', config: 'ok', options: 'warn' });
  const configs = ipam.config ?? [];
  if (!Array.isArray(configs)) ctx.fail([...p, 'ipam', 'config'], `expected a list, got ${kindOf(configs)}`);
  const ipamConfigs = configs.map((c, i) => {
    const cp = [...p, 'ipam', 'config', i];
    const m = ctx.map(c, cp);
    ctx.keys(m, cp, { subnet: 'ok', gateway: 'ok', ip_range: 'ok', aux_addresses: 'warn' });
    return { subnet: ctx.str(m.subnet, [...cp, 'subnet']) ?? '', gateway: ctx.str(m.gateway, [...cp, 'gateway']) ?? '', range: ctx.str(m.ip_range, [...cp, 'ip_range']) ?? '' };
  });
  return {
    name,
    external,
    spec: NetworkSpec.fromPartial({
      annotations: { name, labels: { ...ctx.labels(n.labels, [...p, 'labels']), ...nsLabel } },
      driver: 'overlay',
      ipam: ipamConfigs,
      internal: ctx.bool(n.internal, [...p, 'internal']) ?? false,
      attachable: ctx.bool(n.attachable, [...p, 'attachable']) ?? false,
    }),
  };
}

function dataDecls(
  ctx: Ctx,
  section: 'secrets' | 'configs',
  raw: Yaml | undefined,
  prefixed: (n: string) => string,
  nsLabel: Record<string, string>,
  o: TranslateOptions,
): Map<string, StackData> {
  const out = new Map<string, StackData>();
  for (const [key, r] of Object.entries(ctx.map(raw, [section]))) {
    const p = [section, key];
    const d = ctx.map(r, p);
    const allowed: Record<string, Handling> = { file: 'ok', external: 'ok', name: 'ok', labels: 'ok', environment: 'ok', driver: 'warn', driver_opts: 'warn', template_driver: 'warn' };
    if (section === 'configs') allowed.content = 'ok';
    ctx.keys(d, p, allowed);
    const external = externalOf(ctx, d.external, [...p, 'external']);
    const name = ctx.str(d.name, [...p, 'name']) ?? (external ? key : prefixed(key));
    let data: Buffer | undefined;
    if (!external) {
      const file = ctx.str(d.file, [...p, 'file']);
      const content = ctx.str(d.content, [...p, 'content']);
      const envName = ctx.str(d.environment, [...p, 'environment']);
      if ([file, content, envName].filter((x) => x !== undefined).length !== 1) ctx.fail(p, `give exactly one of file:${section === 'configs' ? ', content:' : ''} or environment: (or external: true)`);
      if (file !== undefined) {
        const abs = posix.resolve(ctx.dir, file);
        try {
          data = o.readFile(abs);
        } catch (e) {
          ctx.fail([...p, 'file'], `cannot read ${abs}: ${(e as Error).message}`);
        }
      } else if (content !== undefined) data = Buffer.from(content);
      else {
        const v = o.env[envName!];
        if (v === undefined) ctx.fail([...p, 'environment'], `environment variable ${envName} is not set`);
        data = Buffer.from(v);
      }
    }
    out.set(key, { name, external, data, labels: { ...ctx.labels(d.labels, [...p, 'labels']), ...(external ? {} : nsLabel) } });
  }
  return out;
}

interface ServiceArgs {
  stackName: string;
  key: string;
  raw: Yaml;
  networks: Map<string, StackNetwork>;
  volumes: Map<string, StackVolume>;
  secrets: Map<string, StackData>;
  configs: Map<string, StackData>;
  usedNetworks: Set<string>;
  usedVolumes: Set<string>;
  nsLabel: Record<string, string>;
  o: TranslateOptions;
}

function service(ctx: Ctx, a: ServiceArgs): ServiceSpec {
  const p = ['services', a.key];
  const s = ctx.map(a.raw, p);
  ctx.keys(s, p, SERVICE_KEYS);
  if (isMap(s.depends_on) && Object.values(s.depends_on).some((d) => isMap(d) && d.condition !== undefined)) {
    ctx.warn([...p, 'depends_on'], 'conditions are not supported: services start in any order');
  }
  const image = ctx.str(s.image, [...p, 'image']);
  if (!image) ctx.fail(p, s.build !== undefined ? 'image: is required (build: is not supported by stacks; build and push the image first)' : 'image: is required');
  const name = `${a.stackName}_${a.key}`;

  const c = ContainerSpec.fromPartial({ image, labels: { ...ctx.labels(s.labels, [...p, 'labels']), ...a.nsLabel } });
  c.command = ctx.words(s.entrypoint, [...p, 'entrypoint']) ?? [];
  c.args = ctx.words(s.command, [...p, 'command']) ?? [];
  c.env = environment(ctx, s, p, a.o);
  c.user = ctx.str(s.user, [...p, 'user']) ?? '';
  c.dir = ctx.str(s.working_dir, [...p, 'working_dir']) ?? '';
  if (c.dir && !c.dir.startsWith('/')) ctx.fail([...p, 'working_dir'], `must be an absolute path, got "${c.dir}"`);
  c.hostname = ctx.str(s.hostname, [...p, 'hostname']) ?? '';
  c.stopSignal = ctx.str(s.stop_signal, [...p, 'stop_signal'])?.toUpperCase() ?? '';
  c.stopGracePeriodMs = ctx.duration(s.stop_grace_period, [...p, 'stop_grace_period']) ?? STOP_GRACE_DEFAULT_MS;
  c.readOnly = ctx.bool(s.read_only, [...p, 'read_only']) ?? false;
  c.tty = ctx.bool(s.tty, [...p, 'tty']) ?? false;
  c.healthcheck = healthcheck(ctx, s.healthcheck, [...p, 'healthcheck']);
  c.mounts = mounts(ctx, s, p, a);
  c.secrets = refs(ctx, s.secrets, [...p, 'secrets'], a.secrets, 'secrets').map((r) => SecretReference.fromPartial({ secretName: r.name, file: r.file }));
  c.configs = refs(ctx, s.configs, [...p, 'configs'], a.configs, 'configs').map((r) => ConfigReference.fromPartial({ configName: r.name, file: r.file }));

  const spec = ServiceSpec.fromPartial({
    annotations: { name, labels: { ...a.nsLabel } },
    task: { container: c, restart: { ...RESTART_DEFAULTS } },
    mode: { $case: 'replicated', replicated: { replicas: 1 } },
    update: { ...UPDATE_DEFAULTS },
    rollback: { ...UPDATE_DEFAULTS },
  });
  const task = spec.task!;
  task.networks = serviceNetworks(ctx, s, p, a);
  const ports = servicePorts(ctx, s.ports, [...p, 'ports']);
  const pids = ctx.uint(s.pids_limit, [...p, 'pids_limit']);
  if (pids) task.resources = { limits: undefined, reservations: undefined, pidsLimit: pids };
  deploy(ctx, spec, s.deploy, [...p, 'deploy'], a.nsLabel);
  if (ports.length || spec.endpoint) spec.endpoint = { mode: spec.endpoint?.mode ?? EndpointSpec_ResolutionMode.VIP, ports };
  if (spec.endpoint?.mode === EndpointSpec_ResolutionMode.DNSRR && ports.some((x) => x.publishMode === PortConfig_PublishMode.INGRESS)) {
    ctx.fail([...p, 'ports'], 'endpoint_mode dnsrr cannot publish ports in ingress mode (use mode: host)');
  }
  return spec;
}

function environment(ctx: Ctx, s: Record<string, Yaml>, p: Path, o: TranslateOptions): string[] {
  const env = new Map<string, string>();
  const files = s.env_file === undefined || s.env_file === null ? [] : Array.isArray(s.env_file) ? s.env_file : [s.env_file];
  files.forEach((f, i) => {
    const fp = Array.isArray(s.env_file) ? [...p, 'env_file', i] : [...p, 'env_file'];
    let path: string | undefined;
    let required = true;
    if (isMap(f)) {
      path = ctx.str(f.path, [...fp, 'path']);
      required = ctx.bool(f.required, [...fp, 'required']) ?? true;
    } else path = ctx.str(f, fp);
    if (!path) ctx.fail(fp, 'expected a file path');
    const abs = posix.resolve(ctx.dir, path);
    let text: string;
    try {
      text = o.readFile(abs).toString('utf8');
    } catch (e) {
      if (!required) return;
      ctx.fail(fp, `cannot read ${abs}: ${(e as Error).message}`);
    }
    try {
      for (const { key, value } of parseEnvFile(text)) {
        const v = value ?? o.env[key];
        if (v !== undefined) env.set(key, v);
      }
    } catch (e) {
      ctx.fail(fp, `${abs}: ${(e as Error).message}`);
    }
  });
  for (const [k, v] of ctx.keyValues(s.environment, [...p, 'environment'])) {
    const value = v ?? o.env[k];
    if (value !== undefined) env.set(k, value);
  }
  return [...env].map(([k, v]) => `${k}=${v}`).sort();
}

function healthcheck(ctx: Ctx, raw: Yaml | undefined, p: Path): HealthConfig | undefined {
  if (raw === undefined || raw === null) return undefined;
  const h = ctx.map(raw, p);
  ctx.keys(h, p, ['test', 'interval', 'timeout', 'retries', 'start_period', 'start_interval', 'disable']);
  if (ctx.bool(h.disable, [...p, 'disable'])) return HealthConfig.fromPartial({ test: ['NONE'] });
  let test: string[] = [];
  if (typeof h.test === 'string') test = ['CMD-SHELL', h.test];
  else if (h.test !== undefined && h.test !== null) {
    test = ctx.words(h.test, [...p, 'test']) ?? [];
    if (!['CMD', 'CMD-SHELL', 'NONE'].includes(test[0] ?? '')) ctx.fail([...p, 'test'], `a list must start with CMD, CMD-SHELL or NONE, got "${test[0] ?? ''}"`);
  }
  if (h.start_interval !== undefined) ctx.warn([...p, 'start_interval'], 'is not supported; ignored');
  return HealthConfig.fromPartial({
    test,
    intervalMs: ctx.duration(h.interval, [...p, 'interval']) ?? 0,
    timeoutMs: ctx.duration(h.timeout, [...p, 'timeout']) ?? 0,
    retries: ctx.uint(h.retries, [...p, 'retries']) ?? 0,
    startPeriodMs: ctx.duration(h.start_period, [...p, 'start_period']) ?? 0,
  });
}

function portNumber(ctx: Ctx, v: string, p: Path, what: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) ctx.fail(p, `${what} "${v}" is not a port (1-65535)`);
  return n;
}

function portRange(ctx: Ctx, v: string, p: Path, what: string): number[] {
  const [a, b] = v.split('-', 2);
  const lo = portNumber(ctx, a, p, what);
  if (b === undefined) return [lo];
  const hi = portNumber(ctx, b, p, what);
  if (hi < lo) ctx.fail(p, `${what} range "${v}" ends before it starts`);
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

const PROTOCOLS: Record<string, PortConfig_Protocol> = { tcp: PortConfig_Protocol.TCP, udp: PortConfig_Protocol.UDP, sctp: PortConfig_Protocol.SCTP };

function servicePorts(ctx: Ctx, raw: Yaml | undefined, p: Path): PortConfig[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) ctx.fail(p, `expected a list, got ${kindOf(raw)}`);
  const out: PortConfig[] = [];
  raw.forEach((x, i) => {
    const ip = [...p, i];
    if (isMap(x)) {
      ctx.keys(x, ip, { target: 'ok', published: 'ok', protocol: 'ok', mode: 'ok', host_ip: 'warn', name: 'ok', app_protocol: 'warn' });
      const target = ctx.str(x.target, [...ip, 'target']);
      if (!target) ctx.fail(ip, 'target: is required');
      const published = ctx.str(x.published, [...ip, 'published']);
      const proto = (ctx.str(x.protocol, [...ip, 'protocol']) ?? 'tcp').toLowerCase();
      if (PROTOCOLS[proto] === undefined) ctx.fail([...ip, 'protocol'], `expected tcp, udp or sctp, got "${proto}"`);
      const mode = ctx.str(x.mode, [...ip, 'mode']) ?? 'ingress';
      if (mode !== 'ingress' && mode !== 'host') ctx.fail([...ip, 'mode'], `expected ingress or host, got "${mode}"`);
      out.push(
        PortConfig.fromPartial({
          name: ctx.str(x.name, [...ip, 'name']) ?? '',
          targetPort: portNumber(ctx, target, [...ip, 'target'], 'target'),
          publishedPort: published ? portNumber(ctx, published, [...ip, 'published'], 'published') : 0,
          protocol: PROTOCOLS[proto],
          publishMode: mode === 'host' ? PortConfig_PublishMode.HOST : PortConfig_PublishMode.INGRESS,
        }),
      );
      return;
    }
    const s = ctx.str(x, ip) ?? '';
    const [ports, proto = 'tcp'] = s.split('/', 2);
    if (PROTOCOLS[proto.toLowerCase()] === undefined) ctx.fail(ip, `protocol "${proto}" is tcp, udp or sctp`);
    let parts = ports.split(':');
    if (parts.length === 3 || (parts.length > 3 && ports.startsWith('['))) {
      ctx.warn(ip, `the host address "${parts.slice(0, -2).join(':')}" is not supported (ports are published on every address); ignored`);
      parts = parts.slice(-2);
    }
    if (parts.length > 2) ctx.fail(ip, `expected [[HOST:]PUBLISHED:]TARGET[/PROTOCOL], got "${s}"`);
    const targets = portRange(ctx, parts[parts.length - 1], ip, 'target');
    const published = parts.length === 2 ? portRange(ctx, parts[0], ip, 'published') : [];
    if (published.length && published.length !== targets.length) ctx.fail(ip, `the published and target ranges of "${s}" differ in length`);
    targets.forEach((t, k) =>
      out.push(PortConfig.fromPartial({ targetPort: t, publishedPort: published[k] ?? 0, protocol: PROTOCOLS[proto.toLowerCase()], publishMode: PortConfig_PublishMode.INGRESS })),
    );
  });
  return out;
}

function serviceNetworks(ctx: Ctx, s: Record<string, Yaml>, p: Path, a: ServiceArgs) {
  const np = [...p, 'networks'];
  const entries: [string, string[]][] = [];
  if (s.networks === undefined || s.networks === null) entries.push(['default', []]);
  else if (Array.isArray(s.networks)) s.networks.forEach((n, i) => entries.push([ctx.str(n, [...np, i]) ?? '', []]));
  else
    for (const [k, v] of Object.entries(ctx.map(s.networks, np))) {
      const m = ctx.map(v, [...np, k]);
      ctx.keys(m, [...np, k], { aliases: 'ok', ipv4_address: 'warn', ipv6_address: 'warn', priority: 'warn', link_local_ips: 'warn', mac_address: 'warn', driver_opts: 'warn', gw_priority: 'warn' });
      const aliases = m.aliases === undefined || m.aliases === null ? [] : Array.isArray(m.aliases) ? m.aliases.map((x, i) => ctx.str(x, [...np, k, 'aliases', i]) ?? '') : ctx.fail([...np, k, 'aliases'], 'expected a list');
      entries.push([k, aliases]);
    }
  return entries.map(([key, aliases]) => {
    if (key !== 'default' && !a.networks.has(key)) ctx.fail(np, `network "${key}" is not declared in the top-level networks section`);
    a.usedNetworks.add(key);
    const target = a.networks.get(key)?.name ?? `${a.stackName}_default`;
    // Docker adds the service's short name as an alias on the stack's networks: `web` resolves there.
    return { target, aliases: [...new Set([a.key, ...aliases])] };
  });
}

function mounts(ctx: Ctx, s: Record<string, Yaml>, p: Path, a: ServiceArgs): Mount[] {
  const out: Mount[] = [];
  const vp = [...p, 'volumes'];
  const raw = s.volumes ?? [];
  if (!Array.isArray(raw)) ctx.fail(vp, `expected a list, got ${kindOf(raw)}`);
  const named = (source: string, ip: Path): Mount => {
    const v = a.volumes.get(source);
    if (!v) ctx.fail(ip, `named volume "${source}" is not declared in the top-level volumes section`);
    a.usedVolumes.add(source);
    return Mount.fromPartial({ type: Mount_Type.VOLUME, source: v.name, volumeLabels: v.external ? {} : { ...a.nsLabel } });
  };
  const isPath = (x: string) => x.startsWith('/') || x.startsWith('.') || x.startsWith('~');
  const bind = (source: string) => Mount.fromPartial({ type: Mount_Type.BIND, source: posix.resolve(ctx.dir, source) });
  raw.forEach((x, i) => {
    const ip = [...vp, i];
    let m: Mount;
    if (isMap(x)) {
      ctx.keys(x, ip, { type: 'ok', source: 'ok', target: 'ok', read_only: 'ok', volume: 'ok', tmpfs: 'ok', bind: 'warn', consistency: 'warn', image: 'warn' });
      const type = ctx.str(x.type, [...ip, 'type']) ?? 'volume';
      const source = ctx.str(x.source, [...ip, 'source']) ?? '';
      if (type === 'volume') m = source ? named(source, [...ip, 'source']) : Mount.fromPartial({ type: Mount_Type.VOLUME });
      else if (type === 'bind') {
        if (!source) ctx.fail(ip, 'a bind mount needs source:');
        m = bind(source);
      } else if (type === 'tmpfs') {
        m = Mount.fromPartial({ type: Mount_Type.TMPFS });
        const t = ctx.map(x.tmpfs, [...ip, 'tmpfs']);
        const size = ctx.str(t.size, [...ip, 'tmpfs', 'size']);
        if (size !== undefined) {
          const n = parseMemory(size);
          if (n === undefined) ctx.fail([...ip, 'tmpfs', 'size'], `expected a size like 64m, got "${size}"`);
          m.tmpfsSizeBytes = n;
        }
        const mode = octalMode(ctx, t.mode, [...ip, 'tmpfs', 'mode']);
        if (mode !== undefined) m.tmpfsMode = mode;
      } else return ctx.fail([...ip, 'type'], `expected volume, bind or tmpfs, got "${type}"`);
      m.target = ctx.str(x.target, [...ip, 'target']) ?? '';
      m.readOnly = ctx.bool(x.read_only, [...ip, 'read_only']) ?? false;
    } else {
      const str = ctx.str(x, ip) ?? '';
      const parts = str.split(':');
      if (parts.length === 1) m = Mount.fromPartial({ type: Mount_Type.VOLUME, target: parts[0] });
      else {
        m = isPath(parts[0]) ? bind(parts[0]) : named(parts[0], ip);
        m.target = parts[1];
        const opts = (parts[2] ?? '').split(',').filter(Boolean);
        for (const opt of opts) {
          if (opt === 'ro') m.readOnly = true;
          else if (opt !== 'rw') ctx.warn(ip, `mount option "${opt}" is not supported; ignored`);
        }
      }
    }
    if (!m.target.startsWith('/')) ctx.fail(ip, `the target "${m.target}" must be an absolute path`);
    out.push(m);
  });
  const tmpfs = s.tmpfs === undefined || s.tmpfs === null ? [] : Array.isArray(s.tmpfs) ? s.tmpfs : [s.tmpfs];
  tmpfs.forEach((t, i) => {
    const tp = Array.isArray(s.tmpfs) ? [...p, 'tmpfs', i] : [...p, 'tmpfs'];
    const [target, opts = ''] = (ctx.str(t, tp) ?? '').split(':', 2);
    if (!target.startsWith('/')) ctx.fail(tp, `the target "${target}" must be an absolute path`);
    const m = Mount.fromPartial({ type: Mount_Type.TMPFS, target });
    for (const opt of opts.split(',').filter(Boolean)) {
      const [k, v = ''] = opt.split('=', 2);
      if (k === 'size' && parseMemory(v) !== undefined) m.tmpfsSizeBytes = parseMemory(v)!;
      else if (k === 'mode' && /^[0-7]{3,4}$/.test(v)) m.tmpfsMode = parseInt(v, 8);
      else ctx.warn(tp, `tmpfs option "${opt}" is not supported; ignored`);
    }
    out.push(m);
  });
  return out;
}

function refs(ctx: Ctx, raw: Yaml | undefined, p: Path, decls: Map<string, StackData>, section: 'secrets' | 'configs') {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) ctx.fail(p, `expected a list, got ${kindOf(raw)}`);
  return raw.map((x, i) => {
    const ip = [...p, i];
    let source: string;
    let target: string | undefined;
    let uid: string | undefined;
    let gid: string | undefined;
    let mode: number | undefined;
    if (isMap(x)) {
      ctx.keys(x, ip, ['source', 'target', 'uid', 'gid', 'mode']);
      source = ctx.str(x.source, [...ip, 'source']) ?? ctx.fail(ip, 'source: is required');
      target = ctx.str(x.target, [...ip, 'target']);
      uid = ctx.str(x.uid, [...ip, 'uid']);
      gid = ctx.str(x.gid, [...ip, 'gid']);
      mode = octalMode(ctx, x.mode, [...ip, 'mode']);
    } else source = ctx.str(x, ip) ?? '';
    const d = decls.get(source);
    if (!d) ctx.fail(ip, `${section === 'secrets' ? 'secret' : 'config'} "${source}" is not declared in the top-level ${section} section`);
    const base = section === 'secrets' ? '/run/secrets' : '/';
    const file = { name: posix.resolve(base, target ?? source), uid: uid ?? '0', gid: gid ?? '0', mode: mode ?? 0o444 };
    return { name: d.name, file };
  });
}

/**
 * File modes are written in octal in Compose files (`mode: 0440`); the YAML 1.2 loader reads that
 * as the decimal 440, so the digits are read again as octal (as Docker's loader does).
 */
function octalMode(ctx: Ctx, v: Yaml | undefined, p: Path): number | undefined {
  if (v === undefined || v === null) return undefined;
  const digits = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.replace(/^0o/, '') : '';
  if (!/^[0-7]{1,4}$/.test(digits)) ctx.fail(p, `expected an octal file mode like 0440, got ${JSON.stringify(v)}`);
  return parseInt(digits, 8);
}

const RESTART_CONDITIONS: Record<string, RestartPolicy_Condition> = { none: RestartPolicy_Condition.NONE, 'on-failure': RestartPolicy_Condition.ON_FAILURE, any: RestartPolicy_Condition.ANY };
const ORDERS: Record<string, UpdateConfig_Order> = { 'stop-first': UpdateConfig_Order.STOP_FIRST, 'start-first': UpdateConfig_Order.START_FIRST };
const ACTIONS: Record<string, UpdateConfig_FailureAction> = { pause: UpdateConfig_FailureAction.PAUSE, continue: UpdateConfig_FailureAction.CONTINUE, rollback: UpdateConfig_FailureAction.ROLLBACK };

function choice<T>(ctx: Ctx, table: Record<string, T>, v: Yaml | undefined, p: Path): T | undefined {
  const s = ctx.str(v, p);
  if (s === undefined) return undefined;
  if (!(s in table)) ctx.fail(p, `expected ${Object.keys(table).join(', ')}, got "${s}"`);
  return table[s];
}

function updateConfig(ctx: Ctx, raw: Yaml | undefined, p: Path, rollback: boolean): UpdateConfig {
  const u = ctx.map(raw, p);
  ctx.keys(u, p, ['parallelism', 'delay', 'failure_action', 'monitor', 'max_failure_ratio', 'order']);
  const action = choice(ctx, ACTIONS, u.failure_action, [...p, 'failure_action']);
  if (rollback && action === UpdateConfig_FailureAction.ROLLBACK) ctx.fail([...p, 'failure_action'], 'a rollback cannot fail into a rollback: expected pause or continue');
  const ratio = u.max_failure_ratio;
  if (ratio !== undefined && ratio !== null && (typeof ratio !== 'number' || ratio < 0 || ratio > 1)) ctx.fail([...p, 'max_failure_ratio'], `expected a number from 0 to 1, got ${JSON.stringify(ratio)}`);
  return UpdateConfig.fromPartial({
    parallelism: ctx.uint(u.parallelism, [...p, 'parallelism']) ?? UPDATE_DEFAULTS.parallelism,
    delayMs: ctx.duration(u.delay, [...p, 'delay']) ?? UPDATE_DEFAULTS.delayMs,
    failureAction: action ?? UPDATE_DEFAULTS.failureAction,
    monitorMs: ctx.duration(u.monitor, [...p, 'monitor']) ?? UPDATE_DEFAULTS.monitorMs,
    maxFailureRatio: typeof ratio === 'number' ? ratio : 0,
    order: choice(ctx, ORDERS, u.order, [...p, 'order']) ?? UPDATE_DEFAULTS.order,
  });
}

function deploy(ctx: Ctx, spec: ServiceSpec, raw: Yaml | undefined, p: Path, nsLabel: Record<string, string>): void {
  if (raw === undefined || raw === null) return;
  const d = ctx.map(raw, p);
  ctx.keys(d, p, DEPLOY_KEYS);
  const task = spec.task!;
  const mode = ctx.str(d.mode, [...p, 'mode']) ?? 'replicated';
  const replicas = ctx.uint(d.replicas, [...p, 'replicas']);
  if (mode === 'global') {
    if (replicas !== undefined) ctx.fail([...p, 'replicas'], 'replicas cannot be set with mode: global');
    spec.mode = { $case: 'global', global: {} };
  } else if (mode === 'replicated') spec.mode = { $case: 'replicated', replicated: { replicas: replicas ?? 1 } };
  else ctx.fail([...p, 'mode'], `expected replicated or global, got "${mode}"`);
  spec.annotations!.labels = { ...ctx.labels(d.labels, [...p, 'labels']), ...nsLabel };

  const em = ctx.str(d.endpoint_mode, [...p, 'endpoint_mode']);
  if (em !== undefined) {
    if (em !== 'vip' && em !== 'dnsrr') ctx.fail([...p, 'endpoint_mode'], `expected vip or dnsrr, got "${em}"`);
    spec.endpoint = { mode: em === 'dnsrr' ? EndpointSpec_ResolutionMode.DNSRR : EndpointSpec_ResolutionMode.VIP, ports: [] };
  }

  if (d.placement !== undefined && d.placement !== null) {
    const pp = [...p, 'placement'];
    const pl = ctx.map(d.placement, pp);
    ctx.keys(pl, pp, { constraints: 'ok', preferences: 'ok', max_replicas_per_node: 'ok', platforms: 'warn' });
    const constraints = pl.constraints === undefined || pl.constraints === null ? [] : Array.isArray(pl.constraints) ? pl.constraints : ctx.fail([...pp, 'constraints'], 'expected a list');
    const prefs = pl.preferences === undefined || pl.preferences === null ? [] : Array.isArray(pl.preferences) ? pl.preferences : ctx.fail([...pp, 'preferences'], 'expected a list');
    task.placement = {
      constraints: constraints.map((c, i) => {
        const s = ctx.str(c, [...pp, 'constraints', i]) ?? '';
        if (!/^[^=!]+(==|!=)[^=!]+$/.test(s)) ctx.fail([...pp, 'constraints', i], `expected KEY==VALUE or KEY!=VALUE (e.g. node.role==manager), got "${s}"`);
        return s.replace(/\s+/g, '');
      }),
      preferences: prefs.map((x, i) => {
        const m = ctx.map(x, [...pp, 'preferences', i]);
        ctx.keys(m, [...pp, 'preferences', i], ['spread']);
        return { spreadDescriptor: ctx.str(m.spread, [...pp, 'preferences', i, 'spread']) ?? ctx.fail([...pp, 'preferences', i], 'spread: is required') };
      }),
      platforms: [],
      maxReplicas: ctx.uint(pl.max_replicas_per_node, [...pp, 'max_replicas_per_node']) ?? 0,
    };
  }

  if (d.resources !== undefined && d.resources !== null) {
    const rp = [...p, 'resources'];
    const r = ctx.map(d.resources, rp);
    ctx.keys(r, rp, ['limits', 'reservations']);
    const res = (task.resources ??= { limits: undefined, reservations: undefined, pidsLimit: 0 });
    const one = (k: 'limits' | 'reservations') => {
      if (r[k] === undefined || r[k] === null) return undefined;
      const m = ctx.map(r[k], [...rp, k]);
      ctx.keys(m, [...rp, k], k === 'limits' ? { cpus: 'ok', memory: 'ok', pids: 'ok' } : { cpus: 'ok', memory: 'ok', devices: 'warn', generic_resources: 'warn' });
      const cpus = ctx.str(m.cpus, [...rp, k, 'cpus']);
      const mem = ctx.str(m.memory, [...rp, k, 'memory']);
      const nano = cpus === undefined ? 0 : (parseCpus(cpus) ?? ctx.fail([...rp, k, 'cpus'], `expected a number of CPUs like 0.5, got "${cpus}"`));
      const bytes = mem === undefined ? 0 : (parseMemory(mem) ?? ctx.fail([...rp, k, 'memory'], `expected a size like 64M or 1G, got "${mem}"`));
      if (k === 'limits') {
        const pids = ctx.uint(m.pids, [...rp, k, 'pids']);
        if (pids) res.pidsLimit = pids;
      }
      return nano || bytes ? { nanoCpus: nano, memoryBytes: bytes } : undefined;
    };
    res.limits = one('limits');
    res.reservations = one('reservations');
    if (!res.limits && !res.reservations && !res.pidsLimit) task.resources = undefined;
  }

  if (d.restart_policy !== undefined && d.restart_policy !== null) {
    const rp = [...p, 'restart_policy'];
    const r = ctx.map(d.restart_policy, rp);
    ctx.keys(r, rp, ['condition', 'delay', 'max_attempts', 'window']);
    task.restart = RestartPolicy.fromPartial({
      condition: choice(ctx, RESTART_CONDITIONS, r.condition, [...rp, 'condition']) ?? RESTART_DEFAULTS.condition,
      delayMs: ctx.duration(r.delay, [...rp, 'delay']) ?? RESTART_DEFAULTS.delayMs,
      maxAttempts: ctx.uint(r.max_attempts, [...rp, 'max_attempts']) ?? 0,
      windowMs: ctx.duration(r.window, [...rp, 'window']) ?? 0,
    });
  }
  if (d.update_config !== undefined && d.update_config !== null) spec.update = updateConfig(ctx, d.update_config, [...p, 'update_config'], false);
  if (d.rollback_config !== undefined && d.rollback_config !== null) spec.rollback = updateConfig(ctx, d.rollback_config, [...p, 'rollback_config'], true);
}
