/**
 * When a task no longer matches its service (SwarmKit's orchestrator.IsTaskDirty). *pure*.
 *
 * A task is dirty when its TaskSpec differs from the service's `spec.task`, or its endpoint spec
 * (published ports) from the service's, compared as protobuf values (deep, map key order
 * ignored). `force_update` is part of the TaskSpec, so `service update --force` makes every task
 * dirty. A replicas-only change leaves the TaskSpec as it is: nothing is dirty. As in SwarmKit,
 * two differences do not call for a new task:
 *  - only the placement constraints changed, and the task's node satisfies the new ones;
 *  - only the registry credentials changed, and the task has already pulled its image
 *    (observed READY to RUNNING).
 */
import { type EndpointSpec, type Node, type Placement, type Service, type Task, type TaskSpec, EndpointSpec_ResolutionMode, TaskState } from '@swarmd/proto';
import { constraintsMatch, tryParseConstraints } from '../specs/constraint.js';
import { observedState } from './task.js';

/**
 * Deep equality of two values of generated proto types (plain objects, arrays, scalars, bytes).
 * A missing key equals an undefined one, and map (object) key order does not matter.
 */
export function protoEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a === null || b === null) return false;
  if (typeof a !== 'object' || typeof b !== 'object') return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    if (!(a instanceof Uint8Array && b instanceof Uint8Array) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!(Array.isArray(a) && Array.isArray(b)) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!protoEqual(a[i], b[i])) return false;
    return true;
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  for (const k of Object.keys(ra)) if (!protoEqual(ra[k], rb[k])) return false;
  for (const k of Object.keys(rb)) if (!(k in ra) && rb[k] !== undefined) return false;
  return true;
}

const NO_ENDPOINT: EndpointSpec = { mode: EndpointSpec_ResolutionMode.VIP, ports: [] };

/** Endpoint specs compared with "none" = VIP and no ports. */
export function endpointEqual(a: Readonly<EndpointSpec> | undefined, b: Readonly<EndpointSpec> | undefined): boolean {
  return protoEqual(a ?? NO_ENDPOINT, b ?? NO_ENDPOINT);
}

const NO_PLACEMENT: Placement = { constraints: [], preferences: [], platforms: [], maxReplicas: 0 };

/**
 * `want` with what may differ without making the task dirty taken from `have` (credentials of a
 * task that has pulled its image; constraints its node satisfies); no placement = an empty one.
 */
function forgiven(want: Readonly<TaskSpec>, have: Readonly<TaskSpec>, task: Readonly<Task>, node: Readonly<Node> | undefined): TaskSpec {
  const placement = want.placement ?? NO_PLACEMENT;
  const w: TaskSpec = { ...want, placement };
  const s = observedState(task);
  if (w.container && have.container && s >= TaskState.TASK_STATE_READY && s <= TaskState.TASK_STATE_RUNNING) w.container = { ...w.container, pullAuth: have.container.pullAuth };
  const hc = have.placement?.constraints ?? [];
  if (node && !protoEqual(placement.constraints, hc)) {
    const parsed = tryParseConstraints(placement.constraints);
    if (parsed && constraintsMatch(parsed, node)) w.placement = { ...placement, constraints: [...hc] };
  }
  return w;
}

/**
 * Whether `task` runs an older spec than `service` wants. `node` is the task's node (for the
 * constraints-only rule); without it a constraint change makes the task dirty.
 */
export function isTaskDirty(service: Readonly<Service>, task: Readonly<Task>, node?: Readonly<Node>): boolean {
  // Written for this very spec (spec_version moves with every service update).
  if (service.specVersion !== 0 && task.specVersion === service.specVersion) return false;
  if (!endpointEqual(service.spec?.endpoint, task.endpoint?.spec)) return true;
  const want = service.spec?.task;
  const have = task.spec;
  if (protoEqual(want, have)) return false;
  if (!want || !have) return true;
  return !protoEqual(forgiven(want, have, task, node), { ...have, placement: have.placement ?? NO_PLACEMENT });
}
