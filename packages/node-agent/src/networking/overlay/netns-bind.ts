/**
 * Sockets bound inside another network namespace. A process cannot listen in a netns it is not
 * in, so when the host's netns is not the agent's own (tests, benches: `hostNetns`), a short-lived
 * child (`nsenter --net=NS node netns-bind-child.js ADDR PORT`) binds a UDP socket and a TCP
 * server there and hands both back over its IPC channel (SCM_RIGHTS); it then exits and the
 * sockets stay the agent's. In the agent's own netns they are bound directly.
 */
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';

/**
 * The child's script: beside this file, both in the build (dist/src/networking/overlay/) and in
 * swarmd's bundle, where it is an entry point of its own and every chunk sits in one folder.
 */
const CHILD = fileURLToPath(new URL('./netns-bind-child.js', import.meta.url));

export interface BoundSockets {
  udp: Socket;
  tcp: Server;
}

export async function bindHere(address: string, port: number): Promise<BoundSockets> {
  const udp = createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind({ address, port, exclusive: true }, () => {
      udp.off('error', reject);
      resolve();
    });
  });
  const tcp = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: address, port, exclusive: true }, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    udp.close();
    throw err;
  }
  return { udp, tcp };
}

/** Binds `address:port` (UDP and TCP) in `netns` (a path), or in the agent's own netns without one. */
export async function bindSockets(address: string, port: number, netns?: string): Promise<BoundSockets> {
  if (!netns) return bindHere(address, port);
  const child = spawn('nsenter', [`--net=${netns}`, process.execPath, CHILD, address, String(port)], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise<BoundSockets>((resolve, reject) => {
    const got: Partial<BoundSockets> = {};
    child.on('message', (m: unknown, handle: unknown) => {
      if (m === 'udp') got.udp = handle as Socket;
      if (m === 'tcp') got.tcp = handle as Server;
      if (got.udp && got.tcp) {
        child.send('done');
        resolve({ udp: got.udp, tcp: got.tcp });
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (got.udp && got.tcp) return;
      got.udp?.close();
      got.tcp?.close();
      reject(new Error(`binding ${address}:${port} in ${netns} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}
