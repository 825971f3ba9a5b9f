/** Test helpers for the task runner: a temp runtime (images + containers), a registry with busybox, tasks. */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { TaskState, ContainerSpec, Task, type TaskSpec, type TaskStatus } from '@swarmd/proto';
import { ContainerService, ImageService, mountsUnder, removeCgroup } from '@swarmd/runtime';
import { buildBusyboxImage, killConmonsUnder, startRegistry, type ImageConfigInput, type LocalRegistry, type Teardown } from '@swarmd/testkit';
import type { AssignmentsEvent } from '../../src/assignments/worker.js';
import type { AssignmentSource } from '../../src/task-runner/task-supervisor.js';

export interface RuntimeEnv {
  root: string;
  instance: string;
  images: ImageService;
  containers: ContainerService;
  /** A second pair on the same root (an agent restart). */
  reopen(): Promise<{ images: ImageService; containers: ContainerService }>;
}

export async function newRuntimeEnv(t: Teardown): Promise<RuntimeEnv> {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-agent-'));
  const instance = `a${randomBytes(4).toString('hex')}`;
  const open = async () => {
    const containers = new ContainerService({ root, instance });
    const images = await new ImageService({ root, layerDirsInUse: () => containers.layerDirsInUse() }).init();
    return { images, containers };
  };
  const first = await open();
  const opened = [first.images];
  t.teardown(async () => {
    const svc = first.containers;
    for (const c of await svc.list().catch(() => [])) await svc.remove(c.id, { force: true }).catch(() => undefined);
    for (const r of await svc.runc.list().catch(() => [])) {
      await run(svc.runc.binary, ['--root', svc.runc.root, 'delete', '--force', r.id], { okCodes: [0, 1] }).catch(() => undefined);
    }
    await killConmonsUnder(root);
    for (const m of await mountsUnder(root).catch(() => [] as string[])) await run('umount', ['-l', m]).catch(() => undefined);
    await removeCgroup(svc.cgroupParent).catch(() => undefined);
    for (const i of opened) i.close();
    await rm(root, { recursive: true, force: true });
  });
  return {
    root,
    instance,
    ...first,
    reopen: async () => {
      const r = await open();
      opened.push(r.images);
      return r;
    },
  };
}

/** A local registry with busybox pushed as `<host>/test/busybox:1` (and variants by config). */
export async function registryWithBusybox(t: Teardown, images: ImageService, variants: Record<string, ImageConfigInput> = {}): Promise<{ reg: LocalRegistry; ref: (tag?: string) => string }> {
  const reg = await startRegistry({ t });
  await images.pushImage(`${reg.host}/test/busybox:1`, await buildBusyboxImage({ config: { Env: ['PATH=/bin'] } }));
  for (const [tag, config] of Object.entries(variants)) {
    await images.pushImage(`${reg.host}/test/busybox:${tag}`, await buildBusyboxImage({ config: { Env: ['PATH=/bin'], ...config } }));
  }
  return { reg, ref: (tag = '1') => `${reg.host}/test/busybox:${tag}` };
}

export function containerSpec(c: Partial<ContainerSpec> & { image: string }): ContainerSpec {
  return ContainerSpec.fromPartial(c);
}

export function makeTask(id: string, c: Partial<ContainerSpec> & { image: string }, o: Partial<TaskSpec> & { desiredState?: TaskState } = {}): Task {
  const { desiredState, ...spec } = o;
  return Task.fromPartial({
    id,
    spec: { container: containerSpec(c), ...spec },
    serviceId: `svc-${id}`,
    slot: 1,
    nodeId: 'node-1',
    desiredState: desiredState ?? TaskState.TASK_STATE_RUNNING,
  });
}

/** An in-test assignments source (the agent's Worker shape). */
export class FakeAssignments extends EventEmitter<{ assignments: [AssignmentsEvent] }> implements AssignmentSource {
  private set = new Map<string, Task>();
  constructor(tasks: Task[] = []) {
    super();
    for (const t of tasks) this.set.set(t.id, t);
  }
  tasks(): Task[] {
    return [...this.set.values()];
  }
  /** The managers' first complete set: the tasks given to the constructor (the persisted set). */
  confirm(): void {
    this.complete(this.tasks());
  }
  complete(tasks: Task[]): void {
    this.set = new Map(tasks.map((t) => [t.id, t]));
    this.emit('assignments', { tasks: this.tasks(), updated: tasks, removed: [], complete: true });
  }
  update(t: Task): void {
    this.set.set(t.id, t);
    this.emit('assignments', { tasks: this.tasks(), updated: [t], removed: [], complete: false });
  }
  remove(id: string): void {
    this.set.delete(id);
    this.emit('assignments', { tasks: this.tasks(), updated: [], removed: [id], complete: false });
  }
}

/** Collects every reported status per task. */
export class Reports {
  readonly byTask = new Map<string, TaskStatus[]>();
  readonly report = (taskId: string, s: TaskStatus): void => {
    const l = this.byTask.get(taskId) ?? [];
    l.push(s);
    this.byTask.set(taskId, l);
  };
  states(taskId: string): string[] {
    return (this.byTask.get(taskId) ?? []).map((s) => TaskState[s.state].replace('TASK_STATE_', ''));
  }
  last(taskId: string): TaskStatus | undefined {
    return this.byTask.get(taskId)?.at(-1);
  }
  /** Waits (polling; bounded only by the test timeout) until the task's last status satisfies `pred`. */
  async until(taskId: string, pred: (s: TaskStatus) => boolean, what = 'condition'): Promise<TaskStatus> {
    for (let i = 0; i < 3000; i++) {
      const s = this.last(taskId);
      if (s && pred(s)) return s;
      await sleep(20);
    }
    throw new Error(`task ${taskId}: no ${what}; states ${this.states(taskId).join(' → ')}; last ${JSON.stringify(this.last(taskId))}`);
  }
  state(taskId: string, state: TaskState): Promise<TaskStatus> {
    return this.until(taskId, (s) => s.state >= state, TaskState[state]);
  }
}
