// An in-test Dispatcher over mutual TLS, scripted per test: enough of the server side to drive
// the agent's session logic (the real one lives in @swarmd/manager).
import * as grpc from '@grpc/grpc-js';
import {
  DispatcherService,
  type AssignmentsMessage,
  type AssignmentsRequest,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type SessionMessage,
  type SessionRequest,
  type UpdateTaskStatusRequest,
  type UpdateTaskStatusResponse,
} from '@swarmd/proto';
import type { Pems } from './certs.js';

export interface FakeDispatcherScript {
  /** Messages to send on each new session; the stream then stays open. */
  onSession?(req: SessionRequest, n: number): SessionMessage[];
  periodMs?: number;
  assignments?(req: AssignmentsRequest): AssignmentsMessage[];
}

export interface FakeDispatcher {
  addr: string;
  sessions: SessionRequest[];
  heartbeats: HeartbeatRequest[];
  statuses: UpdateTaskStatusRequest[];
  openSessions: Set<grpc.ServerWritableStream<SessionRequest, SessionMessage>>;
  cancelled: number;
  /** Ends every open session stream (the manager stepping down, say). */
  endSessions(): void;
  kill(): void;
}

export async function startFakeDispatcher(caPem: string, pems: Pems, script: FakeDispatcherScript, port = 0): Promise<FakeDispatcher> {
  const server = new grpc.Server();
  const fd: FakeDispatcher = {
    addr: '',
    sessions: [],
    heartbeats: [],
    statuses: [],
    openSessions: new Set(),
    cancelled: 0,
    endSessions() {
      for (const s of fd.openSessions) s.end();
      fd.openSessions.clear();
    },
    kill() {
      server.forceShutdown();
    },
  };
  server.addService(DispatcherService, {
    session(call: grpc.ServerWritableStream<SessionRequest, SessionMessage>) {
      fd.sessions.push(call.request);
      fd.openSessions.add(call);
      call.on('cancelled', () => {
        fd.cancelled++;
        fd.openSessions.delete(call);
      });
      const msgs = script.onSession?.(call.request, fd.sessions.length) ?? [];
      for (const m of msgs) call.write(m);
      if (msgs.some((m) => m.redirectAddr)) {
        fd.openSessions.delete(call);
        call.end();
      }
    },
    heartbeat(call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>, cb: grpc.sendUnaryData<HeartbeatResponse>) {
      fd.heartbeats.push(call.request);
      cb(null, { periodMs: script.periodMs ?? 50 });
    },
    assignments(call: grpc.ServerWritableStream<AssignmentsRequest, AssignmentsMessage>) {
      if (!script.assignments) {
        call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'no assignments here' });
        return;
      }
      for (const m of script.assignments(call.request)) call.write(m);
    },
    updateTaskStatus(call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, UpdateTaskStatusResponse>, cb: grpc.sendUnaryData<UpdateTaskStatusResponse>) {
      fd.statuses.push(call.request);
      cb(null, {});
    },
    publishLogs(_call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb({ code: grpc.status.UNIMPLEMENTED });
    },
  });
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(caPem), [{ private_key: Buffer.from(pems.keyPem), cert_chain: Buffer.from(pems.certPem) }], true);
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, creds, (e, p) => (e ? reject(e) : resolve(p))));
  fd.addr = `127.0.0.1:${bound}`;
  return fd;
}
