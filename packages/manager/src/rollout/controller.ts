import { ErrorCode, SwarmError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { Rollout_State, type Service } from '@swarmd/proto';
import type { MemoryStore, ReadTx, Tx } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import { onKind, type ObjectEvent } from '../store/events.js';
import { newId as defaultNewId } from '../ids.js';
import { type Controller, ServiceLoop, watchLoopController, batchOfAttempts, newTask, shutdownTask, abortRollout, isRolloutActive, rolloutStateName } from '../controller-kit/index.js';
import { planRollout, type RolloutPlan } from './plan.js';

type Work = { service: Readonly<Service>; plan: RolloutPlan };

const replicasOf = (s: Readonly<Service>): number => (s.spec?.mode?.$case === 'replicated' ? Number(s.spec.mode.replicated.replicas) : 0);

/**
 * The canary rollout controller: watches services and their tasks, and for each service with a
 * rollout not yet ended plans with the pure planRollout (plan.ts) and writes the plan: the
 * rollout (each write checks the service is the one planned against), the canary tasks to
 * create (marked `canary`, in extra slots) or shut down, and an abort. It keeps nothing in
 * memory: a new leader resumes a rollout at the step, weight and gate the store holds.
 */
export class RolloutController extends ServiceLoop<Work> {
  private readonly newId: () => string;

  constructor(
    store: MemoryStore,
    now: () => number,
    opts: { newId?: () => string } = {},
    private readonly log: Logger = nullLogger,
  ) {
    super(store, now);
    this.newId = opts.newId ?? (() => defaultNewId());
  }

  init(tx: ReadTx): void {
    for (const s of tx.find('service')) if (isRolloutActive(s)) this.queue.dirty.add(s.id);
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'service':
        if (e.type === 'delete') this.queue.wakeAt(e.object.id, undefined);
        else if (isRolloutActive(e.object)) this.queue.dirty.add(e.object.id);
        break;
      case 'task':
        if (e.type !== 'delete' && e.object.serviceId) this.queue.dirty.add(e.object.serviceId);
        break;
    }
  }

  protected plan(tx: ReadTx, ids: string[], now: number): { work: Work[]; deferred: string[] } {
    const out: Work[] = [];
    for (const id of ids) {
      const service = tx.get('service', id);
      if (!service || !isRolloutActive(service)) continue;
      const plan = planRollout({ service, tasks: tx.find('task', { serviceId: id }), replicas: replicasOf(service), now });
      this.queue.wakeAt(id, plan.wakeAt);
      if (plan.rollout || plan.abort || plan.create.length || plan.shutdown.length) out.push({ service, plan });
    }
    return { work: out, deferred: [] };
  }

  protected async write(work: Work[], now: number): Promise<boolean> {
    const failed = await batchOfAttempts(this.store, async (attempt) => {
      for (const { service, plan } of work) {
        const same = (tx: Tx): Readonly<Service> => {
          const cur = tx.get('service', service.id);
          if (!cur || cur.meta?.version !== service.meta?.version) throw new SwarmError(ErrorCode.CONFLICT, `service ${service.id} changed since the rollout was planned`);
          return cur;
        };
        await attempt((tx) => {
          const cur = same(tx);
          if (plan.abort) {
            abortRollout(tx, cur, plan.abort.message, now);
            return;
          }
          for (const slot of plan.create) {
            const t = newTask(cur, { id: this.newId(), slot, now });
            t.canary = { path: cur.rollout!.config!.checkPath, port: cur.rollout!.config!.checkPort };
            tx.create('task', t);
          }
          for (const t of plan.shutdown) shutdownTask(tx, t, 'rollout completed: canary no longer needed', now);
          if (plan.rollout) {
            const u = cloneObject('service', cur);
            u.rollout = plan.rollout;
            tx.update('service', u);
          }
        });
      }
    });
    for (const { service, plan } of work) this.logPlan(service, plan);
    return failed === 0;
  }

  private logPlan(service: Readonly<Service>, plan: RolloutPlan): void {
    const fields = { serviceId: service.id, name: service.spec?.annotations?.name ?? service.id };
    if (plan.abort) this.log.warn('canary rollout aborted', { ...fields, why: plan.abort.message });
    const r = plan.rollout;
    if (r && (r.state !== service.rollout?.state || r.step !== service.rollout?.step)) {
      const f = { ...fields, state: rolloutStateName(r.state), step: r.step + 1, weight: r.weight, message: r.message };
      if (r.state === Rollout_State.ABORTED) this.log.warn('canary rollout ended', f);
      else this.log.info('canary rollout', f);
    }
    if (plan.create.length) this.log.info('starting canary tasks', { ...fields, slots: plan.create });
  }
}

/** The canary rollout controller as a leader-only controller (name "orchestrator/rollout"). */
export function rolloutController(opts: { newId?: () => string } = {}): Controller {
  return watchLoopController({
    name: 'orchestrator/rollout',
    component: 'manager/rollout',
    matchers: [onKind('service'), onKind('task')],
    create: (deps, log) => new RolloutController(deps.store, () => deps.clock.now(), opts, log),
  });
}
