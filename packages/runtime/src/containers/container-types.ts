/**
 * What the container service takes and gives: the types of its public API (the node agent's
 * executor is written against them), apart from the OCI-level ContainerSpec in oci/types.ts.
 */
import type { Logger } from '@swarmd/common/logger';
import type { ContainerSpec, ImageRuntimeConfig } from '../oci/types.js';
import type { CgroupStats } from './cgroups.js';

export type ContainerStatus = 'created' | 'running' | 'exited';

export interface ExitStatus {
  exitCode: number;
  /** The kernel OOM-killed a process of the container (its memory limit was hit). */
  oomKilled: boolean;
  exitedAt: Date;
  /** Set when the exit code could not be known (the monitor was gone). */
  error?: string;
}

export interface ImageInput {
  /** Unpacked layer directories, top first (the image store's layerDirs()). */
  layers: string[];
  config?: ImageRuntimeConfig;
}

export interface CreateContainerOptions {
  image: ImageInput;
  spec?: ContainerSpec;
  /** Join this network namespace (e.g. /run/netns/X); otherwise the container gets a new one. */
  netnsPath?: string;
  /**
   * The network still being made (the caller attaches it meanwhile): create() mounts the rootfs
   * and starts conmon beside it and waits for it only before resolv.conf and config.json are
   * written. Its netnsPath and dns, when set, replace `netnsPath` and `spec.dns`. A rejection
   * fails the create with that error, nothing left behind.
   */
  network?: Promise<NetworkInput>;
  /**
   * The rest of the network (links, addresses, routes inside the netns `network` named), made
   * beside `runc create`: the container's process starts only once it resolves. Until then
   * create() runs `runc create` (not `run`) and, once it resolves, starts the container through
   * the exec fifo when `startNow` still says so (no second runc process). A rejection fails the
   * create with that error, nothing left behind.
   */
  networkReady?: Promise<unknown>;
  name?: string;
  /**
   * Asked right before runc runs (after the rootfs and bundle are made, so a task that got
   * leave to run meanwhile still benefits): true makes one runc process create and start the
   * container (`runc run --detach` through conmon), saving the second runc process of start().
   * The container is then running when create() returns: its ContainerInfo says status
   * 'running' and `startedByCreate`, and start() is a no-op that returns its pid.
   */
  startNow?: () => boolean;
}

/** What a network attach gives the container (CreateContainerOptions.network). */
export interface NetworkInput {
  netnsPath?: string;
  dns?: ContainerSpec['dns'];
}

export interface ContainerInfo {
  id: string;
  name?: string;
  status: ContainerStatus;
  /** The container's init process (host pid namespace), while it runs. */
  pid?: number;
  createdAt: Date;
  startedAt?: Date;
  /** create() started it (CreateContainerOptions.startNow): start() has nothing to do. */
  startedByCreate?: boolean;
  exit?: ExitStatus;
  image: ImageInput;
  spec: ContainerSpec;
  netnsPath?: string;
  stopSignal: string;
  hostname: string;
  bundle: string;
  rootfs: string;
  logPath: string;
  cgroupsPath: string;
  conmonPid?: number;
}

export interface ExecOptions {
  env?: string[];
  cwd?: string;
  /** uid[:gid]; the container's user by default. */
  user?: string;
  /** Kill the process (SIGKILL) and fail with DEADLINE_EXCEEDED after this long. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ContainerStats extends CgroupStats {
  id: string;
}

export interface ContainerServiceOptions {
  /** The runtime state dir (DESIGN.md: `<state>/runtime`). */
  root: string;
  /** Names the cgroup parent; by default derived from `root`, so a restarted agent gets the same one. */
  instance?: string;
  /** Absolute cgroup path all containers go under (default `/swarmd-<instance>`). */
  cgroupParent?: string;
  runc?: string;
  conmon?: string;
  logger?: Logger;
  /** The host's resolv.conf, copied (without loopback resolvers) into containers. */
  hostResolvConf?: string;
  /** How long conmon may take for `runc create`. */
  createTimeoutMs?: number;
}
