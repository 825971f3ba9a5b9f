/**
 * Builds a container's OCI runtime spec (config.json) from its image config and its container
 * spec. Pure: the caller resolves users, volumes and generated files first, and passes them in.
 * Security defaults follow Docker's: its default capability set, masked and read-only /proc and
 * /sys paths, no-new-privileges, and a seccomp profile (ours: allow by default, deny a list).
 */
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { constants as osConstants } from 'node:os';
import { invalidArgument } from '@swarmd/common/errors';
import type { ResolvedUser } from './user.js';
import { DEFAULT_SECCOMP_PROFILE } from './seccomp-default.js';
import type { ContainerSpec, ImageRuntimeConfig, MountSpec, OciMount, OciSeccomp, OciSpec } from './types.js';

/** Docker's default capabilities. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_NOFILE = 1048576;

/** The default seccomp profile (oci/seccomp-default.ts) with the architectures of this host filled in. */
export function defaultSeccompProfile(arch: string = process.arch): OciSeccomp {
  const architectures =
    arch === 'x64' ? ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'] : arch === 'arm64' ? ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] : [];
  return { ...DEFAULT_SECCOMP_PROFILE, architectures };
}

/** This process' hard RLIMIT_NOFILE (from /proc/self/limits), capped at DEFAULT_NOFILE. */
export function ownNofileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    return hard === undefined || hard === 'unlimited' ? DEFAULT_NOFILE : Math.min(DEFAULT_NOFILE, Number(hard));
  } catch {
    return DEFAULT_NOFILE;
  }
}

/** "TERM", "SIGTERM" or "15" → "SIGTERM"; anything else is an INVALID_ARGUMENT. */
export function normalizeSignal(sig: string | number): string {
  const signals = osConstants.signals as Record<string, number>;
  const s = String(sig).trim().toUpperCase();
  if (/^\d+$/.test(s)) {
    const name = Object.keys(signals).find((k) => signals[k] === Number(s));
    if (!name) throw invalidArgument(`signal ${sig} is not known`);
    return name;
  }
  const name = s.startsWith('SIG') ? s : `SIG${s}`;
  if (!(name in signals)) throw invalidArgument(`signal "${sig}" is not known`);
  return name;
}

export interface ProcessPlan {
  args: string[];
  env: string[];
  cwd: string;
}

/** Docker's rules: the spec's command replaces Entrypoint (and drops Cmd); args replace Cmd. */
export function planProcess(image: ImageRuntimeConfig, spec: ContainerSpec, extraEnv: Record<string, string> = {}): ProcessPlan {
  const entrypoint = spec.command ?? image.Entrypoint ?? [];
  const cmd = spec.args ?? (spec.command ? [] : image.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw invalidArgument('no command: the image has no Entrypoint or Cmd and the spec gives none');
  const env = mergeEnv([DEFAULT_PATH], image.Env ?? [], Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`), spec.env ?? []);
  const cwd = spec.dir ?? (image.WorkingDir || '/');
  if (!cwd.startsWith('/')) throw invalidArgument(`working directory "${cwd}" is not absolute`);
  return { args, env, cwd };
}

/** Later lists override earlier ones, key by key; order of first appearance is kept. */
export function mergeEnv(...lists: readonly (readonly string[])[]): string[] {
  const m = new Map<string, string>();
  for (const list of lists) {
    for (const kv of list) {
      const i = kv.indexOf('=');
      const key = i < 0 ? kv : kv.slice(0, i);
      if (!key) throw invalidArgument(`environment entry "${kv}" has no name`);
      m.set(key, i < 0 ? '' : kv.slice(i + 1));
    }
  }
  return [...m].map(([k, v]) => `${k}=${v}`);
}

export interface SpecInput {
  id: string;
  /** Host path of the mounted root filesystem. */
  rootfs: string;
  image: ImageRuntimeConfig;
  spec: ContainerSpec;
  user: ResolvedUser;
  /** Join this network namespace (e.g. /run/netns/X); a new one otherwise. */
  netnsPath?: string;
  cgroupsPath: string;
  /** Generated files bind-mounted over /etc/hosts, /etc/hostname and /etc/resolv.conf. */
  etcFiles: { hosts: string; hostname: string; resolvConf: string };
  /** Host source of each spec mount (bind: the path; volume: its _data dir), index-aligned with spec.mounts. */
  mountSources: readonly (string | undefined)[];
  seccomp: OciSeccomp;
  /** RLIMIT_NOFILE when the spec gives none (the runtime's own hard limit: raising it needs CAP_SYS_RESOURCE). */
  defaultNofile?: number;
}

export function hostnameOf(id: string, spec: ContainerSpec): string {
  return spec.hostname ?? id.slice(0, 12);
}

export function buildSpec(input: SpecInput): OciSpec {
  const { spec, image, user } = input;
  const hostname = hostnameOf(input.id, spec);
  const proc = planProcess(image, spec, { HOSTNAME: hostname, ...(hasKey(image.Env, spec.env, 'HOME') ? {} : { HOME: user.home }) });
  const caps = DEFAULT_CAPABILITIES;
  const root = user.uid === 0;
  const n = input.defaultNofile ?? DEFAULT_NOFILE;
  const nofile = spec.nofile ?? { soft: n, hard: n };
  if (nofile.soft > nofile.hard) throw invalidArgument(`nofile soft limit ${nofile.soft} exceeds hard limit ${nofile.hard}`);

  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
    input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' },
  ];

  const r = spec.resources ?? {};
  const resources: OciSpec['linux']['resources'] = { devices: [{ allow: false, access: 'rwm' }] };
  if (r.memoryBytes !== undefined) {
    positive('memoryBytes', r.memoryBytes);
    resources.memory = { limit: r.memoryBytes, swap: r.memoryBytes };
  }
  if (r.cpuShares !== undefined || r.cpuQuotaUs !== undefined || r.cpuPeriodUs !== undefined) {
    resources.cpu = {};
    if (r.cpuShares !== undefined) resources.cpu.shares = positive('cpuShares', r.cpuShares);
    if (r.cpuQuotaUs !== undefined) resources.cpu.quota = positive('cpuQuotaUs', r.cpuQuotaUs);
    if (r.cpuPeriodUs !== undefined) resources.cpu.period = positive('cpuPeriodUs', r.cpuPeriodUs);
    else if (r.cpuQuotaUs !== undefined) resources.cpu.period = 100_000;
  }
  if (r.pidsLimit !== undefined) resources.pids = { limit: positive('pidsLimit', r.pidsLimit) };

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) },
      args: proc.args,
      env: proc.env,
      cwd: proc.cwd,
      capabilities: {
        bounding: caps,
        // A non-root user keeps the bounding set but holds no capability (as Docker does).
        effective: root ? caps : [],
        permitted: root ? caps : [],
        inheritable: [],
        ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: nofile.soft, hard: nofile.hard }],
      noNewPrivileges: true,
      oomScoreAdj: 0,
    },
    root: { path: input.rootfs, readonly: spec.readOnly ?? false },
    hostname,
    mounts: [...defaultMounts(), ...etcMounts(input.etcFiles), ...userMounts(spec.mounts ?? [], input.mountSources)],
    annotations: { 'io.swarmd.container.id': input.id },
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      resources,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      seccomp: input.seccomp,
      rootfsPropagation: 'rprivate',
    },
  };
}

function hasKey(a: readonly string[] | null | undefined, b: readonly string[] | undefined, key: string): boolean {
  return [...(a ?? []), ...(b ?? [])].some((kv) => kv.split('=')[0] === key);
}

function positive(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw invalidArgument(`resources.${name} must be a positive integer, got ${v}`);
  return v;
}

function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev', 'relatime'] },
  ];
}

function etcMounts(f: SpecInput['etcFiles']): OciMount[] {
  const bind = (source: string, destination: string): OciMount => ({ destination, type: 'bind', source, options: ['rbind', 'rprivate'] });
  return [bind(f.resolvConf, '/etc/resolv.conf'), bind(f.hostname, '/etc/hostname'), bind(f.hosts, '/etc/hosts')];
}

function cleanTarget(target: string): string {
  if (!target.startsWith('/')) throw invalidArgument(`mount target "${target}" is not absolute`);
  const t = posix.normalize(target);
  if (t === '/') throw invalidArgument('a mount cannot replace the root filesystem');
  return t.replace(/\/$/, '');
}

/** User mounts, parents before children (runc mounts in order). */
function userMounts(mounts: readonly MountSpec[], sources: readonly (string | undefined)[]): OciMount[] {
  const out = mounts.map((m, i): OciMount => {
    const destination = cleanTarget(m.target);
    switch (m.type) {
      case 'bind':
      case 'volume': {
        const source = sources[i];
        if (!source) throw invalidArgument(`mount ${destination}: no source resolved`);
        return { destination, type: 'bind', source, options: ['rbind', 'rprivate', m.readOnly ? 'ro' : 'rw'] };
      }
      case 'tmpfs': {
        const opts = ['nosuid', 'nodev'];
        if (m.sizeBytes !== undefined) opts.push(`size=${positive('tmpfs sizeBytes', m.sizeBytes)}`);
        opts.push(`mode=${(m.mode ?? 0o1777).toString(8)}`);
        return { destination, type: 'tmpfs', source: 'tmpfs', options: opts };
      }
      default:
        throw invalidArgument(`mount type "${(m as { type: string }).type}" is not supported (bind, volume, tmpfs)`);
    }
  });
  const seen = new Set<string>();
  for (const m of out) {
    if (seen.has(m.destination)) throw invalidArgument(`two mounts on ${m.destination}`);
    seen.add(m.destination);
  }
  return out.sort((a, b) => a.destination.split('/').length - b.destination.split('/').length);
}

/** /etc/hosts text. */
export function hostsFile(hostname: string, extraHosts: readonly string[] = []): string {
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters'];
  for (const h of extraHosts) {
    const i = h.indexOf(':');
    if (i <= 0) throw invalidArgument(`extra host "${h}": expected name:address`);
    lines.push(`${h.slice(i + 1)}\t${h.slice(0, i)}`);
  }
  lines.push(`127.0.1.1\t${hostname}`);
  return lines.join('\n') + '\n';
}

/** resolv.conf text: the spec's, else the host's without loopback resolvers (unreachable from a container). */
export function resolvConfFile(dns: ContainerSpec['dns'], hostResolvConf: string): string {
  if (dns && (dns.nameservers?.length || dns.search?.length || dns.options?.length)) {
    return [
      ...(dns.search?.length ? [`search ${dns.search.join(' ')}`] : []),
      ...(dns.nameservers ?? []).map((n) => `nameserver ${n}`),
      ...(dns.options?.length ? [`options ${dns.options.join(' ')}`] : []),
    ].join('\n') + '\n';
  }
  const kept = hostResolvConf
    .split('\n')
    .filter((l) => !/^\s*nameserver\s+(127\.|::1\b|0\.0\.0\.0)/.test(l))
    .join('\n');
  return kept.endsWith('\n') ? kept : kept + '\n';
}
