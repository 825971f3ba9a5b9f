/**
 * Overlay networks on two test hosts (network namespaces on an underlay bridge), each with the
 * agent's overlay layer programming real bridges, vxlan devices, veths and nft tables from a
 * hand-built NetworkStateSet, and real containers (busybox) where a task's view matters.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { run } from '@swarmd/common';
import { TaskState, type Task } from '@swarmd/proto';
import { requires, type TestHost, type Teardown } from '@swarmd/testkit';
import { ContainerExecutor } from '../src/executor/container-executor.js';
import { taskNetns } from '../src/networking/bridge-network.js';
import { NFT } from '../src/networking/host-exec.js';
import { OverlayNetworking } from '../src/networking/overlay/overlay-networking.js';
import { HostNetworking } from '../src/networking/task-networking.js';
import { startTaskSupervisor } from '../src/task-runner/task-supervisor.js';
import { FakeAssignments, newRuntimeEnv, registryWithBusybox, Reports, type RuntimeEnv } from './helpers/executor-env.js';
import { overlayNet, overlayTask, service, stateSet } from './helpers/overlay-env.js';
import { at, inNs, setAll, twoNodes, type OverlayNode as Node } from './helpers/overlay-hosts.js';

const rootTest = requires('root', 'netns', 'nft');
const containerTest = requires('root', 'netns', 'nft', 'runc', 'conmon', 'registry', 'busybox');

const hostLinks = async (h: TestHost) => (await h.exec('ip', ['-o', 'link'])).stdout;

/** Runs a container task per node with the overlay as its networking; resolves once all are RUNNING. */
async function runContainers(t: Teardown, env: RuntimeEnv, placed: { node: Node; tasks: Task[] }[]): Promise<void> {
  const reports = new Reports();
  for (const { node, tasks } of placed) {
    const executor = new ContainerExecutor({ images: env.images, containers: env.containers, nodeId: node.nodeId, networking: new HostNetworking(undefined, node.overlay) });
    const assignments = new FakeAssignments(tasks);
    const sup = await startTaskSupervisor({ executor, assignments, report: reports.report });
    t.teardown(async () => {
      assignments.complete([]);
      await sup.idle();
      await sup.stop();
    });
    assignments.confirm();
  }
  for (const { tasks } of placed) for (const task of tasks) await reports.state(task.id, TaskState.TASK_STATE_RUNNING);
}

/** A command in a container, retried while it fails (a server may need a moment to listen). */
async function retryExec(env: RuntimeEnv, id: string, argv: string[], tries = 20): Promise<string> {
  let last = '';
  for (let i = 0; i < tries; i++) {
    const r = await env.containers.exec(id, argv, { timeoutMs: 5000 }).catch((e: unknown) => ({ exitCode: -1, stdout: '', stderr: String(e) }));
    if (r.exitCode === 0) return r.stdout.trim();
    last = r.stdout + r.stderr;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${argv.join(' ')} in ${id}: ${last}`);
}

/** A busybox container task on one overlay network: an httpd answering hello-from-ID, or a sleeper. */
const container = (kind: 'httpd' | 'sleep', id: string, svc: string, address: string, networkId: string, ref: string) =>
  overlayTask(id, svc, [{ networkId, address }], {
    image: ref,
    command: kind === 'httpd' ? ['sh', '-c', `mkdir -p /www && echo hello-from-${id} > /www/index.html && exec httpd -f -p 80 -h /www`] : ['sleep', '1000'],
    stopGracePeriodMs: 300,
  });
const httpd = (id: string, svc: string, address: string, networkId: string, ref: string) => container('httpd', id, svc, address, networkId, ref);
const sleeper = (id: string, svc: string, address: string, networkId: string, ref: string) => container('sleep', id, svc, address, networkId, ref);

/** Two nodes, a runtime and a registry with busybox. */
async function withContainers(t: Teardown): Promise<{ nodes: [Node, Node]; env: RuntimeEnv; ref: (tag?: string) => string }> {
  const { nodes } = await twoNodes(t);
  const env = await newRuntimeEnv(t);
  const { ref } = await registryWithBusybox(t, env.images);
  return { nodes, env, ref };
}

containerTest('overlay: two tasks on one network on different hosts reach each other over TCP by address, by service name and by tasks.NAME', async (t) => {
  const { nodes, env, ref } = await withContainers(t);
  const [n1, n2] = nodes;
  const front = overlayNet('front', 4101, '10.91.0.0/24');
  await setAll(nodes, stateSet({ network: front, peers: [at(n1, 'web1', 'web', '10.91.0.2/24'), at(n2, 'client1', 'client', '10.91.0.3/24')], services: [service('web', { dnsrr: true })] }));
  await runContainers(t, env, [
    { node: n1, tasks: [httpd('web1', 'web', '10.91.0.2/24', 'front', ref())] },
    { node: n2, tasks: [sleeper('client1', 'client', '10.91.0.3/24', 'front', ref())] },
  ]);

  t.regex(await retryExec(env, 'client1', ['cat', '/etc/resolv.conf']), /^nameserver 10\.91\.0\.1$/m, "the container's resolver is its host's, on the gateway");
  t.is(await retryExec(env, 'client1', ['wget', '-qO-', 'http://10.91.0.2/']), 'hello-from-web1', 'by address, across hosts over VXLAN');
  t.regex(await retryExec(env, 'client1', ['nslookup', 'web']), /Address: 10\.91\.0\.2/);
  t.regex(await retryExec(env, 'client1', ['nslookup', 'tasks.web']), /Address: 10\.91\.0\.2/);
  t.is(await retryExec(env, 'client1', ['wget', '-qO-', 'http://web/']), 'hello-from-web1', 'by service name');
  t.is(await retryExec(env, 'client1', ['wget', '-qO-', 'http://tasks.web/']), 'hello-from-web1', 'by tasks.NAME');
  t.is(await retryExec(env, 'web1', ['sh', '-c', 'ip -o -4 addr show eth0 | grep -o "10.91.0.2/24" && cat /sys/class/net/eth0/address']), '10.91.0.2/24\n02:42:0a:5b:00:02');
});

containerTest('overlay: a task on another overlay network cannot reach the tasks of a network, nor resolve their names', async (t) => {
  const { nodes, env, ref } = await withContainers(t);
  const [n1, n2] = nodes;
  const front = overlayNet('front', 4102, '10.92.0.0/24');
  const other = overlayNet('other', 4103, '10.93.0.0/24');
  await setAll(
    nodes,
    stateSet(
      { network: front, peers: [at(n1, 'web1', 'web', '10.92.0.2/24'), at(n2, 'client1', 'client', '10.92.0.3/24')], services: [service('web', { dnsrr: true })] },
      { network: other, peers: [at(n1, 'intruder1', 'intruder', '10.93.0.2/24'), at(n2, 'intruder2', 'intruder', '10.93.0.3/24')] },
    ),
  );
  await runContainers(t, env, [
    { node: n1, tasks: [httpd('web1', 'web', '10.92.0.2/24', 'front', ref()), sleeper('intruder1', 'intruder', '10.93.0.2/24', 'other', ref())] },
    { node: n2, tasks: [sleeper('client1', 'client', '10.92.0.3/24', 'front', ref()), sleeper('intruder2', 'intruder', '10.93.0.3/24', 'other', ref())] },
  ]);
  t.is(await retryExec(env, 'client1', ['wget', '-qO-', 'http://10.92.0.2/']), 'hello-from-web1', 'the network itself works');
  for (const id of ['intruder1', 'intruder2']) {
    const r = await env.containers.exec(id, ['nc', '-w', '2', '10.92.0.2', '80'], { timeoutMs: 8000 }).catch(() => ({ exitCode: -1 }));
    t.not(r.exitCode, 0, `${id} (same host as web1: ${id === 'intruder1'}) cannot connect`);
    const ns = await env.containers.exec(id, ['nslookup', 'web'], { timeoutMs: 8000 });
    t.regex(ns.stdout + ns.stderr, /NXDOMAIN/, `${id} cannot resolve web`);
  }
});

rootTest('overlay: a new set with a peer added and one removed changes the DNS answers and the FDB and neighbour entries', async (t) => {
  const { nodes } = await twoNodes(t);
  const [n1, n2] = nodes;
  const front = overlayNet('front', 4104, '10.94.0.0/24');
  const client = at(n1, 'client1', 'client', '10.94.0.9/24');
  await setAll(nodes, stateSet({ network: front, peers: [client, at(n2, 'web1', 'web', '10.94.0.2/24'), at(n2, 'web2', 'web', '10.94.0.3/24')] }));
  const { netnsPath } = await n1.overlay.attach(overlayTask('client1', 'client', [{ networkId: 'front', address: '10.94.0.9/24' }]));
  const fdb = async () => (await n1.host.exec('bridge', ['fdb', 'show', 'dev', 'swox4104'])).stdout;
  const neigh = async () => (await n1.host.exec('ip', ['neigh', 'show', 'dev', 'swox4104'])).stdout;
  const lookup = async () => (await inNs(netnsPath!, ['nslookup', 'tasks.web', '10.94.0.1'])).stdout;

  t.regex(await fdb(), new RegExp(`02:42:0a:5e:00:02 dst ${n2.host.addr} self permanent`));
  t.regex(await fdb(), /02:42:0a:5e:00:03 dst/);
  t.regex(await neigh(), /10\.94\.0\.3 lladdr 02:42:0a:5e:00:03 PERMANENT/);
  t.regex(await lookup(), /10\.94\.0\.3/);

  // web2 leaves, web3 arrives (and web1 stops being ready: still reachable, no longer answered).
  await setAll(nodes, stateSet({ network: front, peers: [client, at(n2, 'web1', 'web', '10.94.0.2/24', { ready: false }), at(n2, 'web3', 'web', '10.94.0.4/24')] }));
  const answer = await lookup();
  t.regex(answer, /10\.94\.0\.4/);
  t.notRegex(answer, /10\.94\.0\.3/);
  t.notRegex(answer, /10\.94\.0\.2/);
  t.notRegex(await fdb(), /02:42:0a:5e:00:03/);
  t.regex(await fdb(), /02:42:0a:5e:00:04 dst/);
  t.regex(await fdb(), /02:42:0a:5e:00:02 dst/, 'a peer not ready keeps its entries');
  t.notRegex(await neigh(), /10\.94\.0\.3 /);
  t.regex(await neigh(), /10\.94\.0\.4 lladdr 02:42:0a:5e:00:04 PERMANENT/);
});

rootTest('overlay: the last local task leaving a network removes its bridge, vxlan device, nft table and resolver', async (t) => {
  const { nodes } = await twoNodes(t);
  const [n1] = nodes;
  const front = overlayNet('front', 4105, '10.95.0.0/24');
  await setAll(nodes, stateSet({ network: front, peers: [at(n1, 'a1', 'a', '10.95.0.2/24'), at(n1, 'b1', 'b', '10.95.0.3/24')] }));
  // A netns of the task left by an earlier life of the agent (with an eth0 in it) is made anew.
  const stale = taskNetns(n1.nodeId, 'a1').netns;
  await run('ip', ['netns', 'add', stale]);
  t.teardown(() => run('ip', ['netns', 'del', stale], { okCodes: [0, 1] }));
  await run('ip', ['-n', stale, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth9']);
  const a = await n1.overlay.attach(overlayTask('a1', 'a', [{ networkId: 'front', address: '10.95.0.2/24' }]));
  await n1.overlay.attach(overlayTask('b1', 'b', [{ networkId: 'front', address: '10.95.0.3/24' }]));
  t.regex((await inNs(a.netnsPath!, ['ping', '-c', '1', '-W', '2', '10.95.0.3'])).stdout, /1 packets received/, 'two local tasks on the bridge');
  t.regex((await inNs(a.netnsPath!, ['nslookup', 'b', '10.95.0.1'])).stdout, /10\.95\.0\.3/);

  t.true(await n1.overlay.detach('a1'));
  t.regex(await hostLinks(n1.host), /swob4105/, 'the network stays while a task is on it');
  t.true(await n1.overlay.detach('b1'));
  const links = await hostLinks(n1.host);
  t.notRegex(links, /swob4105|swox4105|swov/);
  t.notRegex((await n1.host.exec(NFT, ['list', 'tables'])).stdout, /swarmd_overlay/);
  t.false((await run('ip', ['netns', 'list'])).stdout.includes(a.netnsPath!.split('/').pop()!), "the task's netns is gone");
  const ss = (await n1.host.exec('ss', ['-lnu'])).stdout;
  t.notRegex(ss, /10\.95\.0\.1:53/, 'the resolver no longer listens on the gateway');
  t.false(await n1.overlay.detach('a1'), 'detaching again: not ours any more');
});

rootTest('overlay: an internal network has no route out, while a network that is not internal reaches the underlay masqueraded', async (t) => {
  const { hosts, nodes } = await twoNodes(t);
  const [n1] = nodes;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const srv = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => s.end(q.socket.remoteAddress)).listen(${port}, '${hosts.gateway}', () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void srv.kill('SIGKILL'));
  await once(srv.stdout, 'data');
  const priv = overlayNet('private', 4106, '10.96.0.0/24', { internal: true });
  const pub = overlayNet('public', 4107, '10.97.0.0/24');
  await setAll(nodes, stateSet({ network: priv, peers: [at(n1, 'i1', 'i', '10.96.0.2/24')] }, { network: pub, peers: [at(n1, 'p1', 'p', '10.97.0.2/24')] }));
  const inner = await n1.overlay.attach(overlayTask('i1', 'i', [{ networkId: 'private', address: '10.96.0.2/24' }]));
  const outer = await n1.overlay.attach(overlayTask('p1', 'p', [{ networkId: 'public', address: '10.97.0.2/24' }]));
  const url = `http://${hosts.gateway}:${port}/`;

  t.is((await inNs(outer.netnsPath!, ['wget', '-qO-', url])).stdout.trim(), n1.host.addr, 'masqueraded to the host address');
  t.notRegex((await inNs(inner.netnsPath!, ['ip', 'route'])).stdout, /default/, 'no default route');
  const direct = await inNs(inner.netnsPath!, ['nc', '-w', '2', hosts.gateway, String(port)]);
  t.not(direct.code, 0, 'cannot connect out');
  // Even with a route added by hand, the host forwards nothing out of an internal network.
  await inNs(inner.netnsPath!, ['ip', 'route', 'add', 'default', 'via', '10.96.0.1']);
  const forced = await inNs(inner.netnsPath!, ['nc', '-w', '2', hosts.gateway, String(port)]);
  t.not(forced.code, 0, 'dropped by the nft table');
});

rootTest('overlay: destroy (swarmd cleanup) removes every device, task netns, table and socket with tasks still attached', async (t) => {
  const { nodes } = await twoNodes(t);
  const [n1, n2] = nodes;
  const nets = [overlayNet('front', 4108, '10.98.0.0/24'), overlayNet('back', 4109, '10.99.0.0/24')];
  await setAll(nodes, stateSet({ network: nets[0], peers: [at(n1, 'a1', 'a', '10.98.0.2/24'), at(n2, 'r1', 'r', '10.98.0.3/24')] }, { network: nets[1], peers: [at(n1, 'a1', 'a', '10.99.0.2/24')] }));
  const a = await n1.overlay.attach(overlayTask('a1', 'a', [{ networkId: 'front', address: '10.98.0.2/24' }, { networkId: 'back', address: '10.99.0.2/24' }]));
  t.regex((await inNs(a.netnsPath!, ['ip', '-o', '-4', 'addr'])).stdout, /eth0\s+inet 10\.98\.0\.2\/24[\s\S]*eth1\s+inet 10\.99\.0\.2\/24/, 'eth0, eth1 in attachment order');
  t.regex((await inNs(a.netnsPath!, ['ip', 'route'])).stdout, /default via 10\.98\.0\.1 dev eth0/);

  // A new agent on the same state dir (as `swarmd cleanup` makes one) finds it all from overlay.json.
  await new OverlayNetworking({ nodeId: n1.nodeId, stateDir: n1.host.stateDir, hostNetns: n1.host.nsPath }).destroy();
  await n1.overlay.stop();
  t.notRegex(await hostLinks(n1.host), /swob|swox|swov/);
  t.notRegex((await n1.host.exec(NFT, ['list', 'tables'])).stdout, /swarmd_overlay/);
  t.false((await run('ip', ['netns', 'list'])).stdout.includes(a.netnsPath!.split('/').pop()!));
});

rootTest('overlay: a restarted agent adopts its networks, diffs the peers against the kernel and answers DNS again; re-attaching a task is a no-op', async (t) => {
  const { nodes } = await twoNodes(t);
  const [n1, n2] = nodes;
  const front = overlayNet('front', 4110, '10.100.0.0/24');
  const a1 = at(n1, 'a1', 'a', '10.100.0.2/24');
  await setAll(nodes, stateSet({ network: front, peers: [a1, at(n2, 'r1', 'r', '10.100.0.3/24')] }));
  const task = overlayTask('a1', 'a', [{ networkId: 'front', address: '10.100.0.2/24' }]);
  const a = await n1.overlay.attach(task);
  await n1.overlay.stop();

  const again = new OverlayNetworking({ nodeId: n1.nodeId, stateDir: n1.host.stateDir, hostNetns: n1.host.nsPath, underlayAddr: n1.host.addr, dns: { upstreams: [] } });
  t.teardown(() => again.destroy());
  await again.setState(stateSet({ network: front, peers: [a1, at(n2, 'r2', 'r', '10.100.0.4/24')] }));
  await again.start();
  const fdb = (await n1.host.exec('bridge', ['fdb', 'show', 'dev', 'swox4110'])).stdout;
  t.notRegex(fdb, /02:42:0a:64:00:03/, 'the peer gone while the agent was down is removed');
  t.regex(fdb, /02:42:0a:64:00:04 dst/);
  t.regex((await inNs(a.netnsPath!, ['nslookup', 'tasks.r', '10.100.0.1'])).stdout, /10\.100\.0\.4/);
  t.deepEqual(await again.attach(task), a);
  t.regex((await inNs(a.netnsPath!, ['ip', '-o', '-4', 'addr', 'show', 'eth0'])).stdout, /10\.100\.0\.2\/24/);
});
