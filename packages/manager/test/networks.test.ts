/**
 * Overlay networks on the manager: the control API's network calls and their refusals, the
 * allocator (VNIs, VIPs, task addresses) on a real store with a fake clock, and the network
 * state the dispatcher pushes to a node.
 */
import test from 'ava';
import { nullLogger, isSwarmError } from '@swarmd/common';
import { EndpointSpec, EndpointSpec_ResolutionMode, NetworkSpec, PortConfig_PublishMode, type ServiceSpec, TaskState } from '@swarmd/proto';
import { createNetworksImpl, createServicesImpl, ingressNetworkSpec, makeObject, networkStateFor, type ImagePinner, type MemoryStore } from '../src/index.js';
import { harness, mkNode, mkSpec, type Harness } from './orchestrator-harness.js';

const pinner: ImagePinner = { pin: (image) => Promise.resolve({ image }) };

function netSpec(name: string, o: { subnet?: string; gateway?: string; internal?: boolean } = {}): NetworkSpec {
  return NetworkSpec.fromPartial({ annotations: { name }, driver: 'overlay', ipam: o.subnet || o.gateway ? [{ subnet: o.subnet ?? '', gateway: o.gateway ?? '' }] : [], internal: !!o.internal });
}

function withNetworks(spec: ServiceSpec, ...targets: string[]): ServiceSpec {
  spec.task!.networks = targets.map((target) => ({ target, aliases: [] }));
  return spec;
}

function apis(store: MemoryStore) {
  return {
    networks: createNetworksImpl({ store, logger: nullLogger }),
    services: createServicesImpl({ store, logger: nullLogger, pinner: () => pinner }),
  };
}

async function refused(t: import('ava').ExecutionContext, p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  t.true(isSwarmError(err) && err.code === code, `code ${isSwarmError(err) ? err.code : String(err)}`);
  t.regex(err?.message ?? "", re);
}

async function withHarness(t: import('ava').ExecutionContext, which: Parameters<typeof harness>[0] = ['replicated', 'allocator', 'scheduler']): Promise<Harness> {
  const h = harness(which);
  t.teardown(() => h.stop());
  await h.store.update((tx) => {
    tx.create('cluster', makeObject('cluster', { id: 'c1' }));
    tx.create('node', mkNode('n1'));
    tx.create('node', mkNode('n2'));
  });
  return h;
}

test('network create takes subnets from the default pool in order, gateway first address', async (t) => {
  const h = await withHarness(t, []);
  const { networks } = apis(h.store);
  const a = (await networks.createNetwork({ spec: netSpec('a') })).network;
  const b = (await networks.createNetwork({ spec: netSpec('b') })).network;
  t.deepEqual(a.spec!.ipam[0], { subnet: '10.0.0.0/24', gateway: '10.0.0.1', range: '' });
  t.deepEqual(b.spec!.ipam[0], { subnet: '10.0.1.0/24', gateway: '10.0.1.1', range: '' });
});

test('network create uses the cluster default address pool and mask length', async (t) => {
  const h = await withHarness(t, []);
  await h.store.update((tx) => tx.update('cluster', { ...tx.get('cluster', 'c1')!, defaultAddressPool: ['10.99.0.0/16'], subnetSize: 26 }));
  const n = (await apis(h.store).networks.createNetwork({ spec: netSpec('a') })).network;
  t.is(n.spec!.ipam[0].subnet, '10.99.0.0/26');
});

test('network create refuses bad input and stores nothing', async (t) => {
  const h = await withHarness(t, []);
  const { networks } = apis(h.store);
  await networks.createNetwork({ spec: netSpec('taken', { subnet: '10.5.0.0/16' }) });
  await refused(t, networks.createNetwork({ spec: netSpec('x', { subnet: '10.5.3.0/24' }) }), 'INVALID_ARGUMENT', /10\.5\.3\.0\/24 overlaps network taken/);
  await refused(t, networks.createNetwork({ spec: netSpec('x', { subnet: '10.6.0.0/33' }) }), 'INVALID_ARGUMENT', /subnet: "10\.6\.0\.0\/33" is not an IPv4 CIDR/);
  await refused(t, networks.createNetwork({ spec: netSpec('x', { subnet: '10.6.0.1/24' }) }), 'INVALID_ARGUMENT', /host bits set/);
  await refused(t, networks.createNetwork({ spec: netSpec('x', { subnet: '10.6.0.0/24', gateway: '10.7.0.1' }) }), 'INVALID_ARGUMENT', /gateway: 10\.7\.0\.1 is not a host address of subnet 10\.6\.0\.0\/24/);
  await refused(t, networks.createNetwork({ spec: netSpec('taken') }), 'ALREADY_EXISTS', /network name "taken" is already in use/);
  await refused(t, networks.createNetwork({ spec: { ...netSpec('x'), driver: 'macvlan' } }), 'INVALID_ARGUMENT', /driver: "macvlan" is not supported/);
  t.deepEqual((await networks.listNetworks()).networks.map((n) => n.spec!.annotations!.name), ['taken']);
});

test('a service naming a network that does not exist is refused and not stored', async (t) => {
  const h = await withHarness(t, []);
  const { services } = apis(h.store);
  await refused(t, services.createService({ spec: withNetworks(mkSpec('web'), 'mynet'), noResolveImage: true }), 'NOT_FOUND', /network "mynet" not found/);
  t.is(h.store.view((tx) => tx.find('service')).length, 0);
});

test('a service stores the id of the network it names, and network rm is refused while it uses it', async (t) => {
  const h = await withHarness(t, []);
  const { networks, services } = apis(h.store);
  const net = (await networks.createNetwork({ spec: netSpec('backend') })).network;
  const svc = (await services.createService({ spec: withNetworks(mkSpec('web'), 'backend'), noResolveImage: true })).service;
  t.deepEqual(svc.spec!.task!.networks.map((n) => n.target), [net.id]);
  await refused(t, networks.removeNetwork({ networkId: 'backend' }), 'FAILED_PRECONDITION', /in use by service web/);
  await services.removeService({ serviceId: svc.id });
  await networks.removeNetwork({ networkId: 'backend' });
  t.deepEqual((await networks.listNetworks()).networks, []);
});

test('the allocator gives each network a VNI, each service a VIP and each task an address before it is scheduled', async (t) => {
  const h = await withHarness(t);
  const { networks, services } = apis(h.store);
  await networks.createNetwork({ spec: netSpec('a', { subnet: '10.1.0.0/24' }) });
  await networks.createNetwork({ spec: netSpec('b', { subnet: '10.2.0.0/24' }) });
  const spec = withNetworks(mkSpec('web', { replicas: 3 }), 'a', 'b');
  const svc = (await services.createService({ spec, noResolveImage: true })).service;
  await h.settle();
  const nets = h.store.view((tx) => tx.find('network'));
  t.deepEqual(nets.map((n) => n.vni).sort(), [4097, 4098]);
  const s = h.store.view((tx) => tx.get('service', svc.id))!;
  t.deepEqual(s.endpoint!.virtualIps.map((v) => v.addr).sort(), ['10.1.0.2/24', '10.2.0.2/24']);
  const tasks = h.live(svc.id);
  t.is(tasks.length, 3);
  const addrs = tasks.flatMap((x) => x.networks.flatMap((a) => a.addresses)).sort();
  t.deepEqual(addrs, ['10.1.0.3/24', '10.1.0.4/24', '10.1.0.5/24', '10.2.0.3/24', '10.2.0.4/24', '10.2.0.5/24']);
  t.true(tasks.every((x) => x.nodeId !== '' && x.status!.state === TaskState.TASK_STATE_ASSIGNED));
});

test('a dnsrr service gets no VIP', async (t) => {
  const h = await withHarness(t);
  const { networks, services } = apis(h.store);
  await networks.createNetwork({ spec: netSpec('a') });
  const spec = withNetworks(mkSpec('web', { replicas: 1 }), 'a');
  spec.endpoint = { mode: EndpointSpec_ResolutionMode.DNSRR, ports: [] };
  const svc = (await services.createService({ spec, noResolveImage: true })).service;
  await h.settle();
  t.deepEqual(h.store.view((tx) => tx.get('service', svc.id))!.endpoint?.virtualIps ?? [], []);
  t.is(h.live(svc.id)[0].networks.length, 1);
});

test('an exhausted subnet leaves the task pending with the reason, and a removed task frees its address for it', async (t) => {
  const h = await withHarness(t);
  const { networks, services } = apis(h.store);
  // A /29: 6 host addresses, one the gateway, one the VIP: room for 4 tasks.
  await networks.createNetwork({ spec: netSpec('small', { subnet: '10.3.0.0/29' }) });
  const svc = (await services.createService({ spec: withNetworks(mkSpec('web', { replicas: 5 }), 'small'), noResolveImage: true })).service;
  await h.settle();
  const live = h.live(svc.id);
  const waiting = live.filter((x) => x.networks.length === 0);
  t.is(waiting.length, 1);
  t.is(waiting[0].nodeId, '');
  t.regex(waiting[0].status!.err, /no IP address left on network small \(subnet 10\.3\.0\.0\/29\)/);
  const holder = live.find((x) => x.networks.length > 0)!;
  const freed = holder.networks[0].addresses[0];
  await h.store.update((tx) => tx.delete('task', holder.id));
  await h.settle();
  const now = h.store.view((tx) => tx.get('task', waiting[0].id))!;
  t.deepEqual(now.networks[0].addresses, [freed]);
  t.not(now.nodeId, '');
});

test('a new allocator (a new leader) changes no address', async (t) => {
  const h = await withHarness(t);
  const { networks, services } = apis(h.store);
  await networks.createNetwork({ spec: netSpec('a') });
  const svc = (await services.createService({ spec: withNetworks(mkSpec('web', { replicas: 4 }), 'a'), noResolveImage: true })).service;
  await h.settle();
  const before = JSON.stringify(h.store.view((tx) => [tx.find('network'), tx.get('service', svc.id)!.endpoint, tx.find('task').map((x) => x.networks)]));
  const version = h.store.version();
  const { Allocator } = await import('../src/allocator/allocator.js');
  const a = new Allocator(h.store, () => h.clock.now());
  h.store.view((tx) => a.init(tx));
  await a.tick();
  t.is(h.store.version(), version, 'the new allocator wrote nothing');
  t.is(JSON.stringify(h.store.view((tx) => [tx.find('network'), tx.get('service', svc.id)!.endpoint, tx.find('task').map((x) => x.networks)])), before);
});

test('the network state pushed to a node lists every task of its networks cluster-wide, ready only when running', async (t) => {
  const h = await withHarness(t);
  const { networks, services } = apis(h.store);
  await networks.createNetwork({ spec: netSpec('a') });
  await networks.createNetwork({ spec: netSpec('other') });
  await h.store.update((tx) => tx.create('node', mkNode('n3')));
  const svc = (await services.createService({ spec: withNetworks(mkSpec('web', { replicas: 4, constraints: ['node.id!=n3'] }), 'a'), noResolveImage: true })).service;
  await services.createService({ spec: withNetworks(mkSpec('db', { replicas: 1, constraints: ['node.id==n3'] }), 'other'), noResolveImage: true });
  await h.settle();
  const web = h.live(svc.id);
  await h.setTaskState(web[0].id, TaskState.TASK_STATE_RUNNING);
  await h.store.update((tx) => tx.update('node', { ...tx.get('node', 'n2')!, status: { state: 2, message: '', addr: '10.250.0.12' } }));
  const node = web[0].nodeId;
  const st = h.store.view((tx) => networkStateFor(tx, node, (x) => x.nodeId === node && x.desiredState <= TaskState.TASK_STATE_RUNNING));
  t.deepEqual(st.networks.map((n) => n.network!.spec!.annotations!.name), ['a']);
  const peers = st.networks[0].peers;
  t.is(peers.length, 4);
  t.deepEqual(peers.filter((p) => p.ready).map((p) => p.taskId), [web[0].id]);
  t.true(peers.every((p) => p.serviceName === 'web' && /^web\.\d+\./.test(p.taskName)));
  t.true(peers.filter((p) => p.nodeId === 'n2').every((p) => p.nodeAddr === '10.250.0.12'));
  t.deepEqual(st.networks[0].services.map((s) => [s.name, s.vip]), [['web', h.store.view((tx) => tx.get('service', svc.id))!.endpoint!.virtualIps[0].addr]]);
});

async function withIngress(t: import('ava').ExecutionContext): Promise<Harness> {
  const h = await withHarness(t);
  await h.store.update((tx) => tx.create('network', makeObject('network', { id: 'ingress1', spec: ingressNetworkSpec() })));
  return h;
}

const published = (spec: ServiceSpec, ...ports: [number, number][]): ServiceSpec => {
  spec.endpoint = EndpointSpec.fromPartial({ ports: ports.map(([publishedPort, targetPort]) => ({ publishedPort, targetPort, publishMode: PortConfig_PublishMode.INGRESS })) });
  return spec;
};

test('a service publishing a port joins the ingress network; a port not given gets one from 30000', async (t) => {
  const h = await withIngress(t);
  const { services } = apis(h.store);
  const a = (await services.createService({ spec: published(mkSpec('a'), [9000, 80]), noResolveImage: true })).service;
  const b = (await services.createService({ spec: published(mkSpec('b'), [0, 80]), noResolveImage: true })).service;
  t.deepEqual(a.spec!.task!.networks.map((n) => n.target), ['ingress1']);
  t.is(b.endpoint!.ports[0].publishedPort, 30000);
  await h.settle();
  t.true(h.live(a.id).every((x) => x.networks.some((n) => n.networkId === 'ingress1' && n.addresses.length === 1)));
});

test('a port another service publishes is refused and nothing is stored', async (t) => {
  const h = await withIngress(t);
  const { services } = apis(h.store);
  await services.createService({ spec: published(mkSpec('a'), [9000, 80]), noResolveImage: true });
  await refused(t, services.createService({ spec: published(mkSpec('b'), [9000, 8080]), noResolveImage: true }), 'INVALID_ARGUMENT', /port 9000\/tcp is already published by service a/);
  t.deepEqual(h.store.view((tx) => tx.find('service')).map((s) => s.spec!.annotations!.name), ['a']);
});

test('removing the published ports leaves the ingress network; the ingress network cannot be removed', async (t) => {
  const h = await withIngress(t);
  const { services, networks } = apis(h.store);
  const a = (await services.createService({ spec: published(mkSpec('a'), [9000, 80]), noResolveImage: true })).service;
  const cur = h.store.view((tx) => tx.get('service', a.id))!;
  const spec = structuredClone(cur.spec!);
  spec.endpoint = undefined;
  const u = (await services.updateService({ serviceId: a.id, serviceVersion: cur.meta!.version, spec, rollback: false, noResolveImage: true })).service;
  t.deepEqual(u.spec!.task!.networks, []);
  await refused(t, networks.removeNetwork({ networkId: 'ingress' }), 'FAILED_PRECONDITION', /routing mesh/);
});

test('every node gets an ingress address, and a node with no task of the service gets the ingress state', async (t) => {
  const h = await withIngress(t);
  const { services } = apis(h.store);
  await h.store.update((tx) => tx.create('node', mkNode('n3')));
  await services.createService({ spec: published(mkSpec('a', { replicas: 1, constraints: ['node.id==n1'] }), [9000, 80]), noResolveImage: true });
  await h.settle();
  const nodes = h.store.view((tx) => tx.find('node'));
  const addrs = nodes.map((n) => n.attachments.find((a) => a.networkId === 'ingress1')?.addresses[0]);
  t.true(addrs.every((a) => !!a && a.startsWith('10.255.')));
  t.is(new Set(addrs).size, 3);
  const st = h.store.view((tx) => networkStateFor(tx, 'n3', (x) => x.nodeId === 'n3'));
  t.deepEqual(st.networks.map((n) => n.network!.id), ['ingress1']);
  t.is(st.networks[0].nodeAddress, addrs[nodes.findIndex((n) => n.id === 'n3')] ?? 'missing');
  t.deepEqual(st.networks[0].services.map((s) => [s.name, s.ports.map((p) => p.publishedPort)]), [['a', [9000]]]);
  t.is(st.networks[0].peers.filter((p) => p.taskId === '').length, 3, 'the three nodes\' own addresses');
});

test('a service update keeps its VIPs (no moment without them)', async (t) => {
  const h = await withHarness(t);
  const { networks, services } = apis(h.store);
  await networks.createNetwork({ spec: netSpec('a') });
  const svc = (await services.createService({ spec: withNetworks(mkSpec('web', { replicas: 1 }), 'a'), noResolveImage: true })).service;
  await h.settle();
  const before = h.store.view((tx) => tx.get('service', svc.id))!;
  t.is(before.endpoint!.virtualIps.length, 1);
  const spec = structuredClone(before.spec!);
  spec.task!.container!.env = ['V=2'];
  const updated = (await services.updateService({ serviceId: svc.id, serviceVersion: before.meta!.version, spec, rollback: false, noResolveImage: true })).service;
  t.deepEqual(updated.endpoint!.virtualIps, before.endpoint!.virtualIps, 'the update itself kept them');
});
