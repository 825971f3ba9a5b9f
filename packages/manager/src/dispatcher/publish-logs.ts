/**
 * Dispatcher.PublishLogs (client stream): an agent sends its tasks' output; each record whose task
 * is assigned to the caller (node id from the certificate) goes to the leader's LogSink with that
 * node id. Records of unknown tasks, or of tasks on other nodes, are dropped (counted in the log).
 */
import type * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import type { LogRecord, PublishLogsRequest, PublishLogsResponse } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';
import type { LogSink } from '../logs/log-broker.js';
import type { PeerIdentity } from '../ca/verify.js';

export interface PublishLogsDeps {
  store: Store;
  sink: LogSink | undefined;
  log: Logger;
  identify(call: grpc.ServerReadableStream<PublishLogsRequest, PublishLogsResponse>): Promise<PeerIdentity>;
  /** Throws when this manager is not the leader. */
  assertLeader(): void;
}

export async function publishLogs(call: grpc.ServerReadableStream<PublishLogsRequest, PublishLogsResponse>, d: PublishLogsDeps): Promise<PublishLogsResponse> {
  const id = await d.identify(call);
  d.assertLeader();
  let dropped = 0;
  for await (const msg of call as AsyncIterable<PublishLogsRequest>) {
    const ok: LogRecord[] = [];
    d.store.view((tx) => {
      for (const r of msg.records) {
        if (!r.taskId) throw invalidArgument('log record without a task_id');
        const t = tx.get('task', r.taskId);
        if (!t || t.nodeId !== id.nodeId) {
          dropped++;
          continue;
        }
        ok.push({ ...r, serviceId: t.serviceId });
      }
    });
    if (ok.length) d.sink?.publish(id.nodeId, ok);
  }
  if (dropped) d.log.debug('log records dropped (task unknown or not on the publishing node)', { nodeId: id.nodeId, dropped });
  return {};
}
