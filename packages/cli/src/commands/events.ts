/**
 * `swarmctl events`: cluster events as `docker events` shows them on a Swarm manager, replayed
 * from the managers' kept history (--since) and then live until interrupted (or --until).
 */
import type { Argv } from 'yargs';
import type { ClusterEvent } from '@swarmd/proto/gen/swarm/control';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { UsageError } from '../errors.js';
import { parseTimeArg } from '../format.js';
import { out } from '../io.js';

const FILTER_KEYS = ['type', 'name', 'event'] as const;

export interface EventsFilters {
  types: string[];
  names: string[];
  actions: string[];
}

/** --filter type=service --filter name=web,event=update → the request's lists. */
export function eventFiltersOf(list: readonly string[]): EventsFilters {
  const f: EventsFilters = { types: [], names: [], actions: [] };
  for (const item of list.flatMap((x) => x.split(','))) {
    const i = item.indexOf('=');
    const k = item.slice(0, i);
    if (i <= 0 || !(FILTER_KEYS as readonly string[]).includes(k)) throw new UsageError(`--filter ${item}: expected ${FILTER_KEYS.map((x) => `${x}=...`).join(', ')}`, 'events');
    const v = item.slice(i + 1);
    if (!v) throw new UsageError(`--filter ${item}: no value`, 'events');
    (k === 'type' ? f.types : k === 'name' ? f.names : f.actions).push(v);
  }
  return f;
}

/** One line per event, as docker: TIME TYPE ACTION ID (name=..., k=v, ...). */
export function eventLine(e: ClusterEvent): string {
  const attrs = [`name=${e.name}`, ...Object.keys(e.attributes).sort().map((k) => `${k}=${e.attributes[k]}`)];
  return `${new Date(Number(e.timeMs)).toISOString()} ${e.type} ${e.action} ${e.id} (${attrs.join(', ')})`;
}

export function eventJson(e: ClusterEvent): string {
  return JSON.stringify({ time: new Date(Number(e.timeMs)).toISOString(), timeMs: Number(e.timeMs), type: e.type, action: e.action, id: e.id, name: e.name, attributes: e.attributes, version: Number(e.version) });
}

export function eventsCommand(y: Argv<GlobalArgs>, env: CommandEnv, describe: string): Argv<GlobalArgs> {
  return y.command(
    'events',
    describe,
    (yy) =>
      yy
        .parserConfiguration({ 'greedy-arrays': false })
        .option('since', { type: 'string', describe: "Replay the managers' kept events from this time (a duration like 10m, an RFC 3339 time, or unix seconds)" })
        .option('until', { type: 'string', describe: 'Stop at this time (same forms as --since)' })
        .option('filter', { alias: 'f', type: 'string', array: true, default: [] as string[], describe: 'type=node|service|task|network, name=NAME|ID, event=create|update|remove|state' }),
    env.action(async (a: GlobalArgs & { since?: string; until?: string; filter: string[] }) => {
      const now = Date.now();
      const time = (flag: string, v: string | undefined): number => {
        if (v === undefined) return 0;
        const t = parseTimeArg(v, now);
        if (t === undefined) throw new UsageError(`--${flag} ${v}: expected a duration (10m), an RFC 3339 time (2024-01-02T15:04:05Z) or unix seconds`, 'events');
        return t;
      };
      const sinceMs = time('since', a.since);
      const untilMs = time('until', a.until);
      if (untilMs > 0 && sinceMs > untilMs) throw new UsageError('--since is after --until', 'events');
      const f = eventFiltersOf(a.filter);
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await env.withControl(
          a,
          (c) => c.events({ sinceMs, untilMs, ...f }, (e) => out(env.io, a.format === 'json' ? eventJson(e) : eventLine(e)), stop.signal),
          0,
        );
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }),
  );
}
