import { describeError } from '@swarmd/common';
import type { Node, Service } from '@swarmd/proto';
import type { MemoryStore, ReadTx } from '../../store/memory-store.js';
import { onKind, type ObjectEvent } from '../../store/events.js';
import { newId as defaultNewId } from '../../ids.js';
import { type OrchestrationDeps, type StoreController, ServiceQueue, runWatchLoop, orchestrationLogger } from '../controller.js';
import { applyWriteBudget, writeWork, DEFAULT_MAX_WRITES_PER_TICK, RETRY_MS } from '../writes.js';
import { reconcileService, replicasOf } from './reconcile.js';

export interface OrchestratorOptions {
  /** Task ids (default: random SwarmKit-style ids). */
  newId?: () => string;
  /** Task writes per tick at most (default 2,000); the rest follows in the next ticks. */
  maxWritesPerTick?: number;
}

/**
 * The replicated orchestrator (SwarmKit's orchestrator/replicated): watches services, tasks and
 * nodes, marks services dirty, and on each commit reconciles the dirty ones with the pure
 * reconcileService, writing the result in one store batch (chunks of store.maxBatchActions).
 */
export class ReplicatedOrchestrator {
  private readonly queue = new ServiceQueue();
  private readonly dirty = this.queue.dirty;
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

  init(tx: ReadTx): void {
    for (const s of tx.find('service')) if (replicasOf(s) !== undefined) this.dirty.add(s.id);
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'service':
        if (e.type !== 'delete' && replicasOf(e.object) !== undefined) this.dirty.add(e.object.id);
        if (e.type === 'delete') this.queue.wakeAt(e.object.id, undefined);
        break;
      case 'task':
        if (e.object.serviceId && e.type !== 'delete') this.dirty.add(e.object.serviceId);
        break;
      case 'node':
        this.queue.onNodeEvent(e);
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
      const ids = this.queue.take(tx, now);
      if (ids.length === 0) return [];
      const nodes = new Map<string, Readonly<Node>>(tx.find('node').map((n) => [n.id, n]));
      const out: { service: Readonly<Service>; result: ReturnType<typeof reconcileService> }[] = [];
      for (const id of ids) {
        const service = tx.get('service', id);
        if (!service || replicasOf(service) === undefined) continue;
        const result = reconcileService(service, tx.find('task', { serviceId: id }), nodes, now);
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
    const written = await writeWork(this.store, work, (r) => ({ ...r, create: r.create.map((slot) => ({ slot })) }), now, this.newId);
    // Refused writes: a task changed meanwhile (the next commit brings it, and the service is
    // dirty again), or this member is losing leadership. Retry after a pause, never in a loop.
    if (!written) this.queue.retry(work.map((w) => w.service.id), now + RETRY_MS);
  }
}

/** The replicated orchestrator as a leader-only controller (name "orchestrator/replicated"). */
export function replicatedOrchestratorController(opts: OrchestratorOptions = {}): StoreController {
  return {
    name: 'orchestrator/replicated',
    async run(deps: OrchestrationDeps, signal: AbortSignal): Promise<void> {
      const o = new ReplicatedOrchestrator(deps.store, () => deps.clock.now(), opts);
      try {
        await runWatchLoop(
          deps,
          [onKind('service'), onKind('task'), onKind('node')],
          { init: (tx) => o.init(tx), onEvent: (e) => o.onEvent(e), tick: () => o.tick(), nextWake: () => o.nextWake(), more: () => o.more() },
          signal,
        );
      } catch (err) {
        if (!signal.aborted) orchestrationLogger(deps, 'manager/orchestrator/replicated').warn('loop ended', { error: describeError(err) });
        throw err;
      }
    },
  };
}
