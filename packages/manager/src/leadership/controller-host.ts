import { type Logger, nullLogger } from '@swarmd/common/logger';
import { describeError } from '@swarmd/common/errors';
import type { ReplicatedLog } from '../replication/replicated-log.js';
import type { Controller, ControllerDeps } from '../controller-kit/controller.js';

export interface ControllerHostOptions {
  log: Pick<ReplicatedLog, 'isLeader' | 'onLeaderChange'>;
  deps: ControllerDeps;
  /** Delay before a controller that returned or failed while still leader runs again (default 1 s). */
  restartDelayMs?: number;
}

interface Running {
  controller: Controller;
  abort: AbortController;
  done: Promise<void>;
}

/**
 * Starts every registered controller when this member becomes the leader and aborts them when
 * it stops being one (SwarmKit's becomeLeader/becomeFollower). A controller that returns or
 * throws while still leader is restarted after a delay. Controllers registered while leading
 * start at once.
 */
export class ControllerHost {
  private readonly controllers: Controller[] = [];
  private readonly running = new Map<Controller, Running>();
  private readonly logger: Logger;
  private unsubscribe: (() => void) | undefined;
  private leading = false;
  private stopped = false;

  constructor(private readonly opts: ControllerHostOptions) {
    this.logger = (opts.deps.logger ?? nullLogger).child({ component: 'manager/leadership' });
  }

  register(c: Controller): void {
    this.controllers.push(c);
    if (this.leading && !this.stopped) this.startOne(c);
  }

  /** Follows leadership from now on (and starts the controllers if already leader). */
  start(): void {
    if (this.unsubscribe || this.stopped) return;
    this.unsubscribe = this.opts.log.onLeaderChange((l) => this.onLeaderChange(l));
    this.onLeaderChange(this.opts.log.isLeader());
  }

  /** Names of the controllers running now. */
  runningControllers(): string[] {
    return [...this.running.keys()].map((c) => c.name);
  }

  isLeading(): boolean {
    return this.leading;
  }

  private onLeaderChange(leader: boolean): void {
    if (this.stopped || leader === this.leading) return;
    this.leading = leader;
    if (leader) {
      this.logger.info('became leader: starting controllers', { controllers: this.controllers.map((c) => c.name) });
      for (const c of this.controllers) this.startOne(c);
    } else {
      this.logger.info('lost leadership: stopping controllers', { controllers: this.runningControllers() });
      void this.abortAll();
    }
  }

  private startOne(c: Controller): void {
    if (this.running.has(c)) return;
    const abort = new AbortController();
    const r: Running = { controller: c, abort, done: Promise.resolve() };
    this.running.set(c, r);
    r.done = (async () => {
      while (!abort.signal.aborted) {
        try {
          await c.run(this.opts.deps, abort.signal);
          if (abort.signal.aborted) break;
          this.logger.warn('controller returned while leader; restarting it', { controller: c.name });
        } catch (err) {
          if (abort.signal.aborted) break;
          this.logger.error('controller failed; restarting it', { controller: c.name, error: describeError(err) });
        }
        try {
          await this.opts.deps.clock.sleep(this.opts.restartDelayMs ?? 1000, abort.signal);
        } catch {
          break;
        }
      }
    })();
    void r.done.finally(() => {
      if (this.running.get(c) === r) this.running.delete(c);
    });
  }

  private async abortAll(): Promise<void> {
    const all = [...this.running.values()];
    for (const r of all) {
      r.abort.abort(new Error('leadership lost'));
      this.running.delete(r.controller);
    }
    await Promise.all(all.map((r) => r.done));
  }

  /** Aborts every controller and waits for them to return. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.leading = false;
    await this.abortAll();
  }
}
