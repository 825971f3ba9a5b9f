/**
 * Canary rollouts by hand (control API): PromoteService (the next step, or `all` to the end) and
 * AbortRollout (traffic back to the old tasks, canaries removed, the old spec back). The rollout
 * controller does the rest; both only change the service's rollout in the store.
 */
import { failedPrecondition } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { Rollout_State, type Service } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';
import { cloneObject, nameOf } from '../store/kinds.js';
import { abortRollout, atStep, isCanaryPhase, isLastStep, isRolloutActive, promoting } from '../controller-kit/index.js';
import { publicService, resolveService, rolloutWhere } from './services.js';

export interface RolloutsDeps {
  store: Store;
  logger: Logger;
  now(): number;
}

export function createRolloutsImpl(deps: RolloutsDeps) {
  const { store, logger: log } = deps;

  const noRollout = (s: Readonly<Service>, what: string) =>
    failedPrecondition(
      `service ${nameOf('service', s)} has no canary rollout ${what}${s.rollout ? ` (its last one is ${Rollout_State[s.rollout.state].toLowerCase()}: ${s.rollout.message})` : ''}: start one with swarmctl service update --canary-weight P`,
    );

  async function promoteService(req: { serviceId: string; all: boolean; fromStep?: number }): Promise<{ service: Service }> {
    let id = '';
    await store.update((tx) => {
      const s = resolveService(tx, req.serviceId);
      id = s.id;
      const at = (s.rollout?.step ?? 0) + 1;
      if (req.fromStep && isRolloutActive(s) && (at > req.fromStep || s.rollout?.state === Rollout_State.PROMOTING)) return; // a retry of an applied promote
      if (req.fromStep && isCanaryPhase(s) && at !== req.fromStep) throw failedPrecondition(`service ${nameOf('service', s)}'s rollout is at step ${at}, not ${req.fromStep}: look again (swarmctl service inspect)`);
      if (!isCanaryPhase(s)) {
        if (s.rollout?.state === Rollout_State.PROMOTING) throw failedPrecondition(`service ${nameOf('service', s)}'s rollout is past its last step: the old tasks are being replaced`);
        throw noRollout(s, 'to promote');
      }
      const u = cloneObject('service', s);
      const r = u.rollout!;
      const now = deps.now();
      u.rollout = req.all || isLastStep(r.config!, r.step) ? promoting(r, now, req.all ? 'promoted to the end by hand' : `step ${r.step + 1} of ${r.config!.steps.length} promoted by hand`) : atStep(r, r.step + 1, now);
      tx.update('service', u);
    });
    const service = store.view((tx) => tx.get('service', id))!;
    log.info('canary rollout promoted', { serviceId: id, step: service.rollout!.step + 1, weight: service.rollout!.weight, all: req.all });
    return { service: publicService(service) };
  }

  async function abortRollout_(req: { serviceId: string }): Promise<{ service: Service }> {
    let id = '';
    await store.update((tx) => {
      const s = resolveService(tx, req.serviceId);
      id = s.id;
      if (!isRolloutActive(s)) throw noRollout(s, 'in progress');
      abortRollout(tx, s, `aborted by hand at ${rolloutWhere(s)}`, deps.now());
    });
    log.warn('canary rollout aborted by hand', { serviceId: id });
    return { service: publicService(store.view((tx) => tx.get('service', id))!) };
  }

  return { promoteService, abortRollout: abortRollout_ };
}
