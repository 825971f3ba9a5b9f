/** The services/tasks/logs part of the Control API swarmctl uses, as promises and streams. */
import * as grpc from '@grpc/grpc-js';
import {
  ControlClient,
  type ListServicesRequest_Filters,
  type ListTasksRequest_Filters,
  type LogLine,
  type Node,
  type Service,
  type ServiceSpec,
  type Task,
  type WatchEvent,
} from '@swarmd/proto';
import { invalidArgument, notFound } from '@swarmd/common';
import type { Connection } from './connection.js';
import { unaryCaller } from './rpc.js';

export interface ServiceControl {
  createService(spec: ServiceSpec, noResolveImage: boolean): Promise<{ service: Service; warnings: string[] }>;
  updateService(req: { serviceId: string; version: number; spec?: ServiceSpec; rollback?: boolean; noResolveImage?: boolean }): Promise<{ service: Service; warnings: string[] }>;
  getService(serviceId: string): Promise<Service>;
  listServices(filters?: Partial<ListServicesRequest_Filters>): Promise<Service[]>;
  removeService(serviceId: string): Promise<void>;
  getTask(taskId: string): Promise<Task>;
  listTasks(filters?: Partial<ListTasksRequest_Filters>): Promise<Task[]>;
  listNodes(): Promise<Node[]>;
  /** Events of one service and of its tasks; `close()` ends the stream. */
  watchService(serviceId: string, onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): { close(): void };
  logs(req: { serviceIds: string[]; taskIds?: string[]; follow: boolean; tail: number; sinceMs?: number }, onLine: (l: LogLine) => void): Promise<void>;
  close(): void;
}

export function connectServiceControl(conn: Connection, timeoutMs = 60_000): ServiceControl {
  const client = new ControlClient(conn.target, conn.credentials, conn.options);
  const call = unaryCaller(client, timeoutMs);
  const must = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`the manager returned no ${what}`);
    return v;
  };
  return {
    async createService(spec, noResolveImage) {
      const r = await call<{ service?: Service; warnings: string[] }>('createService', { spec, noResolveImage });
      return { service: must(r.service, 'service'), warnings: r.warnings };
    },
    async updateService(req) {
      const r = await call<{ service?: Service; warnings: string[] }>('updateService', {
        serviceId: req.serviceId,
        serviceVersion: req.version,
        spec: req.spec,
        rollback: req.rollback ?? false,
        noResolveImage: req.noResolveImage ?? false,
      });
      return { service: must(r.service, 'service'), warnings: r.warnings };
    },
    async getService(serviceId) {
      return must((await call<{ service?: Service }>('getService', { serviceId })).service, 'service');
    },
    async listServices(filters) {
      const f = filters ? { names: [], idPrefixes: [], labels: {}, namePrefixes: [], ...filters } : undefined;
      return (await call<{ services: Service[] }>('listServices', { filters: f })).services;
    },
    async removeService(serviceId) {
      await call('removeService', { serviceId });
    },
    async getTask(taskId) {
      return must((await call<{ task?: Task }>('getTask', { taskId })).task, 'task');
    },
    async listTasks(filters) {
      const f = filters ? { serviceIds: [], nodeIds: [], desiredStates: [], idPrefixes: [], names: [], ...filters } : undefined;
      return (await call<{ tasks: Task[] }>('listTasks', { filters: f })).tasks;
    },
    async listNodes() {
      return (await call<{ nodes: Node[] }>('listNodes', {})).nodes;
    },
    watchService(serviceId, onEvent, onEnd) {
      const s = client.watch({ kinds: ['service', 'task'], serviceId, includeOldObject: false });
      let closed = false;
      s.on('data', (e: WatchEvent) => onEvent(e));
      s.on('error', (e: grpc.ServiceError) => {
        if (!closed) onEnd(e);
      });
      s.on('end', () => {
        if (!closed) onEnd();
      });
      return {
        close: () => {
          closed = true;
          s.cancel();
        },
      };
    },
    logs(req, onLine) {
      return new Promise((resolve, reject) => {
        const s = client.logs({ serviceIds: req.serviceIds, taskIds: req.taskIds ?? [], follow: req.follow, tail: req.tail, sinceMs: req.sinceMs ?? 0, nodeIds: [] });
        s.on('data', (l: LogLine) => onLine(l));
        s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
        s.on('end', () => resolve());
      });
    },
    close: () => client.close(),
  };
}

export const serviceName = (s: Service): string => s.spec?.annotations?.name ?? '';

/** A service named on the command line: exact id, exact name, else a unique id prefix. */
export function pickService(services: readonly Service[], ref: string): Service {
  if (!ref) throw invalidArgument('empty service name');
  const byId = services.find((s) => s.id === ref);
  if (byId) return byId;
  const byName = services.find((s) => serviceName(s) === ref);
  if (byName) return byName;
  const byPrefix = services.filter((s) => s.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) {
    throw invalidArgument(`service ${ref} is ambiguous (id prefix of ${byPrefix.length} services: ${byPrefix.map((s) => `${s.id} (${serviceName(s)})`).join(', ')}); use more of the id`);
  }
  throw notFound(`service ${ref} not found`);
}

export async function resolveService(c: ServiceControl, ref: string): Promise<Service> {
  return pickService(await c.listServices(), ref);
}
