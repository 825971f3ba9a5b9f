/**
 * Watch (after SwarmKit's controlapi watch): store events of the kinds asked for, optionally of one
 * service and its tasks, streamed until the caller goes. Objects leave in their public form.
 */
import { invalidArgument } from '@swarmd/common/errors';
import { type Cluster, type Node, type Task, type WatchEvent, WatchEvent_Action, type WatchRequest } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';
import { type Kind, isKind, cloneObject } from '../store/kinds.js';
import type { EventMatcher } from '../store/events.js';
import { publicCluster } from '../rpc-kit/cluster.js';
import type { StreamSink } from '../rpc-kit/streams.js';
import { publicService } from './services.js';
import { publicTask } from './tasks.js';

function watchEventOf(e: { type: 'create' | 'update' | 'delete'; kind: Kind; object: unknown; version: number }): WatchEvent {
  const ev: WatchEvent = {
    action: e.type === 'create' ? WatchEvent_Action.CREATE : e.type === 'update' ? WatchEvent_Action.UPDATE : WatchEvent_Action.REMOVE,
    node: undefined,
    service: undefined,
    task: undefined,
    network: undefined,
    cluster: undefined,
    version: e.version,
  };
  switch (e.kind) {
    case 'node':
      ev.node = cloneObject('node', e.object as Node);
      break;
    case 'service':
      ev.service = publicService(e.object as never);
      break;
    case 'task':
      ev.task = publicTask(e.object as Task);
      break;
    case 'network':
      ev.network = cloneObject('network', e.object as never);
      break;
    case 'cluster':
      ev.cluster = publicCluster(e.object as Cluster);
      break;
  }
  return ev;
}

/** Checks a watch request before it is served or forwarded. */
export function checkWatchRequest(req: WatchRequest): void {
  for (const k of req.kinds) if (!isKind(k)) throw invalidArgument(`watch: unknown kind "${k}" (node, service, task, network, cluster)`);
}

/** Streams the leader's store events matching `req` into `sink` until it ends. */
export async function serveWatch(store: Store, req: WatchRequest, sink: StreamSink<WatchEvent>): Promise<void> {
  const kinds = new Set(req.kinds as Kind[]);
  const matcher: EventMatcher = (e) =>
    e.type !== 'commit' &&
    (kinds.size === 0 || kinds.has(e.kind)) &&
    (!req.serviceId || (e.kind === 'task' ? e.object.serviceId === req.serviceId : e.kind === 'service' ? e.object.id === req.serviceId : kinds.has(e.kind)));
  const events = store.watch(matcher);
  sink.onClose(() => void events.return?.());
  for await (const e of events) {
    if (sink.ended()) break;
    if (e.type === 'commit') continue;
    sink.write(watchEventOf(e));
  }
}
