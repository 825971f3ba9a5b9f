/**
 * TCP connections still open in a container's network namespace, read from /proc/PID/net/tcp and
 * tcp6 (the namespace's view): an endpoint's drain ends early once none is left.
 */
import { readFile } from 'node:fs/promises';

/** ESTABLISHED, SYN_RECV and CLOSE_WAIT (the peer closed, the server has not answered yet). */
const OPEN_STATES = new Set(['01', '03', '08']);

/** Connections in an open state in the text of /proc/net/tcp (or tcp6). */
export function countOpenConnections(procNetTcp: string): number {
  let n = 0;
  for (const line of procNetTcp.split('\n').slice(1)) {
    const st = line.trim().split(/\s+/)[3];
    if (st && OPEN_STATES.has(st)) n++;
  }
  return n;
}

/** Open TCP connections in the network namespace of `pid`; undefined when it cannot be read. */
export async function openConnections(pid: number): Promise<number | undefined> {
  if (!pid) return undefined;
  const texts = await Promise.all(['tcp', 'tcp6'].map((f) => readFile(`/proc/${pid}/net/${f}`, 'utf8').catch(() => undefined)));
  if (texts.every((t) => t === undefined)) return undefined;
  return texts.reduce((sum, t) => sum + (t ? countOpenConnections(t) : 0), 0);
}
