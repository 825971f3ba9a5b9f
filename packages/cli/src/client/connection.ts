import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '@swarmd/common/errors';
import { DEFAULT_HOST, defaultContextPath, readContext } from './context.js';

export { DEFAULT_HOST };

export interface ConnectionFlags {
  host?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  context?: string;
}

export interface Connection {
  /** gRPC target: unix:///path or IP:PORT. */
  target: string;
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
  /** The node whose manager we talk to, when known (`*` in node ls). */
  selfNodeId?: string;
  /** Where the settings came from, for error messages. */
  source: string;
  /**
   * The cluster's other managers (a context's `fallbackHosts`), asked when this one cannot take
   * a call (cut off, paused, in a minority, between leaders).
   */
  alternates?: Connection[];
}

/** The socket path of a unix host, or undefined for a TCP one. */
export function unixPath(host: string): string | undefined {
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  if (host.startsWith('unix:')) return host.slice('unix:'.length);
  if (isAbsolute(host)) return host;
  return undefined;
}

/**
 * How to reach the manager: `--host` (with the --tls* files for IP:PORT) wins; else the context
 * file (--context, $SWARMCTL_CONTEXT, ~/.swarmctl/context.json) if there is one; else the local
 * control socket.
 */
export async function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv): Promise<Connection> {
  let host = flags.host;
  let tls = { ca: flags.tlscacert, cert: flags.tlscert, key: flags.tlskey };
  let selfNodeId: string | undefined;
  let source = '--host';
  if (!host) {
    const path = flags.context ?? defaultContextPath(env);
    const ctx = await readContext(path, flags.context !== undefined);
    if (ctx) {
      host = ctx.host;
      tls = { ca: flags.tlscacert ?? ctx.tlscacert, cert: flags.tlscert ?? ctx.tlscert, key: flags.tlskey ?? ctx.tlskey };
      selfNodeId = ctx.nodeId;
      source = `context ${path}`;
      // A local cluster's context lists every manager's socket: start with the first one that
      // accepts connections; the others are alternates (asked when it cannot take a call).
      const all = [ctx.host, ...(ctx.fallbackHosts ?? [])];
      const alt = await firstListening(all);
      if (alt !== undefined && alt !== ctx.host) {
        host = alt;
        selfNodeId = undefined; // read from beside the socket below
      }
      const others = all.filter((h, i) => h !== host && all.indexOf(h) === i);
      const first = await resolveOne(host, tls, selfNodeId, source);
      first.alternates = await Promise.all(others.map((h) => resolveOne(h, tls, undefined, source)));
      return first;
    } else {
      host = DEFAULT_HOST;
      source = 'the default host';
    }
  }
  return resolveOne(host, tls, selfNodeId, source);
}

/** One manager's connection: a unix socket, or IP:PORT with the TLS files. */
async function resolveOne(host: string, tls: { ca?: string; cert?: string; key?: string }, selfNodeId: string | undefined, source: string): Promise<Connection> {
  const sock = unixPath(host);
  if (sock !== undefined) {
    if (!isAbsolute(sock)) throw invalidArgument(`--host ${host}: a unix socket path must be absolute`);
    selfNodeId ??= await nodeIdNextToSocket(sock);
    return socketConnection(sock, source, selfNodeId);
  }
  if (!/^[^\s/]+:\d{1,5}$/.test(host)) throw invalidArgument(`--host ${host}: expected unix:///path/to/control.sock or IP:PORT`);
  const missing = (['tlscacert', 'tlscert', 'tlskey'] as const).filter((k) => !tls[k === 'tlscacert' ? 'ca' : k === 'tlscert' ? 'cert' : 'key']);
  if (missing.length) {
    throw invalidArgument(
      `--host ${host} needs ${missing.map((m) => `--${m}`).join(', ')} (an admin certificate: swarmctl cluster admin-cert --out DIR)`,
    );
  }
  const [ca, cert, key] = await Promise.all([tls.ca!, tls.cert!, tls.key!].map((f) => readPem(f)));
  let credentials: grpc.ChannelCredentials;
  try {
    credentials = grpc.credentials.createSsl(ca, key, cert);
  } catch (e) {
    throw invalidArgument(`--tlscacert ${tls.ca} --tlscert ${tls.cert} --tlskey ${tls.key}: ${(e as Error).message}`);
  }
  return {
    target: host,
    credentials,
    // Manager certificates name the role, not the address we dial (see node-agent's tls.ts).
    options: { 'grpc.ssl_target_name_override': 'swarm-manager', 'grpc.default_authority': 'swarm-manager' },
    selfNodeId,
    source,
  };
}

/** A manager's local control socket (an absolute path): no TLS, the socket is root's. */
export function socketConnection(sock: string, source: string, selfNodeId?: string): Connection {
  return { target: `unix://${sock}`, credentials: grpc.credentials.createInsecure(), options: {}, selfNodeId, source };
}

async function readPem(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw invalidArgument(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** DIR/control.sock sits beside DIR/certs/node.pem: its CN is the manager's node id. */
async function nodeIdNextToSocket(sock: string): Promise<string | undefined> {
  try {
    const cert = new X509Certificate(await readFile(join(dirname(sock), 'certs', 'node.pem')));
    return /^CN=(.*)$/m.exec(cert.subject)?.[1];
  } catch {
    return undefined;
  }
}

/** The first unix-socket host that accepts a connection (TCP hosts are taken as they are). */
async function firstListening(hosts: readonly string[]): Promise<string | undefined> {
  for (const h of hosts) {
    const p = unixPath(h);
    if (p === undefined) return h;
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection(p);
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return h;
  }
  return undefined;
}
