// An in-test Control server on a unix socket holding services and tasks in memory (with Watch and
// Logs streams): enough to check what `swarmctl service|task …` sends and prints. On create and
// on a replica change it makes tasks at once, RUNNING, or PENDING with a scheduler reason when
// `stuck` is set. An update that changes the task spec plays a rolling update (update_status
// UPDATING, one slot every few ms, COMPLETED); an image under `bad/` pauses it at the first slot.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlService, type LogLine, Service, type ServiceSpec, Task, TaskState, UpdateStatus_State, WatchEvent, WatchEvent_Action } from '@swarmd/proto';
import { makeNode } from './fake-control.js';

export interface FakeServices {
  host: string;
  dir: string;
  services: Service[];
  tasks: Task[];
  calls: { method: string; request: unknown }[];
  /** New tasks stay PENDING with this reason. */
  stuck?: string;
  logs: LogLine[];
  stop(): Promise<void>;
}

const err = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });

export async function startFakeServices(): Promise<FakeServices> {
  const dir = await mkdtemp(join(tmpdir(), 'cli-services-'));
  const host = `unix://${join(dir, 'control.sock')}`;
  const watchers = new Set<{ serviceId: string; write(e: WatchEvent): void }>();
  let seq = 0;
  const nodes = [makeNode('node1aaaaaaa', 'h1', { manager: true, leader: true }), makeNode('node2bbbbbbb', 'h2')];
  const fs: FakeServices = {
    host,
    dir,
    services: [],
    tasks: [],
    calls: [],
    logs: [],
    stop: async () => {
      server.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
  const emit = (action: WatchEvent_Action, task: Task) => {
    for (const w of watchers) if (w.serviceId === task.serviceId) w.write(WatchEvent.fromPartial({ action, task, version: ++seq }));
  };
  const emitService = (s: Service) => {
    s.meta = { ...s.meta!, version: ++seq };
    for (const w of watchers) if (w.serviceId === s.id) w.write(WatchEvent.fromPartial({ action: WatchEvent_Action.UPDATE, service: s, version: seq }));
  };
  const newTask = (s: Service, slot: number): Task =>
    Task.fromPartial({
      id: `task${String(++seq).padStart(4, '0')}xxxxxxxxxxxxxxxxxxxx`,
      meta: { version: seq, createdAt: Date.now() + seq, updatedAt: Date.now() },
      spec: s.spec?.task,
      serviceId: s.id,
      slot,
      nodeId: fs.stuck ? '' : nodes[slot % 2].id,
      annotations: { name: `${s.spec?.annotations?.name}.${slot}` },
      serviceAnnotations: s.spec?.annotations,
      status: {
        timestamp: Date.now(),
        state: fs.stuck ? TaskState.TASK_STATE_PENDING : TaskState.TASK_STATE_RUNNING,
        message: fs.stuck ? 'pending task scheduling' : 'started',
        err: fs.stuck ?? '',
      },
      desiredState: TaskState.TASK_STATE_RUNNING,
      specVersion: s.specVersion,
    });
  /** A rolling update, one slot every 10 ms: the old task shut down, a new one running (or failed under `bad/`). */
  const rollOut = (s: Service) => {
    const version = s.specVersion;
    const old = fs.tasks.filter((t) => t.serviceId === s.id && t.desiredState === TaskState.TASK_STATE_RUNNING && t.specVersion < version);
    old.forEach((o, i) =>
      setTimeout(() => {
        if (s.specVersion !== version || s.updateStatus?.state !== UpdateStatus_State.UPDATING) return;
        o.desiredState = TaskState.TASK_STATE_SHUTDOWN;
        o.status = { ...o.status!, state: TaskState.TASK_STATE_SHUTDOWN };
        emit(WatchEvent_Action.UPDATE, o);
        const t = newTask(s, o.slot);
        fs.tasks.push(t);
        emit(WatchEvent_Action.CREATE, t);
        if (s.spec?.task?.container?.image.startsWith('bad/')) {
          t.status = { ...t.status!, state: TaskState.TASK_STATE_FAILED, err: 'task: non-zero exit (1)' };
          emit(WatchEvent_Action.UPDATE, t);
          s.updateStatus = { ...s.updateStatus, state: UpdateStatus_State.PAUSED, message: `update paused due to failure or early termination of task ${t.id} (${t.annotations!.name}: failed, task: non-zero exit (1))` };
          emitService(s);
        } else if (i === old.length - 1) {
          s.updateStatus = { ...s.updateStatus, state: UpdateStatus_State.COMPLETED, completedAt: Date.now(), message: 'update completed' };
          emitService(s);
        }
      }, 10 * (i + 1)),
    );
  };
  const reconcile = (s: Service) => {
    const want = s.spec?.mode?.$case === 'replicated' ? s.spec.mode.replicated.replicas : nodes.length;
    const live = fs.tasks.filter((t) => t.serviceId === s.id && t.desiredState === TaskState.TASK_STATE_RUNNING);
    for (const t of live.slice(want)) {
      t.desiredState = TaskState.TASK_STATE_SHUTDOWN;
      emit(WatchEvent_Action.UPDATE, t);
    }
    for (let slot = live.length + 1; slot <= want; slot++) {
      const t = newTask(s, slot);
      fs.tasks.push(t);
      // Reported in two steps, as an agent would.
      setTimeout(() => emit(WatchEvent_Action.CREATE, t), 5);
    }
  };
  const find = (ref: string) => fs.services.find((s) => s.id === ref || s.spec?.annotations?.name === ref);
  const unary: Record<string, (r: never) => unknown> = {
    listNodes: () => ({ nodes }),
    listServices: () => ({ services: fs.services }),
    getService: (r: { serviceId: string }) => {
      const s = find(r.serviceId);
      if (!s) throw err(grpc.status.NOT_FOUND, `service ${r.serviceId} not found`);
      return { service: s };
    },
    createService: (r: { spec: ServiceSpec }) => {
      if (fs.services.some((s) => s.spec?.annotations?.name === r.spec.annotations?.name)) throw err(grpc.status.ALREADY_EXISTS, `service name "${r.spec.annotations?.name}" is already in use`);
      const s = Service.fromPartial({ id: `svc${String(++seq).padStart(22, '0')}`, meta: { version: seq, createdAt: 1, updatedAt: 1 }, spec: r.spec, specVersion: 1 });
      if (!s.spec!.annotations!.name) s.spec!.annotations!.name = `gen${seq}`;
      fs.services.push(s);
      reconcile(s);
      return { service: s, warnings: r.spec.task?.container?.image.startsWith('offline/') ? ['image offline/x could not be accessed on a registry to record its digest'] : [] };
    },
    updateService: (r: { serviceId: string; serviceVersion: number; spec?: ServiceSpec; rollback: boolean }) => {
      const s = find(r.serviceId);
      if (!s) throw err(grpc.status.NOT_FOUND, 'not found');
      if (s.meta!.version !== r.serviceVersion) throw err(grpc.status.ABORTED, 'update out of sequence');
      const spec = r.rollback ? s.previousSpec! : r.spec!;
      const changed = JSON.stringify(spec.task) !== JSON.stringify(s.spec?.task);
      const updateStatus = changed ? { state: UpdateStatus_State.UPDATING, startedAt: Date.now(), completedAt: 0, message: 'update in progress', failedTaskIds: [] } : undefined;
      Object.assign(s, { previousSpec: s.spec, spec, specVersion: s.specVersion + 1, meta: { ...s.meta!, version: ++seq }, updateStatus });
      reconcile(s);
      if (changed) rollOut(s);
      return { service: s, warnings: [] };
    },
    removeService: (r: { serviceId: string }) => {
      const s = find(r.serviceId);
      if (!s) throw err(grpc.status.NOT_FOUND, `service ${r.serviceId} not found`);
      fs.services = fs.services.filter((x) => x !== s);
      return {};
    },
    getTask: (r: { taskId: string }) => {
      const t = fs.tasks.find((x) => x.id.startsWith(r.taskId));
      if (!t) throw err(grpc.status.NOT_FOUND, `task ${r.taskId} not found`);
      return { task: t };
    },
    listTasks: (r: { filters?: { serviceIds: string[]; nodeIds: string[]; desiredStates: TaskState[]; names: string[]; idPrefixes: string[] } }) => {
      const f = r.filters;
      return {
        tasks: fs.tasks.filter(
          (t) =>
            !f ||
            ((!f.serviceIds.length || f.serviceIds.includes(t.serviceId)) &&
              (!f.nodeIds.length || f.nodeIds.includes(t.nodeId)) &&
              (!f.desiredStates.length || f.desiredStates.includes(t.desiredState)) &&
              (!f.names.length || f.names.includes(t.annotations?.name ?? '')) &&
              (!f.idPrefixes.length || f.idPrefixes.some((p) => t.id.startsWith(p)))),
        ),
      };
    },
  };
  const impl: grpc.UntypedServiceImplementation = {};
  for (const name of Object.keys(ControlService)) {
    impl[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      fs.calls.push({ method: name, request: call.request });
      const h = unary[name];
      if (!h) return cb({ code: grpc.status.UNIMPLEMENTED, details: `${name} not in this fake` });
      try {
        cb(null, h(call.request as never));
      } catch (e) {
        cb(e as grpc.ServiceError);
      }
    };
  }
  impl.watch = (call: grpc.ServerWritableStream<{ serviceId: string }, WatchEvent>) => {
    const w = { serviceId: call.request.serviceId, write: (e: WatchEvent) => call.write(e) };
    watchers.add(w);
    call.on('cancelled', () => watchers.delete(w));
  };
  impl.logs = (call: grpc.ServerWritableStream<{ serviceIds: string[]; taskIds: string[]; tail: number }, LogLine>) => {
    fs.calls.push({ method: 'logs', request: call.request });
    const r = call.request;
    const lines = fs.logs.filter((l) => r.serviceIds.includes(l.serviceId) || r.taskIds.includes(l.taskId));
    for (const l of r.tail < 0 ? lines : lines.slice(-r.tail)) call.write(l);
    call.end();
  };
  const server = new grpc.Server();
  server.addService(ControlService, impl);
  await new Promise<void>((resolve, reject) => server.bindAsync(host, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  return fs;
}
