/**
 * DESIGN's Controller: a leader-only loop that reads and writes the store and reacts to its watch.
 * The controller host (leadership/) starts `run` when this manager becomes the leader and aborts
 * `signal` when it stops being one; `run` returns (or rejects) soon after the abort.
 */
import type { Clock } from '@swarmd/common/clock';
import { type Logger, nullLogger } from '@swarmd/common/logger';
import { describeError } from '@swarmd/common/errors';
import type { MemoryStore } from '../store/memory-store.js';
import type { EventMatcher } from '../store/events.js';
import { runWatchLoop, type WatchLoop } from './watch-loop.js';

export interface ControllerDeps {
  store: MemoryStore;
  clock: Clock;
  logger?: Logger;
}

export interface Controller {
  readonly name: string;
  run(deps: ControllerDeps, signal: AbortSignal): Promise<void>;
}

export function controllerLogger(deps: Pick<ControllerDeps, 'logger'>, component: string): Logger {
  return (deps.logger ?? nullLogger).child({ component });
}

/**
 * A controller made of one watch loop (runWatchLoop): `create` builds the loop's state for one
 * term of leadership, so a new leader starts from what the store holds now. A loop that ends
 * while still leader is logged and rethrown (the host restarts the controller).
 */
export function watchLoopController(o: {
  name: string;
  /** The logger's component, e.g. "manager/scheduler". */
  component: string;
  matchers: EventMatcher[];
  create(deps: ControllerDeps, log: Logger): WatchLoop;
}): Controller {
  return {
    name: o.name,
    async run(deps: ControllerDeps, signal: AbortSignal): Promise<void> {
      const log = controllerLogger(deps, o.component);
      const loop = o.create(deps, log);
      try {
        await runWatchLoop(deps, o.matchers, loop, signal);
      } catch (err) {
        if (!signal.aborted) log.warn('loop ended', { error: describeError(err) });
        throw err;
      }
    },
  };
}
