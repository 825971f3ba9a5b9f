/**
 * `swarmctl web`: a read-only page of the cluster (nodes as columns, a card per task), fed by the
 * control API with the user's own credentials, as `kubectl proxy` or `nomad ui` do. One Watch
 * stream (every kind) keeps a view model; browsers get it over server-sent events: the whole
 * model when they connect, then each changed object. No polling: a node going down shows as
 * soon as the managers mark it (its heartbeat timeout). A broken stream (a leader change) is
 * opened again, re-reading everything first.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthState, NodeRole, NodeState, Rollout_State, TaskState } from '@swarmd/proto/gen/swarm/types';
import { type Node, type Service, type Task } from '@swarmd/proto/gen/swarm/objects';
import { type WatchEvent, WatchEvent_Action } from '@swarmd/proto/gen/swarm/control';
import { describeError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import type { Control } from '../client/control-client.js';
import { WEB_PAGE } from './page.js';
import { rolloutLine } from '../canary.js';

export interface NodeView {
  id: string;
  hostname: string;
  role: 'manager' | 'worker';
  leader: boolean;
  state: string;
  availability: string;
  cpus: number;
  memoryBytes: number;
}
export interface TaskView {
  id: string;
  serviceId: string;
  service: string;
  slot: number;
  nodeId: string;
  image: string;
  state: string;
  desired: string;
  health: string;
  since: number;
  err: string;
  cpus: number;
  memoryBytes: number;
  /** A canary task of a rollout. */
  canary: boolean;
}
export interface ServiceView {
  id: string;
  name: string;
  update: string;
  updateMessage: string;
  /** A canary rollout in progress: its step, weight and gate (`step 1 of 3 at 20% (waiting): …`); '' when none. */
  rollout: string;
}
export type Change = { kind: 'node'; removed: boolean; view: NodeView } | { kind: 'task'; removed: boolean; view: TaskView } | { kind: 'service'; removed: boolean; view: ServiceView };

const lower = (s: string, prefix: string) => s.slice(prefix.length).toLowerCase();

export function nodeView(n: Node): NodeView {
  return {
    id: n.id,
    hostname: n.description?.hostname ?? n.id,
    role: n.role === NodeRole.NODE_ROLE_MANAGER ? 'manager' : 'worker',
    leader: !!n.managerStatus?.leader,
    state: lower(NodeState[n.status?.state ?? NodeState.NODE_STATE_UNKNOWN], 'NODE_STATE_'),
    availability: ['active', 'pause', 'drain'][n.spec?.availability ?? 0] ?? 'active',
    cpus: Number(n.description?.resources?.nanoCpus ?? 0) / 1e9,
    memoryBytes: Number(n.description?.resources?.memoryBytes ?? 0),
  };
}

export function taskView(t: Task): TaskView {
  const image = t.spec?.container?.image ?? '';
  const h = t.status?.container?.health ?? HealthState.HEALTH_STATE_NONE;
  const res = t.spec?.resources?.reservations;
  return {
    id: t.id,
    serviceId: t.serviceId,
    service: t.serviceAnnotations?.name ?? t.serviceId,
    slot: t.slot,
    nodeId: t.nodeId,
    image: image.replace(/@sha256:[0-9a-f]+$/, ''),
    state: lower(TaskState[t.status?.state ?? TaskState.TASK_STATE_NEW], 'TASK_STATE_'),
    desired: lower(TaskState[t.desiredState], 'TASK_STATE_'),
    health: h === HealthState.HEALTH_STATE_NONE ? '' : lower(HealthState[h], 'HEALTH_STATE_'),
    since: Number(t.status?.timestamp ?? 0),
    err: t.status?.err ?? '',
    cpus: Number(res?.nanoCpus ?? 0) / 1e9,
    memoryBytes: Number(res?.memoryBytes ?? 0),
    canary: !!t.canary,
  };
}

export function serviceView(s: Service): ServiceView {
  const u = s.updateStatus;
  const r = s.rollout;
  const rolling = r && (r.state === Rollout_State.PROGRESSING || r.state === Rollout_State.WAITING || r.state === Rollout_State.PROMOTING);
  return {
    id: s.id,
    name: s.spec?.annotations?.name ?? s.id,
    update: u?.state ? ['', 'updating', 'paused', 'completed', 'rollback started', 'rollback paused', 'rollback completed'][u.state] ?? '' : '',
    updateMessage: u?.message ?? '',
    rollout: rolling ? rolloutLine(r) : '',
  };
}

function changeOf(e: WatchEvent): Change | undefined {
  const removed = e.action === WatchEvent_Action.REMOVE;
  if (e.node) return { kind: 'node', removed, view: nodeView(e.node) };
  if (e.task) return { kind: 'task', removed, view: taskView(e.task) };
  if (e.service) return { kind: 'service', removed, view: serviceView(e.service) };
  return undefined;
}

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves the page on `listen` (HOST:PORT; loopback unless told otherwise). `connect` opens a
 * Control client with the user's credentials (each time the watch is opened again).
 */
export async function startWebServer(o: { listen: string; connect: () => Promise<Control>; logger: Logger }): Promise<WebServer> {
  const nodes = new Map<string, NodeView>();
  const tasks = new Map<string, TaskView>();
  const services = new Map<string, ServiceView>();
  const clients = new Set<ServerResponse>();
  let stopped = false;
  let onStop: () => void = () => undefined;
  const stopping = new Promise<undefined>((r) => (onStop = () => r(undefined)));
  let current: { control: Control; close(): void } | undefined;

  const send = (res: ServerResponse, event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  const snapshot = () => ({ nodes: [...nodes.values()], tasks: [...tasks.values()], services: [...services.values()], now: Date.now() });
  const apply = (c: Change) => {
    const m = (c.kind === 'node' ? nodes : c.kind === 'task' ? tasks : services) as Map<string, typeof c.view>;
    if (c.removed) m.delete(c.view.id);
    else m.set(c.view.id, c.view);
    for (const res of clients) send(res, 'change', c);
  };

  // The watch first, then the lists: nothing is missed between the two (a change seen twice is harmless).
  const follow = async (): Promise<void> => {
    while (!stopped) {
      let control: Control | undefined;
      try {
        control = await o.connect();
        const ended = new Promise<Error | undefined>((resolve) => {
          const w = control!.watchKinds(['node', 'service', 'task'], (e) => {
            const c = changeOf(e);
            if (c) apply(c);
          }, resolve);
          current = { control: control!, close: () => w.close() };
        });
        const [ns, ss, ts] = await Promise.all([control.listNodes(), control.listServices(), control.listTasks()]);
        nodes.clear();
        services.clear();
        tasks.clear();
        for (const n of ns) nodes.set(n.id, nodeView(n));
        for (const s of ss) services.set(s.id, serviceView(s));
        for (const t of ts) tasks.set(t.id, taskView(t));
        for (const res of clients) send(res, 'snapshot', snapshot());
        const err = await Promise.race([ended, stopping]);
        if (!stopped) o.logger.warn(`the watch stream ended${err ? `: ${describeError(err)}` : ''}; opening it again`);
      } catch (err) {
        if (!stopped) o.logger.warn(`cannot read the cluster: ${describeError(err)}; trying again`);
      } finally {
        current?.close();
        control?.close();
        current = undefined;
      }
      if (!stopped) await Promise.race([sleep(1000), stopping]);
    }
  };

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end('read-only\n');
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(WEB_PAGE);
    } else if (path === '/api/state') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot()));
    } else if (path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      clients.add(res);
      send(res, 'snapshot', snapshot());
      req.on('close', () => clients.delete(res));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  const i = o.listen.lastIndexOf(':');
  const host = o.listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(o.listen.slice(i + 1));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`--listen ${o.listen}: ${describeError(err)}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  const loop = follow();
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/`,
    async close() {
      stopped = true;
      onStop();
      current?.close();
      for (const res of clients) res.end();
      clients.clear();
      await new Promise<void>((r) => server.close(() => r()));
      await loop;
    },
  };
}
