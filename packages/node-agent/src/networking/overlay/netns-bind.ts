/**
 * Sockets bound inside another network namespace. A process cannot listen in a netns it is not
 * in, so when the host's netns is not the agent's own (tests, benches: `hostNetns`), a short-lived
 * child (`nsenter --net=NS node netns-bind.js ADDR PORT`) binds a UDP socket and a TCP server
 * there and hands both back over its IPC channel (SCM_RIGHTS); it then exits and the sockets
 * stay the agent's. In the agent's own netns they are bound directly.
 *
 * Run as a script (the child side), this file binds and sends.
 */
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';

export interface BoundSockets {
  udp: Socket;
  tcp: Server;
}

async function bindHere(address: string, port: number): Promise<BoundSockets> {
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
  const child = spawn('nsenter', [`--net=${netns}`, process.execPath, fileURLToPath(import.meta.url), address, String(port)], {
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

// The child side: bind in this netns, send both handles, exit once the parent has them.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  const [address, port] = process.argv.slice(2);
  bindHere(address, Number(port)).then(
    ({ udp, tcp }) => {
      process.send!('udp', udp);
      process.send!('tcp', tcp);
      process.on('message', () => process.exit(0));
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
