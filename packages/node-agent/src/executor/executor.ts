import type { ContainerStatus, NodeDescription, PortConfig, Task } from '@swarmd/proto';

/** How a container ended (ContainerService.wait). */
export interface ExitInfo {
  exitCode: number;
  oomKilled: boolean;
  error?: string;
}

/** What the runtime knows of a task's container right now (re-attach, status facts). */
export interface ContainerFacts {
  exists: boolean;
  status?: 'created' | 'running' | 'exited';
  container?: Partial<ContainerStatus>;
  exit?: ExitInfo;
  ports?: PortConfig[];
}

/** The container exited while the task runner waited for it to become healthy (start). */
export class ContainerExitedError extends Error {
  constructor(readonly exit: ExitInfo) {
    super(`container exited (${exit.exitCode})`);
    this.name = 'ContainerExitedError';
  }
}

/** The health check failed `retries` times in a row. */
export class UnhealthyError extends Error {
  constructor(readonly detail: string) {
    super(`unhealthy container: ${detail}`);
    this.name = 'UnhealthyError';
  }
}

/** A prepare failure that will not go away by retrying (bad reference, image not found, denied). */
export class PermanentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

/**
 * One task's container over the runtime (DESIGN.md's TaskController; swarmkit's exec.Controller).
 * Every method is idempotent, so a restarted agent can call any of them again.
 */
export interface TaskController {
  /**
   * Pull the image and create the container (network included). PermanentError → REJECTED.
   * `mayStart`, asked once everything is ready to create the container: true when the task may
   * already run (desired RUNNING), so it is started by the same runtime call and start() finds
   * it running (one program fewer on the way to RUNNING).
   */
  prepare(s: AbortSignal, o?: { mayStart?: () => boolean }): Promise<Partial<ContainerStatus>>;
  /** Start; with a health check, resolves only once healthy (UnhealthyError, ContainerExitedError). */
  start(s: AbortSignal): Promise<Partial<ContainerStatus>>;
  /** Resolves with the exit; rejects with UnhealthyError when the health check fails. */
  wait(s: AbortSignal): Promise<ExitInfo>;
  /** Stop with the stop signal, SIGKILL after the grace period. Returns the exit if there was one. */
  shutdown(s: AbortSignal): Promise<ExitInfo | undefined>;
  /** SIGKILL now. */
  terminate(s: AbortSignal): Promise<void>;
  /**
   * The task ended (COMPLETE, FAILED, SHUTDOWN, REJECTED): stop its container if it still runs
   * (a task failed by its health check) and free what only a live task holds, its address and
   * host-mode ports, so a replacement on this node can publish them at once. The container and
   * its logs stay until `remove`.
   */
  release(s: AbortSignal): Promise<void>;
  /** Remove the container and its network (nothing left behind). */
  remove(s: AbortSignal): Promise<void>;
  /** What exists now (re-attach after an agent restart). */
  inspect(): Promise<ContainerFacts>;
  /** Published ports (mode=host) once prepared. */
  ports(): PortConfig[];
  /** The task's address on its first network once prepared (no mask), if it has one. */
  address?(): string | undefined;
}

export interface Executor {
  describe(): Promise<NodeDescription>;
  controller(t: Task): TaskController;
  /** Task ids of the containers this node's executor made (labels), to find them again. */
  listTaskContainers(): Promise<{ taskId: string; serviceId: string }[]>;
}
