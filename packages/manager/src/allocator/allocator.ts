/**
 * The allocator controller (SwarmKit's allocator): between the orchestrators and the scheduler.
 * It reacts to what can need an allocation (a network without a VNI, a service attaching to
 * networks, a task on overlay networks not placed yet, a task removed while another waits for an
 * address), plans with the pure planAllocation (plan.ts) over what the store holds, and writes
 * the plan in one batch; each write checks the object did not change since it was read.
 */
import { type Logger, nullLogger } from '@swarmd/common/logger';
import type { Task } from '@swarmd/proto';
import type { MemoryStore, ReadTx } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import { onKind, type ObjectEvent } from '../store/events.js';
import { type Controller, watchLoopController, batchOfAttempts, RETRY_MS, type WatchLoop } from '../controller-kit/index.js';
import { overlayTargets } from '../specs/networks.js';
import { planAllocation, type AllocationPlan } from './plan.js';

const hasOverlay = (t: Readonly<Task>): boolean => overlayTargets(t.spec).length > 0;

export class Allocator implements WatchLoop {
  private dirty = true;
  /** Something waits for an address: a removal may free one. */
  private waiting = false;
  private retryAt: number | undefined;

  constructor(
    private readonly store: MemoryStore,
    private readonly now: () => number,
    private readonly log: Logger = nullLogger,
  ) {}

  init(_tx: ReadTx): void {
    this.dirty = true;
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'network':
        if (e.type === 'create' || (e.type === 'update' && e.object.vni === 0)) this.dirty = true;
        break;
      case 'service':
        if (e.type === 'delete') {
          if (this.waiting) this.dirty = true;
        } else if (overlayTargets(e.object.spec?.task).length > 0 || (e.object.endpoint?.virtualIps.length ?? 0) > 0) this.dirty = true;
        break;
      case 'node':
        if (e.type === 'create' || e.type === 'delete') this.dirty = true;
        break;
      case 'task':
        if (e.type === 'delete') {
          if (this.waiting) this.dirty = true;
        } else if (e.type === 'create' && hasOverlay(e.object)) this.dirty = true;
        else if (e.type === 'update' && hasOverlay(e.object) && e.object.networks.length < overlayTargets(e.object.spec).length) this.dirty = true;
        break;
    }
  }

  nextWake(): number | undefined {
    return this.retryAt;
  }

  async tick(): Promise<void> {
    const now = this.now();
    if (this.retryAt !== undefined && this.retryAt <= now) {
      this.retryAt = undefined;
      this.dirty = true;
    }
    if (!this.dirty) return;
    this.dirty = false;
    const { plan, versions } = this.store.view((tx) => {
      const input = { networks: tx.find('network'), services: tx.find('service'), tasks: tx.find('task'), nodes: tx.find('node') };
      const versions = new Map<string, number>();
      for (const o of [...input.networks, ...input.services, ...input.tasks, ...input.nodes]) versions.set(o.id, o.meta?.version ?? 0);
      return { plan: planAllocation(input), versions };
    });
    this.waiting = plan.waiting.size > 0;
    if (plan.vnis.size + plan.vips.size + plan.attachments.size + plan.waiting.size + plan.nodeAttachments.size === 0) return;
    const failed = await this.write(plan, versions);
    if (failed > 0) this.retryAt = now + RETRY_MS;
  }

  private async write(plan: AllocationPlan, versions: Map<string, number>): Promise<number> {
    const same = (o: { id: string; meta?: { version: number } } | undefined): boolean => !!o && (o.meta?.version ?? 0) === versions.get(o.id);
    const failed = await batchOfAttempts(this.store, async (attempt) => {
      for (const [id, vni] of plan.vnis)
        await attempt((tx) => {
          const n = tx.get('network', id);
          if (!same(n)) throw new Error('changed');
          tx.update('network', { ...cloneObject('network', n!), vni });
        });
      for (const [id, vips] of plan.vips)
        await attempt((tx) => {
          const s = tx.get('service', id);
          if (!same(s)) throw new Error('changed');
          const c = cloneObject('service', s!);
          c.endpoint = { spec: c.endpoint?.spec ?? c.spec?.endpoint, ports: c.endpoint?.ports ?? [], virtualIps: vips };
          tx.update('service', c);
        });
      for (const [id, attachments] of plan.attachments)
        await attempt((tx) => {
          const t = tx.get('task', id);
          if (!same(t)) throw new Error('changed');
          const c = cloneObject('task', t!);
          c.networks = structuredClone(attachments);
          tx.update('task', c);
        });
      for (const [id, attachments] of plan.nodeAttachments)
        await attempt((tx) => {
          const n = tx.get('node', id);
          if (!same(n)) throw new Error('changed');
          tx.update('node', { ...cloneObject('node', n!), attachments: structuredClone(attachments) });
        });
      for (const [id, why] of plan.waiting)
        await attempt((tx) => {
          const t = tx.get('task', id);
          if (!same(t) || !t!.status || t!.status.err === why) return;
          tx.update('task', { ...cloneObject('task', t!), status: { ...t!.status, err: why } });
        });
    });
    if (plan.waiting.size) this.log.warn('tasks wait for addresses', { tasks: plan.waiting.size, reason: [...plan.waiting.values()][0] });
    return failed;
  }
}

/** The allocator as a leader-only controller (name "allocator"). */
export function allocatorController(): Controller {
  return watchLoopController({
    name: 'allocator',
    component: 'manager/allocator',
    matchers: [onKind('network'), onKind('service'), onKind('task'), onKind('node')],
    create: (deps, log) => new Allocator(deps.store, () => deps.clock.now(), log),
  });
}
