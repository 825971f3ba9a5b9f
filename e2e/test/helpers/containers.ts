// Looking inside a local cluster's containers from the test (root): find them by a mark in their
// command line, run a shell in their mount and network namespaces (their own busybox).
import { readdir, readFile } from 'node:fs/promises';
import { run } from '@swarmd/common';

/** Pids of this machine's containers whose command line carries `mark`. */
export async function pidsOf(mark: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('sh\0-c\0') && cmd.includes(`: ${mark};`)) out.push(Number(e));
  }
  return out;
}

/** Runs `script` with /bin/sh inside the container (its mount and network namespaces). */
export async function inContainer(pid: number, script: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run('nsenter', ['-t', String(pid), '-m', '-n', '--', '/bin/sh', '-c', script], { timeoutMs: 15_000 });
    return { code: 0, out: r.stdout };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    return { code: 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}${err.message}` };
  }
}

/** The addresses (without prefix) a name resolves to in the container, sorted. */
export async function lookup(pid: number, name: string): Promise<string[]> {
  const r = await inContainer(pid, `nslookup ${name} 2>/dev/null | sed -n 's/^Address[^:]*: *\\([0-9.]*\\).*/\\1/p'`);
  const servers = new Set((await inContainer(pid, `sed -n 's/^nameserver //p' /etc/resolv.conf`)).out.split(/\s+/).filter(Boolean));
  return r.out
    .split(/\s+/)
    .filter((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x) && !servers.has(x))
    .sort();
}

/** GET / of ADDR:8080 from inside the container over TCP (busybox nc: the image's static wget crashes). */
export async function httpGet(pid: number, addr: string, timeoutS = 5): Promise<{ code: number; out: string }> {
  const r = await inContainer(pid, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w ${timeoutS} ${addr} 8080`);
  return /hello from /.test(r.out) ? { code: 0, out: r.out.slice(r.out.indexOf('hello from ')) } : { code: 1, out: r.out };
}

/** GET / of `name`:8080: the name resolved by the container's resolver (busybox nslookup), then TCP. */
export async function fetchByName(pid: number, name: string): Promise<{ code: number; out: string }> {
  const [addr] = await lookup(pid, name);
  if (!addr) return { code: 1, out: `${name} does not resolve` };
  return httpGet(pid, addr);
}

