import { ErrorCode, SwarmError } from '@swarmd/common/errors';
import { type Logger, nullLogger } from '@swarmd/common/logger';
import { type Node, type Service, type Task, TaskState, UpdateStatus_State } from '@swarmd/proto';
import type { MemoryStore, ReadTx, Tx } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import { onKind, type ObjectEvent } from '../store/events.js';
import { newId as defaultNewId } from '../ids.js';
import { type Controller, ServiceLoop, watchLoopController, batchOfAttempts, newTask, observedState, shutdownTask, DEFAULT_MAX_WRITES_PER_TICK, isCanaryPhase, isCanaryTask } from '../controller-kit/index.js';
import { planUpdate, type SlotReplacement, type TaskSeen, type UpdatePlan } from './plan.js';

export interface UpdaterOptions {
  /** Task ids (default: random SwarmKit-style ids). */
  newId?: () => string;
  /** Task writes per tick at most (default 2,000); the rest follows in the next ticks. */
  maxWritesPerTick?: number;
}

const conflict = (what: string): SwarmError => new SwarmError(ErrorCode.CONFLICT, `${what} changed since the update was planned`);

/** Trims a plan to a budget of task writes (a replacement costs 1 + its old tasks). Returns what it used. */
function capPlan(p: UpdatePlan, budget: number): { used: number; trimmed: boolean } {
  let left = budget;
  const take = <T>(l: T[], cost: (x: T) => number): T[] => {
    const kept: T[] = [];
    for (const x of l) {
      const c = cost(x);
      if (c > left) break;
      left -= c;
      kept.push(x);
    }
    return kept;
  };
  const before = p.replace.length + p.shutdown.length + p.start.length;
  p.shutdown = take(p.shutdown, () => 1);
  p.start = take(p.start, () => 1);
  p.replace = take(p.replace, (r) => 1 + r.old.length);
  return { used: budget - left, trimmed: p.replace.length + p.shutdown.length + p.start.length < before };
}

/**
 * The rolling updater (SwarmKit's orchestrator/update): watches services and tasks, and for each
 * service touched plans with the pure planUpdate (plan.ts) and writes the plan in one store
 * batch: the update status first, then one callback per slot (old tasks checked unchanged,
 * shut down, the new task created in the same slot or node), per start and per shutdown. Every
 * write checks that the service's spec_version is still the one planned against. All it keeps
 * in memory is when it saw tasks start running and stop (the monitor period and the delay are
 * measured on the injected clock); a new leader starts with what is running now.
 */
type Work = { service: Readonly<Service>; plan: UpdatePlan };

export class Updater extends ServiceLoop<Work> {
  private readonly dirty = this.queue.dirty;
  private readonly seen = new Map<string, TaskSeen>();
  /** Each service's spec version and whether an update or rollback is in progress (from its events). */
  private readonly services = new Map<string, { specVersion: number; active: boolean }>();
  private readonly newId: () => string;
  private readonly maxWrites: number;

  constructor(
    store: MemoryStore,
    now: () => number,
    opts: UpdaterOptions = {},
    private readonly log: Logger = nullLogger,
  ) {
    super(store, now);
    this.newId = opts.newId ?? (() => defaultNewId());
    this.maxWrites = Math.max(2, opts.maxWritesPerTick ?? DEFAULT_MAX_WRITES_PER_TICK);
  }

  init(tx: ReadTx): void {
    const now = this.now();
    for (const s of tx.find('service')) {
      this.dirty.add(s.id);
      this.noteService(s);
    }
    for (const t of tx.find('task')) {
      const st = observedState(t);
      if (st === TaskState.TASK_STATE_RUNNING) this.seen.set(t.id, { runningAt: now });
    }
  }

  onEvent(e: ObjectEvent): void {
    switch (e.kind) {
      case 'service':
        if (e.type === 'delete') {
          this.queue.wakeAt(e.object.id, undefined);
          this.services.delete(e.object.id);
        } else {
          this.dirty.add(e.object.id);
          this.noteService(e.object);
        }
        break;
      case 'task': {
        const t = e.object;
        if (e.type === 'delete') {
          this.seen.delete(t.id);
          break;
        }
        const st = observedState(t);
        const s = this.seen.get(t.id);
        if (st === TaskState.TASK_STATE_RUNNING && s?.runningAt === undefined) this.seen.set(t.id, { runningAt: this.now() });
        else if (st > TaskState.TASK_STATE_RUNNING && s?.endedAt === undefined) this.seen.set(t.id, { ...s, endedAt: this.now() });
        if (t.serviceId && this.mayMatter(t, e.old)) this.dirty.add(t.serviceId);
        break;
      }
      case 'node':
        this.queue.onNodeEvent(e, true);
        break;
    }
  }

  private noteService(s: Readonly<Service>): void {
    const st = s.updateStatus?.state;
    this.services.set(s.id, { specVersion: s.specVersion, active: st === UpdateStatus_State.UPDATING || st === UpdateStatus_State.ROLLBACK_STARTED });
  }

  /**
   * Whether a task's change can give its service's plan something to do. With no update in
   * progress, only a task of another spec version (an old task that may need replacing) or one
   * waiting READY for its slot can; every other change (the scheduler's assignments and the
   * status reports of a 20,000-task service) would re-plan all of its tasks for nothing.
   */
  private mayMatter(t: Readonly<Task>, old: Readonly<Task> | undefined): boolean {
    const s = this.services.get(t.serviceId);
    if (!s || s.active) return true;
    if (t.specVersion !== s.specVersion || (old !== undefined && old.specVersion !== s.specVersion)) return true;
    return t.desiredState < TaskState.TASK_STATE_RUNNING;
  }

  protected plan(tx: ReadTx, ids: string[], now: number): { work: Work[]; deferred: string[] } {
    const nodes = new Map<string, Readonly<Node>>(tx.find('node').map((n) => [n.id, n]));
    const out: Work[] = [];
    let budget = this.maxWrites;
    const deferred: string[] = [];
    for (const id of ids) {
      const service = tx.get('service', id);
      if (!service) continue;
      if (budget <= 1) {
        deferred.push(id);
        continue;
      }
      // At a canary step the old tasks stay (the rollout's); its canaries are never the updater's.
      if (isCanaryPhase(service)) continue;
      const tasks = tx.find('task', { serviceId: id }).filter((t) => !isCanaryTask(t));
      const plan = planUpdate({ service, tasks, nodes, now, seen: (taskId) => this.seen.get(taskId) });
      this.queue.wakeAt(id, plan.wakeAt);
      const cap = capPlan(plan, budget);
      budget -= cap.used;
      if (cap.trimmed) deferred.push(id);
      if (plan.status || plan.rollback || plan.replace.length + plan.shutdown.length + plan.start.length > 0) out.push({ service, plan });
    }
    return { work: out, deferred };
  }

  protected async write(work: Work[], now: number): Promise<boolean> {
    const failed = await batchOfAttempts(this.store, async (attempt) => {
      for (const { service, plan } of work) {
        const sameSpec = (tx: Tx): Readonly<Service> => {
          const cur = tx.get('service', service.id);
          if (!cur || cur.specVersion !== service.specVersion) throw conflict(`service ${service.id}`);
          return cur;
        };
        const rollback = plan.rollback;
        if (rollback) {
          await attempt((tx) => {
            const s = cloneObject('service', sameSpec(tx));
            if (!s.previousSpec) return;
            [s.spec, s.previousSpec] = [s.previousSpec, s.spec];
            s.specVersion = (s.specVersion || 1) + 1;
            s.updateStatus = { state: UpdateStatus_State.ROLLBACK_STARTED, startedAt: now, completedAt: 0, message: rollback.message, failedTaskIds: [] };
            tx.update('service', s);
          });
          continue;
        }
        const status = plan.status;
        if (status)
          await attempt((tx) => {
            const s = cloneObject('service', sameSpec(tx));
            s.updateStatus = status;
            tx.update('service', s);
          });
        for (const r of plan.replace) await attempt((tx) => this.replace(tx, sameSpec(tx), r, now));
        for (const s of plan.start)
          await attempt((tx) => {
            const cur = tx.get('task', s.task.id);
            if (!cur || cur.desiredState !== TaskState.TASK_STATE_READY) return;
            const c = cloneObject('task', cur);
            c.desiredState = TaskState.TASK_STATE_RUNNING;
            tx.update('task', c);
          });
        for (const s of plan.shutdown) await attempt((tx) => shutdownTask(tx, s.task, s.reason, now));
      }
    });
    for (const { service, plan } of work) this.logPlan(service, plan);
    return failed === 0;
  }

  /** One slot: the old tasks as planned, shut down (stop-first), and the new task of the current spec. */
  private replace(tx: Tx, service: Readonly<Service>, r: SlotReplacement, now: number): void {
    for (const o of r.old) {
      const cur = tx.get('task', o.id);
      if (!cur || cur.meta?.version !== o.meta?.version) throw conflict(`task ${o.id}`);
    }
    if (!r.startFirst) for (const o of r.old) shutdownTask(tx, o, 'replaced by a rolling update', now);
    const t = newTask(service, { id: this.newId(), slot: r.slot, ...(r.nodeId ? { nodeId: r.nodeId } : {}), now });
    if (!r.startNow) {
      t.desiredState = TaskState.TASK_STATE_READY;
      t.status = { ...t.status!, message: 'waiting for the task it replaces to stop' };
    }
    tx.create('task', t);
  }

  private logPlan(service: Readonly<Service>, plan: UpdatePlan): void {
    const name = service.spec?.annotations?.name ?? service.id;
    const st = plan.status;
    if (st && st.state !== service.updateStatus?.state) {
      const fields = { serviceId: service.id, name, specVersion: service.specVersion, status: st.message };
      if (st.state === UpdateStatus_State.PAUSED || st.state === UpdateStatus_State.ROLLBACK_PAUSED) this.log.warn(st.state === UpdateStatus_State.PAUSED ? 'update paused' : 'rollback paused', fields);
      else this.log.info(UpdateStatus_State[st.state].toLowerCase().replace(/_/g, ' '), fields);
    }
    if (plan.rollback) this.log.warn('update rolled back', { serviceId: service.id, name, why: plan.rollback.message });
    if (plan.replace.length) this.log.debug('replacing tasks', { serviceId: service.id, name, slots: plan.replace.map((r) => r.slot || r.nodeId) });
  }
}

/** The rolling updater as a leader-only controller (name "orchestrator/update"). */
export function updaterController(opts: UpdaterOptions = {}): Controller {
  return watchLoopController({
    name: 'orchestrator/update',
    component: 'manager/update',
    matchers: [onKind('service'), onKind('task'), onKind('node')],
    create: (deps, log) => new Updater(deps.store, () => deps.clock.now(), opts, log),
  });
}
