import type { Node, Service } from '@swarmd/proto';
import type { MemoryStore, ReadTx } from '../../store/memory-store.js';
import { onKind, type ObjectEvent } from '../../store/events.js';
import { newId as defaultNewId } from '../../ids.js';
import { type Controller, ServiceLoop, watchLoopController, applyWriteBudget, writeWork, isCanaryTask, DEFAULT_MAX_WRITES_PER_TICK } from '../../controller-kit/index.js';
import type { OrchestratorOptions } from '../options.js';
import { reconcileService, replicasOf } from './reconcile.js';

type Work = { service: Readonly<Service>; result: ReturnType<typeof reconcileService> };

/**
 * The replicated orchestrator (SwarmKit's orchestrator/replicated): watches services, tasks and
 * nodes, marks services dirty, and on each commit reconciles the dirty ones with the pure
 * reconcileService, writing the result in one store batch (chunks of store.maxBatchActions).
 */
export class ReplicatedOrchestrator extends ServiceLoop<Work> {
  private readonly newId: () => string;
  private readonly maxWrites: number;

  constructor(store: MemoryStore, now: () => number, opts: OrchestratorOptions = {}) {
    super(store, now);
    this.newId = opts.newId ?? (() => defaultNewId());
    this.maxWrites = Math.max(2, opts.maxWritesPerTick ?? DEFAULT_MAX_WRITES_PER_TICK);
  }

  init(tx: ReadTx): void {
    for (const s of tx.find('service')) if (replicasOf(s) !== undefined) this.queue.dirty.add(s.id);
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'service':
        if (e.type !== 'delete' && replicasOf(e.object) !== undefined) this.queue.dirty.add(e.object.id);
        if (e.type === 'delete') this.queue.wakeAt(e.object.id, undefined);
        break;
      case 'task':
        if (e.object.serviceId && e.type !== 'delete') this.queue.dirty.add(e.object.serviceId);
        break;
      case 'node':
        this.queue.onNodeEvent(e);
        break;
    }
  }

  protected plan(tx: ReadTx, ids: string[], now: number): { work: Work[]; deferred: string[] } {
    const nodes = new Map<string, Readonly<Node>>(tx.find('node').map((n) => [n.id, n]));
    const out: Work[] = [];
    for (const id of ids) {
      const service = tx.get('service', id);
      if (!service || replicasOf(service) === undefined) continue;
      // Canary tasks are the rollout's (extra slots beside the replicas).
      const result = reconcileService(service, tx.find('task', { serviceId: id }).filter((t) => !isCanaryTask(t)), nodes, now);
      this.queue.wakeAt(id, result.wakeAt);
      if (result.create.length + result.replace.length + result.shutdown.length > 0) out.push({ service, result });
    }
    // The write budget: what does not fit is recomputed next tick.
    const { kept, deferred } = applyWriteBudget(out, this.maxWrites);
    return { work: kept, deferred };
  }

  protected write(work: Work[], now: number): Promise<boolean> {
    return writeWork(this.store, work, (r) => ({ ...r, create: r.create.map((slot) => ({ slot })) }), now, this.newId);
  }
}

/** The replicated orchestrator as a leader-only controller (name "orchestrator/replicated"). */
export function replicatedOrchestratorController(opts: OrchestratorOptions = {}): Controller {
  return watchLoopController({
    name: 'orchestrator/replicated',
    component: 'manager/orchestrator/replicated',
    matchers: [onKind('service'), onKind('task'), onKind('node')],
    create: (deps) => new ReplicatedOrchestrator(deps.store, () => deps.clock.now(), opts),
  });
}
