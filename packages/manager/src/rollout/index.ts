export { planRollout, MIN_CHECKS, RECHECK_MS, type RolloutInput, type RolloutPlan } from './plan.js';
export { RolloutController, rolloutController } from './controller.js';
