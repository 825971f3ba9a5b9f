/**
 * The leader's log broker: agents publish their tasks' output through Dispatcher.PublishLogs
 * (the dispatcher checks each record's task is assigned to the publishing node, and stamps the
 * node id from its certificate); the broker keeps the last `linesPerTask` lines of each task in
 * memory and fans new lines out to followers. Control.Logs reads from it (tail N, since, follow).
 *
 * In memory only: a new leader starts empty and fills as agents publish to it again.
 */
import type { LogLine, LogRecord, LogsRequest } from '@swarmd/proto';

export interface LogBrokerOptions {
  /** Lines kept per task (default 1000). */
  linesPerTask?: number;
  /** Tasks kept; the one written longest ago goes first (default 2000). */
  maxTasks?: number;
}

/** What the dispatcher needs: somewhere to put what a node published. */
export interface LogSink {
  publish(nodeId: string, records: readonly LogRecord[]): void;
}

export interface LogSelector {
  serviceIds?: readonly string[];
  taskIds?: readonly string[];
  nodeIds?: readonly string[];
  sinceMs?: number;
}

function matches(sel: LogSelector, l: LogLine): boolean {
  const anyOf = (want: readonly string[] | undefined, v: string) => !want?.length || want.includes(v);
  const byTask = !!sel.taskIds?.length;
  const byService = !!sel.serviceIds?.length;
  // Services and tasks named together: a line of either.
  const wanted = byTask && byService ? sel.taskIds!.includes(l.taskId) || sel.serviceIds!.includes(l.serviceId) : anyOf(sel.taskIds, l.taskId) && anyOf(sel.serviceIds, l.serviceId);
  return wanted && anyOf(sel.nodeIds, l.nodeId) && (!sel.sinceMs || l.timestamp >= sel.sinceMs);
}

export class LogBroker implements LogSink {
  private readonly byTask = new Map<string, LogLine[]>();
  private readonly followers = new Set<{ sel: LogSelector; onLine(l: LogLine): void }>();
  private readonly linesPerTask: number;
  private readonly maxTasks: number;

  constructor(o: LogBrokerOptions = {}) {
    this.linesPerTask = o.linesPerTask ?? 1000;
    this.maxTasks = o.maxTasks ?? 2000;
  }

  publish(nodeId: string, records: readonly LogRecord[]): void {
    for (const r of records) {
      const line: LogLine = { serviceId: r.serviceId, taskId: r.taskId, nodeId, timestamp: r.timestamp, stream: r.stream || 'stdout', data: r.data };
      let buf = this.byTask.get(r.taskId);
      if (buf) this.byTask.delete(r.taskId); // re-insert: the map's order is "least recently written first"
      else buf = [];
      this.byTask.set(r.taskId, buf);
      buf.push(line);
      if (buf.length > this.linesPerTask) buf.splice(0, buf.length - this.linesPerTask);
      while (this.byTask.size > this.maxTasks) this.byTask.delete(this.byTask.keys().next().value!);
      for (const f of this.followers) if (matches(f.sel, line)) f.onLine(line);
    }
  }

  /** The kept lines that match, oldest first, the last `tail` of them (tail < 0: all). */
  backlog(sel: LogSelector, tail: number): LogLine[] {
    const out: LogLine[] = [];
    for (const buf of this.byTask.values()) for (const l of buf) if (matches(sel, l)) out.push(l);
    out.sort((a, b) => a.timestamp - b.timestamp);
    return tail < 0 ? out : tail === 0 ? [] : out.slice(-tail);
  }

  /** New lines that match, as they come; returns the unsubscribe. */
  follow(sel: LogSelector, onLine: (l: LogLine) => void): () => void {
    const f = { sel, onLine };
    this.followers.add(f);
    return () => this.followers.delete(f);
  }

  /** Backlog then (with follow) live lines, in one synchronous step so nothing falls between. */
  open(req: Pick<LogsRequest, 'tail' | 'follow' | 'sinceMs'>, sel: LogSelector, onLine: (l: LogLine) => void): { backlog: LogLine[]; close(): void } {
    const s = { ...sel, sinceMs: req.sinceMs };
    const backlog = this.backlog(s, req.tail);
    const close = req.follow ? this.follow(s, onLine) : () => undefined;
    return { backlog, close };
  }

  /** Drops what is kept of these tasks (e.g. deleted ones). */
  forget(taskIds: readonly string[]): void {
    for (const id of taskIds) this.byTask.delete(id);
  }
}
