import { describeError } from '@swarmd/common';
import type { Service } from '@swarmd/proto';
import type { MemoryStore, ReadTx } from '../../store/memory-store.js';
import { onKind, type ObjectEvent } from '../../store/events.js';
import { newId as defaultNewId } from '../../ids.js';
import { type OrchestrationDeps, type StoreController, ServiceQueue, nodeChanged, runWatchLoop, orchestrationLogger } from '../controller.js';
import { applyWriteBudget, writeWork, DEFAULT_MAX_WRITES_PER_TICK, RETRY_MS } from '../writes.js';
import type { OrchestratorOptions } from '../replicated/replicated.js';
import { reconcileGlobalService, isGlobal, type GlobalReconcileResult } from './reconcile.js';

/**
 * The global orchestrator (SwarmKit's orchestrator/global): one task per eligible node, created
 * with its node_id set (the scheduler then only checks that node). Any node change (joins,
 * leaves, drained, labels changed) makes every global service dirty.
 */
export class GlobalOrchestrator {
  private readonly queue = new ServiceQueue();
  private readonly dirty = this.queue.dirty;
  private allDirty = false;
  private readonly newId: () => string;
  private readonly maxWrites: number;
  private trimmed = false;

  constructor(
    private readonly store: MemoryStore,
    private readonly now: () => number,
    opts: OrchestratorOptions = {},
  ) {
    this.newId = opts.newId ?? (() => defaultNewId());
    this.maxWrites = Math.max(2, opts.maxWritesPerTick ?? DEFAULT_MAX_WRITES_PER_TICK);
  }

  /** Whether the last tick was cut short by the write budget. */
  more(): boolean {
    return this.trimmed;
  }

  init(_tx: ReadTx): void {
    this.allDirty = true;
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'service':
        if (e.type !== 'delete' && isGlobal(e.object)) this.dirty.add(e.object.id);
        if (e.type === 'delete') this.queue.wakeAt(e.object.id, undefined);
        break;
      case 'task':
        if (e.object.serviceId && e.type !== 'delete') this.dirty.add(e.object.serviceId);
        break;
      case 'node':
        if (nodeChanged(e, { all: true })) this.allDirty = true;
        break;
    }
  }

  nextWake(): number | undefined {
    return this.queue.nextWake();
  }

  async tick(): Promise<void> {
    this.trimmed = false;
    const now = this.now();
    const work = this.store.view((tx) => {
      if (this.allDirty) for (const s of tx.find('service')) if (isGlobal(s)) this.dirty.add(s.id);
      this.allDirty = false;
      const ids = this.queue.take(tx, now);
      if (ids.length === 0) return [];
      const nodes = tx.find('node');
      const out: { service: Readonly<Service>; result: GlobalReconcileResult }[] = [];
      for (const id of ids) {
        const service = tx.get('service', id);
        if (!service || !isGlobal(service)) continue;
        const result = reconcileGlobalService(service, tx.find('task', { serviceId: id }), nodes, now);
        this.queue.wakeAt(id, result.wakeAt);
        if (result.create.length + result.replace.length + result.shutdown.length > 0) out.push({ service, result });
      }
      // The write budget: what does not fit is recomputed next tick.
      const { kept, deferred } = applyWriteBudget(out, this.maxWrites);
      for (const id of deferred) this.dirty.add(id);
      this.trimmed = deferred.length > 0;
      return kept;
    });
    if (work.length === 0) return;
    const written = await writeWork(this.store, work, (r) => ({ ...r, create: r.create.map((nodeId) => ({ slot: 0, nodeId })) }), now, this.newId);
    // Refused writes: a task changed meanwhile (the next commit brings it, and the service is
    // dirty again), or this member is losing leadership. Retry after a pause, never in a loop.
    if (!written) this.queue.retry(work.map((w) => w.service.id), now + RETRY_MS);
  }
}

/** The global orchestrator as a leader-only controller (name "orchestrator/global"). */
export function globalOrchestratorController(opts: OrchestratorOptions = {}): StoreController {
  return {
    name: 'orchestrator/global',
    async run(deps: OrchestrationDeps, signal: AbortSignal): Promise<void> {
      const o = new GlobalOrchestrator(deps.store, () => deps.clock.now(), opts);
      try {
        await runWatchLoop(
          deps,
          [onKind('service'), onKind('task'), onKind('node')],
          { init: (tx) => o.init(tx), onEvent: (e) => o.onEvent(e), tick: () => o.tick(), nextWake: () => o.nextWake(), more: () => o.more() },
          signal,
        );
      } catch (err) {
        if (!signal.aborted) orchestrationLogger(deps, 'manager/orchestrator/global').warn('loop ended', { error: describeError(err) });
        throw err;
      }
    },
  };
}
