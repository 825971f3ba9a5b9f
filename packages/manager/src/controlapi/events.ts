/**
 * Control.Events: the cluster events this manager derived from the store (events/), replayed
 * from `since_ms` out of its kept history, then live until `until_ms` or the caller goes. Served
 * by the manager called (every manager derives the same events), so a leader change does not
 * end the stream.
 */
import { invalidArgument } from '@swarmd/common/errors';
import type { ClusterEvent, EventsRequest } from '@swarmd/proto';
import { EVENT_ACTIONS, EVENT_TYPES, matchesFilter, type EventFilter } from '../events/derive.js';
import type { EventHistory } from '../events/history.js';
import type { StreamSink } from '../rpc-kit/streams.js';

/** The request as a filter; INVALID_ARGUMENT naming a bad type, action or time. */
export function eventFilterOf(req: EventsRequest): EventFilter {
  for (const t of req.types) if (!(EVENT_TYPES as readonly string[]).includes(t)) throw invalidArgument(`events: unknown type "${t}" (${EVENT_TYPES.join(', ')})`);
  for (const a of req.actions) if (!(EVENT_ACTIONS as readonly string[]).includes(a)) throw invalidArgument(`events: unknown event "${a}" (${EVENT_ACTIONS.join(', ')})`);
  const sinceMs = Number(req.sinceMs);
  const untilMs = Number(req.untilMs);
  if (sinceMs < 0 || untilMs < 0) throw invalidArgument('events: since and until must not be negative');
  if (untilMs > 0 && sinceMs > untilMs) throw invalidArgument('events: since is after until');
  return { types: new Set(req.types), names: new Set(req.names), actions: new Set(req.actions), sinceMs, untilMs };
}

export function serveEvents(history: EventHistory, req: EventsRequest, sink: StreamSink<ClusterEvent>, now: () => number): void {
  const f = eventFilterOf(req);
  let timer: NodeJS.Timeout | undefined;
  const unfollow = history.follow(f.sinceMs, (e) => {
    if (sink.ended()) return;
    if (f.untilMs > 0 && Number(e.timeMs) > f.untilMs) return;
    if (matchesFilter(e, f)) sink.write(e);
  });
  sink.onClose(() => {
    unfollow();
    if (timer) clearTimeout(timer);
  });
  if (f.untilMs > 0) timer = setTimeout(() => sink.end(), Math.max(0, f.untilMs - now()));
}
