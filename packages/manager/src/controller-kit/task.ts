import {
  type Node,
  type Service,
  type Task,
  type TaskStatus,
  TaskState,
  NodeState,
  NodeAvailability,
  HealthState,
} from '@swarmd/proto';

/** The observed state (NEW when the task has no status yet). */
export const observedState = (t: Readonly<Task>): TaskState => t.status?.state ?? TaskState.TASK_STATE_NEW;
/** The orchestrator still wants this task to run. */
export const isRunnable = (t: Readonly<Task>): boolean => t.desiredState <= TaskState.TASK_STATE_RUNNING;
/** The task stopped, for whatever reason (observed state past RUNNING). */
export const isDead = (t: Readonly<Task>): boolean => observedState(t) > TaskState.TASK_STATE_RUNNING;
/** Running but reported unhealthy by its health check: handled as a failure. */
export const isUnhealthy = (t: Readonly<Task>): boolean =>
  observedState(t) === TaskState.TASK_STATE_RUNNING && t.status?.container?.health === HealthState.HEALTH_STATE_UNHEALTHY;
/** Running, wanted running, and healthy where a health check exists: DNS answers it, VIPs send to it. */
export const isReadyTask = (t: Readonly<Task>): boolean => {
  const health = t.status?.container?.health ?? HealthState.HEALTH_STATE_NONE;
  return observedState(t) === TaskState.TASK_STATE_RUNNING && t.desiredState === TaskState.TASK_STATE_RUNNING && health !== HealthState.HEALTH_STATE_STARTING && health !== HealthState.HEALTH_STATE_UNHEALTHY;
};
/** The agent may have it (it was handed to a node) and it has not stopped. */
export const mayBeRunningOnNode = (t: Readonly<Task>): boolean => {
  const s = observedState(t);
  return s >= TaskState.TASK_STATE_ASSIGNED && s <= TaskState.TASK_STATE_RUNNING;
};
export const createdAt = (t: Readonly<Task>): number => t.meta?.createdAt ?? 0;
export const updatedAt = (t: Readonly<Task>): number => t.meta?.updatedAt ?? 0;

export const isNodeDown = (n: Readonly<Node> | undefined): boolean => !n || n.status?.state === NodeState.NODE_STATE_DOWN;
export const isNodeDrained = (n: Readonly<Node>): boolean => n.spec?.availability === NodeAvailability.NODE_AVAILABILITY_DRAIN;
export const isNodeReady = (n: Readonly<Node>): boolean => n.status?.state === NodeState.NODE_STATE_READY;
export const isNodeActive = (n: Readonly<Node>): boolean => (n.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE) === NodeAvailability.NODE_AVAILABILITY_ACTIVE;

/** Why a task should leave its node, if it should: the node is gone, down or drained. */
export function nodeProblem(t: Readonly<Task>, nodes: ReadonlyMap<string, Readonly<Node>>): string | undefined {
  if (!t.nodeId) return undefined;
  const n = nodes.get(t.nodeId);
  if (!n) return `node ${t.nodeId} was removed`;
  if (n.status?.state === NodeState.NODE_STATE_DOWN) return `node ${t.nodeId} is down`;
  if (isNodeDrained(n)) return `node ${t.nodeId} is drained`;
  return undefined;
}

export function status(state: TaskState, now: number, message: string, err = ''): TaskStatus {
  return { timestamp: now, state, message, err, container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined };
}

/** The name `service ps` shows: web.3 (replicated) or web.<node id> (global). */
export function taskName(service: Readonly<Service>, slot: number, nodeId: string): string {
  const name = service.spec?.annotations?.name ?? service.id;
  return slot > 0 ? `${name}.${slot}` : `${name}.${nodeId}`;
}

/**
 * A new task of a service (SwarmKit's orchestrator.NewTask): the service's task spec copied,
 * desired RUNNING, observed NEW, the service's spec_version; `nodeId` for global services.
 */
export function newTask(service: Readonly<Service>, o: { id: string; slot: number; nodeId?: string; now: number }): Task {
  const spec = service.spec!;
  return {
    id: o.id,
    meta: undefined,
    spec: structuredClone(spec.task),
    serviceId: service.id,
    slot: o.slot,
    nodeId: o.nodeId ?? '',
    annotations: { name: taskName(service, o.slot, o.nodeId ?? ''), labels: {} },
    serviceAnnotations: structuredClone(spec.annotations),
    status: status(TaskState.TASK_STATE_NEW, o.now, 'created'),
    desiredState: TaskState.TASK_STATE_RUNNING,
    networks: [],
    endpoint: service.endpoint ? structuredClone(service.endpoint) : spec.endpoint ? { spec: structuredClone(spec.endpoint), ports: [], virtualIps: [] } : undefined,
    specVersion: service.specVersion,
    canary: undefined,
  };
}

/** Ordered by creation (then id): oldest first. */
export function byCreation(a: Readonly<Task>, b: Readonly<Task>): number {
  return createdAt(a) - createdAt(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
