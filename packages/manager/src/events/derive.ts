/**
 * Cluster events from store changes (pure): what `swarmctl events` shows, as `docker events`
 * does on a Swarm manager. One committed object change gives zero or more events; changes a user
 * would not call an event (a node's heartbeat-free refresh, a task's port status) give none.
 */
import {
  type ClusterEvent,
  type Node,
  type Service,
  type Task,
  NodeState,
  TaskState,
  nodeAvailabilityToJSON,
  nodeRoleToJSON,
  nodeStateToJSON,
  taskStateToJSON,
  updateStatus_StateToJSON,
  type UpdateStatus_State,
} from '@swarmd/proto';
import type { ObjectEvent } from '../store/events.js';

export const EVENT_TYPES = ['node', 'service', 'task', 'network'] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const EVENT_ACTIONS = ['create', 'update', 'remove', 'state'] as const;
export type EventAction = (typeof EVENT_ACTIONS)[number];

/** What derivation may look up (names of other objects, as the store has them now). */
export interface DeriveContext {
  nodeName(id: string): string | undefined;
}

const lower = (s: string, prefix: string): string => (s.startsWith(prefix) ? s.slice(prefix.length) : s).toLowerCase().replace(/_/g, '-');
export const taskStateName = (s: TaskState | undefined): string => lower(taskStateToJSON(s ?? TaskState.TASK_STATE_NEW), 'TASK_STATE_');
export const nodeStateName = (s: NodeState | undefined): string => lower(nodeStateToJSON(s ?? NodeState.NODE_STATE_UNKNOWN), 'NODE_STATE_');
const availabilityName = (n: Readonly<Node>): string => lower(nodeAvailabilityToJSON(n.spec?.availability ?? 0), 'NODE_AVAILABILITY_');
const roleName = (n: Readonly<Node>): string => lower(nodeRoleToJSON(n.role), 'NODE_ROLE_');
const updateStateName = (s: UpdateStatus_State | undefined): string => (s ? lower(updateStatus_StateToJSON(s), '') : '');

export function taskName(t: Readonly<Task>): string {
  const svc = t.serviceAnnotations?.name ?? '';
  return t.slot > 0 ? `${svc}.${t.slot}` : `${svc}.${t.nodeId}`;
}

function replicasOf(s: Readonly<Service>): string {
  return s.spec?.mode?.$case === 'replicated' ? String(s.spec.mode.replicated.replicas) : 'global';
}

/** The events one committed object change gives. */
export function deriveEvents(e: ObjectEvent, ctx: DeriveContext): ClusterEvent[] {
  const time = Number(e.timestamp ?? 0);
  const base = { time, version: e.version };
  const ev = (type: EventType, action: EventAction, id: string, name: string, attributes: Record<string, string>): ClusterEvent => ({ type, action, id, name, attributes, timeMs: base.time, version: base.version });
  const action = e.type === 'delete' ? 'remove' : e.type;
  switch (e.kind) {
    case 'node': {
      const n = e.object;
      const name = n.description?.hostname ?? '';
      if (e.type !== 'update') return [ev('node', action, n.id, name, { role: roleName(n), state: nodeStateName(n.status?.state), availability: availabilityName(n) })];
      const o = e.old;
      if (!o) return [];
      const out: ClusterEvent[] = [];
      if (o.status?.state !== n.status?.state) {
        out.push(ev('node', 'state', n.id, name, { 'state.old': nodeStateName(o.status?.state), 'state.new': nodeStateName(n.status?.state), ...(n.status?.message ? { message: n.status.message } : {}) }));
      }
      const changed: Record<string, string> = {};
      if (availabilityName(o) !== availabilityName(n)) Object.assign(changed, { 'availability.old': availabilityName(o), 'availability.new': availabilityName(n) });
      if (o.role !== n.role) Object.assign(changed, { 'role.old': roleName(o), 'role.new': roleName(n) });
      if (!!o.managerStatus?.leader !== !!n.managerStatus?.leader) Object.assign(changed, { 'leader.old': String(!!o.managerStatus?.leader), 'leader.new': String(!!n.managerStatus?.leader) });
      if (JSON.stringify(o.spec?.annotations?.labels ?? {}) !== JSON.stringify(n.spec?.annotations?.labels ?? {})) changed.labels = 'changed';
      if (Object.keys(changed).length > 0) out.push(ev('node', 'update', n.id, name, changed));
      return out;
    }
    case 'service': {
      const s = e.object;
      const name = s.spec?.annotations?.name ?? '';
      const image = s.spec?.task?.container?.image ?? '';
      if (e.type !== 'update') return [ev('service', action, s.id, name, { image, replicas: replicasOf(s) })];
      const o = e.old;
      if (!o) return [];
      const changed: Record<string, string> = {};
      if (o.specVersion !== s.specVersion) {
        const oldImage = o.spec?.task?.container?.image ?? '';
        if (oldImage !== image) Object.assign(changed, { 'image.old': oldImage, 'image.new': image });
        if (replicasOf(o) !== replicasOf(s)) Object.assign(changed, { 'replicas.old': replicasOf(o), 'replicas.new': replicasOf(s) });
        changed.spec = 'changed';
      }
      const us = updateStateName(o.updateStatus?.state);
      const un = updateStateName(s.updateStatus?.state);
      if (us !== un) {
        Object.assign(changed, { 'updatestate.old': us, 'updatestate.new': un });
        if (s.updateStatus?.message) changed['updatestate.message'] = s.updateStatus.message;
      }
      return Object.keys(changed).length > 0 ? [ev('service', 'update', s.id, name, changed)] : [];
    }
    case 'task': {
      const t = e.object;
      const common: Record<string, string> = {
        service: t.serviceAnnotations?.name ?? '',
        ...(t.nodeId ? { node: ctx.nodeName(t.nodeId) ?? t.nodeId, 'node.id': t.nodeId } : {}),
      };
      if (e.type !== 'update') return [ev('task', action, t.id, taskName(t), { ...common, state: taskStateName(t.status?.state), desired: taskStateName(t.desiredState) })];
      const o = e.old;
      if (!o) return [];
      const out: ClusterEvent[] = [];
      if (o.status?.state !== t.status?.state) {
        out.push(
          ev('task', 'state', t.id, taskName(t), {
            ...common,
            'state.old': taskStateName(o.status?.state),
            'state.new': taskStateName(t.status?.state),
            ...(t.status?.err ? { error: t.status.err } : t.status?.message ? { message: t.status.message } : {}),
          }),
        );
      }
      if (o.desiredState !== t.desiredState) out.push(ev('task', 'update', t.id, taskName(t), { ...common, 'desired.old': taskStateName(o.desiredState), 'desired.new': taskStateName(t.desiredState) }));
      return out;
    }
    case 'network': {
      const n = e.object;
      return [ev('network', action, n.id, n.spec?.annotations?.name ?? '', { driver: 'overlay', ...(n.vni ? { vni: String(n.vni) } : {}) })];
    }
    default:
      return [];
  }
}

/** What a caller asked for (EventsRequest, checked). */
export interface EventFilter {
  types: ReadonlySet<string>;
  names: ReadonlySet<string>;
  actions: ReadonlySet<string>;
  sinceMs: number;
  untilMs: number;
}

export function matchesFilter(e: ClusterEvent, f: EventFilter): boolean {
  return (
    (f.types.size === 0 || f.types.has(e.type)) &&
    (f.actions.size === 0 || f.actions.has(e.action)) &&
    (f.names.size === 0 || f.names.has(e.name) || f.names.has(e.id) || (e.type === 'task' && f.names.has(e.attributes.service ?? '')))
  );
}
