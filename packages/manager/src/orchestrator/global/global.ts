import type { Service } from '@swarmd/proto';
import type { MemoryStore, ReadTx } from '../../store/memory-store.js';
import { onKind, type ObjectEvent } from '../../store/events.js';
import { newId as defaultNewId } from '../../ids.js';
import { type Controller, ServiceLoop, nodeChanged, watchLoopController, applyWriteBudget, writeWork, DEFAULT_MAX_WRITES_PER_TICK } from '../../controller-kit/index.js';
import type { OrchestratorOptions } from '../options.js';
import { reconcileGlobalService, isGlobal, type GlobalReconcileResult } from './reconcile.js';

type Work = { service: Readonly<Service>; result: GlobalReconcileResult };

/**
 * The global orchestrator (SwarmKit's orchestrator/global): one task per eligible node, created
 * with its node_id set (the scheduler then only checks that node). Any node change (joins,
 * leaves, drained, labels changed) makes every global service dirty.
 */
export class GlobalOrchestrator extends ServiceLoop<Work> {
  private allDirty = false;
  private readonly newId: () => string;
  private readonly maxWrites: number;

  constructor(store: MemoryStore, now: () => number, opts: OrchestratorOptions = {}) {
    super(store, now);
    this.newId = opts.newId ?? (() => defaultNewId());
    this.maxWrites = Math.max(2, opts.maxWritesPerTick ?? DEFAULT_MAX_WRITES_PER_TICK);
  }

  init(_tx: ReadTx): void {
    this.allDirty = true;
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'service':
        if (e.type !== 'delete' && isGlobal(e.object)) this.queue.dirty.add(e.object.id);
        if (e.type === 'delete') this.queue.wakeAt(e.object.id, undefined);
        break;
      case 'task':
        if (e.object.serviceId && e.type !== 'delete') this.queue.dirty.add(e.object.serviceId);
        break;
      case 'node':
        if (nodeChanged(e, { all: true })) this.allDirty = true;
        break;
    }
  }

  protected override beforeTake(tx: ReadTx): void {
    if (this.allDirty) for (const s of tx.find('service')) if (isGlobal(s)) this.queue.dirty.add(s.id);
    this.allDirty = false;
  }

  protected plan(tx: ReadTx, ids: string[], now: number): { work: Work[]; deferred: string[] } {
    const nodes = tx.find('node');
    const out: Work[] = [];
    for (const id of ids) {
      const service = tx.get('service', id);
      if (!service || !isGlobal(service)) continue;
      const result = reconcileGlobalService(service, tx.find('task', { serviceId: id }), nodes, now);
      this.queue.wakeAt(id, result.wakeAt);
      if (result.create.length + result.replace.length + result.shutdown.length > 0) out.push({ service, result });
    }
    // The write budget: what does not fit is recomputed next tick.
    const { kept, deferred } = applyWriteBudget(out, this.maxWrites);
    return { work: kept, deferred };
  }

  protected write(work: Work[], now: number): Promise<boolean> {
    return writeWork(this.store, work, (r) => ({ ...r, create: r.create.map((nodeId) => ({ slot: 0, nodeId })) }), now, this.newId);
  }
}

/** The global orchestrator as a leader-only controller (name "orchestrator/global"). */
export function globalOrchestratorController(opts: OrchestratorOptions = {}): Controller {
  return watchLoopController({
    name: 'orchestrator/global',
    component: 'manager/orchestrator/global',
    matchers: [onKind('service'), onKind('task'), onKind('node')],
    create: (deps) => new GlobalOrchestrator(deps.store, () => deps.clock.now(), opts),
  });
}
