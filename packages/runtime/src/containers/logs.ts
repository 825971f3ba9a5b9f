/**
 * Reads a container's k8s-file log (conmon's format, as CRI-O writes it):
 *   2026-11-23T11:21:42.097404614+00:00 stdout F text
 * `F` ends a line, `P` is a partial line continued by the next entry of the same stream.
 */
import { open, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export type LogStream = 'stdout' | 'stderr';

export interface LogEntry {
  /** When the runtime read the line (millisecond precision). */
  time: Date;
  /** The same moment as written in the log (nanoseconds, RFC 3339). */
  timestamp: string;
  stream: LogStream;
  line: string;
}

export interface LogReadOptions {
  /** Keep reading as lines come, until the container has exited. */
  follow?: boolean;
  /** Only the last N lines (of what is there when reading starts). */
  tail?: number;
  /** Only lines at or after this time. */
  since?: Date | number;
  signal?: AbortSignal;
}

interface Piece {
  timestamp: string;
  stream: LogStream;
  partial: boolean;
  text: string;
}

export function parseK8sLogLine(line: string): Piece | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  const c = line.indexOf(' ', b + 1);
  if (a < 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  return { timestamp: line.slice(0, a), stream, partial: tag === 'P', text: c < 0 ? '' : line.slice(c + 1) };
}

/** RFC 3339 with up to 9 fractional digits → Date (ms). */
export function parseLogTime(ts: string): Date {
  return new Date(ts.replace(/(\.\d{3})\d*/, '$1'));
}

/** Joins partial pieces into whole lines, per stream. */
class Assembler {
  private pending = new Map<LogStream, Piece>();
  push(p: Piece): LogEntry | undefined {
    const prev = this.pending.get(p.stream);
    const merged = prev ? { ...prev, text: prev.text + p.text, partial: p.partial } : p;
    if (merged.partial) {
      this.pending.set(p.stream, merged);
      return undefined;
    }
    this.pending.delete(p.stream);
    return { time: parseLogTime(merged.timestamp), timestamp: merged.timestamp, stream: merged.stream, line: merged.text };
  }
  flush(): LogEntry[] {
    const out = [...this.pending.values()].map((p) => ({ time: parseLogTime(p.timestamp), timestamp: p.timestamp, stream: p.stream, line: p.text }));
    this.pending.clear();
    return out;
  }
}

/**
 * Lines of a log file. With `follow`, it polls for more until `isDone()` says the writer has
 * finished (then drains what is left); between polls it sleeps `pollMs`, or awaits `pause` when
 * given (e.g. a ChangeWaker that returns early when the file grows).
 */
export async function* readK8sLog(path: string, o: LogReadOptions, isDone: () => Promise<boolean>, pollMs = 100, pause?: () => Promise<void>): AsyncGenerator<LogEntry> {
  const since = o.since === undefined ? undefined : new Date(o.since).getTime();
  const keep = (e: LogEntry) => since === undefined || e.time.getTime() >= since;
  const asm = new Assembler();

  // What is there now (tail applies to it).
  let text = await readFile(path, 'utf8').catch(() => '');
  let offset = Buffer.byteLength(text);
  const cut = text.lastIndexOf('\n') + 1;
  let rest = text.slice(cut);
  offset -= Buffer.byteLength(rest);
  text = text.slice(0, cut);
  rest = '';
  const first: LogEntry[] = [];
  for (const l of text.split('\n')) {
    const p = l ? parseK8sLogLine(l) : undefined;
    const e = p && asm.push(p);
    if (e && keep(e)) first.push(e);
  }
  if (!o.follow) for (const e of asm.flush()) if (keep(e)) first.push(e); // a last line without newline
  yield* o.tail !== undefined ? first.slice(Math.max(0, first.length - o.tail)) : first;
  if (!o.follow) return;

  const fh = await open(path, 'r').catch(() => undefined);
  try {
    for (;;) {
      if (o.signal?.aborted) return;
      const done = await isDone(); // ask before reading, so nothing written before the exit is missed
      let buf = '';
      if (fh) {
        const chunk = Buffer.alloc(64 * 1024);
        for (;;) {
          const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          buf += chunk.subarray(0, bytesRead).toString('utf8');
        }
      }
      if (buf) {
        const all = rest + buf;
        const end = all.lastIndexOf('\n') + 1;
        rest = all.slice(end);
        for (const l of all.slice(0, end).split('\n')) {
          const p = l ? parseK8sLogLine(l) : undefined;
          const e = p && asm.push(p);
          if (e && keep(e)) yield e;
        }
      }
      if (done) {
        for (const e of asm.flush()) if (keep(e)) yield e;
        return;
      }
      if (!buf) await (pause ? pause() : sleep(pollMs, undefined, { signal: o.signal }).catch(() => undefined));
    }
  } finally {
    await fh?.close();
  }
}
