/**
 * Ports published in mode=host by tasks on overlay networks, on two test hosts: the node's
 * HostNetworking (bridge layer owning the host ports, overlay layer attaching the task), a small
 * node server in the task's netns answering the address it sees, busybox `nc` clients.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { PortConfig_Protocol, PortConfig_PublishMode, type Task } from '@swarmd/proto';
import { requires, type Teardown } from '@swarmd/testkit';
import { BridgeNetworking } from '../src/networking/bridge-network.js';
import { NFT } from '../src/networking/host-exec.js';
import { vethName } from '../src/networking/overlay/model.js';
import { HostNetworking } from '../src/networking/task-networking.js';
import { overlayNet, overlayTask, stateSet } from './helpers/overlay-env.js';
import { at, setAll, twoNodes, type OverlayNode } from './helpers/overlay-hosts.js';

const rootTest = requires('root', 'netns', 'nft', 'busybox');

/** A task on one overlay network publishing `published` → `target` (tcp) in mode=host. */
const publishing = (id: string, address: string, networkId: string, published: number, target: number): Task => ({
  ...overlayTask(id, id.replace(/\d+$/, ''), [{ networkId, address }]),
  endpoint: {
    spec: undefined,
    ports: [{ name: '', protocol: PortConfig_Protocol.TCP, targetPort: target, publishedPort: published, publishMode: PortConfig_PublishMode.HOST }],
    virtualIps: [],
  },
});

/** The node's task networking as startWorker makes it: the bridge layer (host ports) and the overlay. */
function hostNetworking(t: Teardown, n: OverlayNode): HostNetworking {
  const bridge = new BridgeNetworking({ nodeId: n.nodeId, stateDir: n.host.stateDir, hostNetns: n.host.nsPath });
  t.teardown(() => bridge.destroy());
  return new HostNetworking(bridge, n.overlay);
}

/** A server in a netns answering each connection with the peer address it sees, until the test ends. */
async function peerEcho(t: Teardown, nsPath: string, port: number): Promise<void> {
  const c = spawn('nsenter', [`--net=${nsPath}`, process.execPath, '-e', `require('net').createServer((s) => s.end(s.remoteAddress + '\\n')).listen(${port}, '0.0.0.0')`], { stdio: 'ignore' });
  t.teardown(() => void c.kill('SIGKILL'));
  for (let i = 0; i < 100; i++) {
    if ((await run('nsenter', [`--net=${nsPath}`, 'ss', '-Hltn', `sport = :${port}`], { okCodes: [0, 1] })).stdout.includes(`:${port}`)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on :${port} in ${nsPath}`);
}

/** `nc` from a netns to addr:port: what the server said (exit 1 with nothing said: refused or no answer). */
const nc = async (nsPath: string, addr: string, port: number) =>
  (await run('nsenter', [`--net=${nsPath}`, 'busybox', 'nc', '-w', '3', addr, String(port)], { okCodes: [0, 1], timeoutMs: 10_000 })).stdout.trim();

const port = () => 20000 + Math.floor(Math.random() * 20000);

/**
 * Two hosts, a network `front` (VNI `vni`, 10.`vni − 4000`.0.0/24) and on the first host a task
 * web1 publishing a random host port P → 8080, with the peer-echo server on 8080.
 */
async function publishedWeb(t: Teardown, vni: number) {
  const { nodes } = await twoNodes(t);
  const [n1, n2] = nodes;
  const address = `10.${vni - 4000}.0.2/24`;
  await setAll(nodes, stateSet({ network: overlayNet('front', vni, `10.${vni - 4000}.0.0/24`), peers: [at(n1, 'web1', 'web', address)] }));
  const P = port();
  const host = hostNetworking(t, n1);
  const net = await host.attach(publishing('web1', address, 'front', P, 8080));
  await peerEcho(t, net.netnsPath!, 8080);
  return { n1, n2, host, net, P };
}

rootTest('overlay host ports: a task on an overlay network publishing mode=host answers on the host addresses, and sees an outside client as itself', async (t) => {
  const { n1, n2, net, P } = await publishedWeb(t, 4141);
  t.like(net.ports[0], { publishedPort: P, targetPort: 8080, publishMode: PortConfig_PublishMode.HOST, protocol: PortConfig_Protocol.TCP }, 'reported as the bridge path does (port_status)');

  t.is(await nc(n2.host.nsPath, n1.host.addr, P), n2.host.addr, "from another host: reaches the task with the client's own address (no SNAT)");
  t.is(await nc(n1.host.nsPath, n1.host.addr, P), n1.host.addr, "from the host itself, on its own address");
  t.not(await nc(n1.host.nsPath, '127.0.0.1', P), '', "from the host's 127.0.0.1");
  const table = (await n1.host.exec(NFT, ['list', 'ruleset'])).stdout;
  t.regex(table, new RegExp(`tcp dport ${P} dnat to 10\\.141\\.0\\.2:8080`));
  t.regex(table, /oifname "swob4141" ct status dnat accept/, 'the isolation lets DNATed connections in');
});

rootTest('overlay host ports: a second local task publishing the same host port is refused with a clear error', async (t) => {
  const { nodes } = await twoNodes(t);
  const [n1] = nodes;
  const front = overlayNet('front', 4142, '10.142.0.0/24');
  await setAll(nodes, stateSet({ network: front, peers: [at(n1, 'web1', 'web', '10.142.0.2/24'), at(n1, 'web2', 'web', '10.142.0.3/24')] }));
  const P = port();
  const host = hostNetworking(t, n1);
  await host.attach(publishing('web1', '10.142.0.2/24', 'front', P, 80));
  const err = await t.throwsAsync(host.attach(publishing('web2', '10.142.0.3/24', 'front', P, 80)));
  t.is(err?.message, `port ${P}/tcp is already published by task web1 on this node`);
  const links = (await n1.host.exec('ip', ['-o', 'link'])).stdout;
  t.true(links.includes(vethName('web1', 'front')));
  t.false(links.includes(vethName('web2', 'front')), 'refused before any link is made');
});

rootTest('overlay host ports: after the task is detached its host port no longer answers and its DNAT rule is gone', async (t) => {
  const { n1, n2, host, P } = await publishedWeb(t, 4143);
  t.is(await nc(n2.host.nsPath, n1.host.addr, P), n2.host.addr, 'answers while attached');

  await host.detach('web1');
  t.is(await nc(n2.host.nsPath, n1.host.addr, P), '', 'no answer after detach');
  t.notRegex((await n1.host.exec(NFT, ['list', 'ruleset'])).stdout, new RegExp(`dport ${P} dnat`));
});
