/** Tasks of the control API (after SwarmKit's controlapi/task.go): GetTask, ListTasks. Tasks are read-only to users. */
import { invalidArgument, notFound } from '@swarmd/common/errors';
import type { ListTasksRequest_Filters, Task } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { redactAuth } from './services.js';

/** A task by id or unique id prefix. */
export function resolveTask(tx: ReadTx, ref: string): Readonly<Task> {
  if (!ref) throw invalidArgument('task_id is required');
  const exact = tx.get('task', ref);
  if (exact) return exact;
  const byPrefix = tx.find('task').filter((t) => t.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw invalidArgument(`task "${ref}" is ambiguous: ${byPrefix.map((t) => t.id).join(', ')}`);
  throw notFound(`task ${ref} not found`);
}

/** A task as it leaves through the control API: registry credentials emptied. */
export function publicTask(t: Readonly<Task>): Readonly<Task> {
  // Stored objects are frozen and only encoded on the way out: no copy unless something changes
  // (a ListTasks of a 20,000-task service copied every task through the codec).
  const c = t.spec?.container;
  if (!c?.pullAuth) return t;
  return { ...t, spec: { ...t.spec!, container: { ...c, pullAuth: redactAuth(c.pullAuth) } } };
}

export function createTasksImpl(deps: { store: Store }) {
  const { store } = deps;
  async function getTask(req: { taskId: string }) {
    return { task: publicTask(store.view((tx) => resolveTask(tx, req.taskId))) };
  }

  async function listTasks(req: { filters?: ListTasksRequest_Filters }) {
    const f = req.filters;
    const tasks = store.view((tx) => (f?.serviceIds.length === 1 ? tx.find('task', { serviceId: f.serviceIds[0] }) : tx.find('task'))).filter((t) => {
      if (!f) return true;
      if (f.serviceIds.length && !f.serviceIds.includes(t.serviceId)) return false;
      if (f.nodeIds.length && !f.nodeIds.includes(t.nodeId)) return false;
      if (f.desiredStates.length && !f.desiredStates.includes(t.desiredState)) return false;
      if (f.idPrefixes.length && !f.idPrefixes.some((p) => t.id.startsWith(p))) return false;
      if (f.names.length && !f.names.some((n) => n.toLowerCase() === (t.annotations?.name ?? '').toLowerCase())) return false;
      return true;
    });
    return { tasks: tasks.map(publicTask) };
  }

  return { getTask, listTasks };
}
