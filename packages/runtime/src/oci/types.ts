/** The parts of the OCI runtime spec (config.json) we write, and the image and container specs we build it from. */

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciProcess {
  terminal?: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities?: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
  rlimits?: { type: string; soft: number; hard: number }[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
}

export interface OciSeccomp {
  defaultAction: string;
  architectures?: string[];
  syscalls?: { names: string[]; action: string; errnoRet?: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] }[];
}

export interface OciResources {
  devices?: { allow: boolean; type?: string; major?: number; minor?: number; access?: string }[];
  memory?: { limit?: number; swap?: number };
  cpu?: { shares?: number; quota?: number; period?: number };
  pids?: { limit: number };
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts: OciMount[];
  annotations?: Record<string, string>;
  linux: {
    namespaces: { type: string; path?: string }[];
    cgroupsPath?: string;
    resources?: OciResources;
    maskedPaths?: string[];
    readonlyPaths?: string[];
    seccomp?: OciSeccomp;
    rootfsPropagation?: string;
  };
}

/** The runtime part of an image config (OCI image-spec `config`, Docker's casing). */
export interface ImageRuntimeConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
  Labels?: Record<string, string> | null;
}

export type MountSpec =
  /** A host directory or file. */
  | { type: 'bind'; source: string; target: string; readOnly?: boolean }
  /** A named volume, `<root>/volumes/<name>/_data`, created on first use and kept after the container. */
  | { type: 'volume'; source: string; target: string; readOnly?: boolean; driver?: string; noCopy?: boolean }
  | { type: 'tmpfs'; target: string; sizeBytes?: number; mode?: number };

export interface Resources {
  /** Hard memory limit (no swap beyond it). */
  memoryBytes?: number;
  /** CFS quota and period in microseconds (quota/period = CPUs). */
  cpuQuotaUs?: number;
  cpuPeriodUs?: number;
  /** Relative CPU weight (cgroup v1 shares, 1024 = default). */
  cpuShares?: number;
  /** Maximum number of tasks (processes and threads). */
  pidsLimit?: number;
}

/** What a service says about its container; every field overrides the image config. */
export interface ContainerSpec {
  /** Replaces the image Entrypoint (and drops the image Cmd, as `docker run --entrypoint` does). */
  command?: string[];
  /** Replaces the image Cmd. */
  args?: string[];
  /** KEY=VALUE, added to (and overriding) the image's. */
  env?: string[];
  /** Working directory; the image's, else "/". */
  dir?: string;
  /** user, uid, user:group or uid:gid; names are looked up in the image. */
  user?: string;
  hostname?: string;
  mounts?: MountSpec[];
  resources?: Resources;
  /** Read-only root filesystem. */
  readOnly?: boolean;
  /** Overrides the image StopSignal (default SIGTERM). */
  stopSignal?: string;
  /** Extra /etc/hosts lines, "name:address". */
  extraHosts?: string[];
  /** resolv.conf; the host's (without loopback resolvers) by default. */
  dns?: { nameservers?: string[]; search?: string[]; options?: string[] };
  /** RLIMIT_NOFILE; 1048576 by default. */
  nofile?: { soft: number; hard: number };
  labels?: Record<string, string>;
}
