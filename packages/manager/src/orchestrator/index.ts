export * from './controller.js';
export * from './task.js';
export * from './writes.js';
export * from './restart/index.js';
export * from './replicated/index.js';
export * from './global/index.js';
export * from './task-reaper/index.js';

import type { StoreController } from './controller.js';
import { replicatedOrchestratorController, type OrchestratorOptions } from './replicated/replicated.js';
import { globalOrchestratorController } from './global/global.js';
import { taskReaperController, type TaskReaperOptions } from './task-reaper/task-reaper.js';
import { schedulerController, type SchedulerOptions } from '../scheduler/scheduler.js';
import { updaterController } from '../update/updater.js';

/**
 * Every controller of the "services" path, for the leader-only controller host:
 * `for (const c of serviceControllers()) host.register(c)`. The rolling updater (../update) is one of them.
 */
export function serviceControllers(opts: OrchestratorOptions & TaskReaperOptions & SchedulerOptions = {}): StoreController[] {
  return [replicatedOrchestratorController(opts), globalOrchestratorController(opts), updaterController(opts), taskReaperController(opts), schedulerController(opts)];
}
