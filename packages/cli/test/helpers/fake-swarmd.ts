// A stand-in for swarmd in `local up` tests before (or besides) the real one: `init` serves a
// Control API on DIR/control.sock and a small HTTP registration endpoint on its listen address;
// `join` registers over the underlay (so the test proves hosts reach each other across namespaces)
// and idles. Every process leaves a `sleep` child behind, as containers would, which `local down`
// must find by network namespace.
import { spawn } from 'node:child_process';
import { createServer, request } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Cluster, ControlService, Node } from '@swarmd/proto';

const [cmd, ...rest] = process.argv.slice(2);
const flag = (n: string) => {
  const i = rest.indexOf(`--${n}`);
  return i >= 0 ? rest[i + 1] : undefined;
};
const stateDir = flag('state-dir')!;
const hostname = flag('hostname')!;
const listen = flag('listen-addr')!;
mkdirSync(stateDir, { recursive: true });
spawn('sleep', ['3600'], { stdio: 'ignore', detached: false });
process.on('SIGTERM', () => process.exit(0));

const node = (id: string, h: string, manager: boolean) =>
  Node.fromJSON({
    id,
    meta: { version: 1 },
    role: manager ? 'NODE_ROLE_MANAGER' : 'NODE_ROLE_WORKER',
    description: { hostname: h, engineVersion: 'fake' },
    status: { state: 'NODE_STATE_READY' },
    managerStatus: manager ? { leader: id === 'n1', reachability: 'REACHABLE', addr: listen } : undefined,
  });

if (cmd === 'init') {
  const nodes: Node[] = [node('n1', hostname, true)];
  const cluster = Cluster.fromJSON({ id: 'c1', meta: { version: 1 }, rootCa: { joinTokens: { worker: 'SWMTKN-1-fake-w', manager: 'SWMTKN-1-fake-m' } } });
  const [ip, port] = listen.split(':');
  createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const token = u.searchParams.get('token') ?? '';
    nodes.push(node(`n${nodes.length + 1}`, u.searchParams.get('hostname') ?? '?', token.endsWith('-m')));
    res.end('ok');
  }).listen(Number(port), ip);
  const server = new grpc.Server();
  server.addService(ControlService, {
    listNodes: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { nodes }),
    listClusters: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { clusters: [cluster] }),
  });
  server.bindAsync(`unix://${join(stateDir, 'control.sock')}`, grpc.ServerCredentials.createInsecure(), (e) => {
    if (e) throw e;
  });
} else if (cmd === 'join') {
  const target = rest[rest.length - 1];
  const token = flag('token')!;
  const [ip, port] = target.split(':');
  const tryJoin = () => {
    const r = request({ host: ip, port: Number(port), path: `/?hostname=${hostname}&token=${token}` }, (res) => res.resume());
    r.on('error', () => setTimeout(tryJoin, 200));
    r.end();
  };
  tryJoin();
  setInterval(() => undefined, 1 << 30);
} else {
  console.error(`fake swarmd: unknown command ${cmd}`);
  process.exit(2);
}
