import type { Controller } from '../controller-kit/controller.js';
import { replicatedOrchestratorController, globalOrchestratorController, taskReaperController, type OrchestratorOptions, type TaskReaperOptions } from '../orchestrator/index.js';
import { schedulerController, type SchedulerOptions } from '../scheduler/scheduler.js';
import { updaterController } from '../update/updater.js';
import { rolloutController } from '../rollout/controller.js';
import { allocatorController } from '../allocator/allocator.js';

/**
 * Every controller of the "services" path, for the leader-only controller host:
 * `for (const c of serviceControllers()) host.register(c)`. They meet only through the store.
 */
export function serviceControllers(opts: OrchestratorOptions & TaskReaperOptions & SchedulerOptions = {}): Controller[] {
  return [
    replicatedOrchestratorController(opts),
    globalOrchestratorController(opts),
    updaterController(opts),
    rolloutController(opts),
    taskReaperController(opts),
    allocatorController(),
    schedulerController(opts),
  ];
}
