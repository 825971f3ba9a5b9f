/**
 * All three services of a manager's port in one call, in the shape a host registers
 * (ManagerServices in src/manager: `services` + leader-only `controllers`). ManagerContext
 * satisfies ManagerApiDeps, so `startManager({ services: [createManagerApi] })` wires them.
 */
import type * as grpc from '@grpc/grpc-js';
import { CaService, DispatcherService, NodeCaService } from '@swarmd/proto';
import { type Dispatcher, type DispatcherDeps, createDispatcherService } from '../dispatcher/dispatcher.js';
import type { Controller } from '../controller-kit/controller.js';
import { type CaServerDeps, type CaServices, createCaServices } from '../caserver/ca-server.js';
import { type ControlApi, type ControlDeps, ControlServiceDefinition, createControlService } from '../controlapi/control.js';
import { LogBroker } from '../logs/log-broker.js';

export interface ManagerApiDeps extends DispatcherDeps, ControlDeps, CaServerDeps {}

export interface ApiServiceRegistration {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  /** Serve on the mutual-TLS port (default true). */
  tcp?: boolean;
  /** Serve on DIR/control.sock (the Control handlers that admit every local caller). */
  controlSocket?: boolean;
}

export interface ManagerApi {
  services: ApiServiceRegistration[];
  controllers: Controller[];
  dispatcher: Dispatcher;
  control: ControlApi;
  ca: CaServices;
  /** The log broker PublishLogs feeds and Control.Logs reads (one per manager). */
  logs: LogBroker;
  stop(): Promise<void>;
}

export function createManagerApi(deps: ManagerApiDeps): ManagerApi {
  const logs = deps.logBroker ?? new LogBroker();
  const dispatcher = createDispatcherService({ ...deps, logBroker: logs });
  const control = createControlService({ ...deps, logBroker: logs });
  const ca = createCaServices(deps);
  return {
    services: [
      { definition: DispatcherService, implementation: dispatcher.server },
      { definition: ControlServiceDefinition, implementation: control.server },
      { definition: ControlServiceDefinition, implementation: control.local, tcp: false, controlSocket: true },
      { definition: CaService, implementation: ca.ca },
      { definition: NodeCaService, implementation: ca.nodeCa },
    ],
    controllers: [...dispatcher.controllers],
    dispatcher,
    control,
    ca,
    logs,
    stop: async () => {
      dispatcher.closeSessions('this manager is stopping');
      await dispatcher.flush().catch(() => undefined);
      control.close();
      ca.close();
    },
  };
}
