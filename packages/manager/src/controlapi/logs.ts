/**
 * Logs: a service's or task's output from the leader's log broker (logs/), the last lines then,
 * with `follow`, new ones until the caller goes.
 */
import { invalidArgument } from '@swarmd/common/errors';
import type { LogLine, LogsRequest } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';
import type { LogBroker } from '../logs/log-broker.js';
import type { StreamSink } from '../rpc-kit/streams.js';
import { resolveService } from './services.js';

export function serveLogs(store: Store, broker: LogBroker, req: LogsRequest, sink: StreamSink<LogLine>): void {
  if (req.serviceIds.length === 0 && req.taskIds.length === 0) throw invalidArgument('logs: name at least one service or task');
  const serviceIds = store.view((tx) => req.serviceIds.map((ref) => resolveService(tx, ref).id));
  const taskIds = store.view((tx) => req.taskIds.map((ref) => tx.get('task', ref)?.id ?? ref));
  const sub = broker.open(req, { serviceIds, taskIds, nodeIds: req.nodeIds }, (l) => sink.write(l));
  sink.onClose(() => sub.close());
  for (const l of sub.backlog) sink.write(l);
  if (!req.follow) sink.end();
}
