import test from 'ava';
import { answerQuery, buildDnsIndex, DNS_TTL_SECONDS, inClusterNamespace } from '../src/networking/overlay/dns-records.js';
import { overlayNet, peer, service, stateSet } from './helpers/overlay-env.js';

const n1 = { nodeId: 'n1', nodeAddr: '192.168.5.2' };
const n2 = { nodeId: 'n2', nodeAddr: '192.168.5.3' };
const set = stateSet(
  {
    network: overlayNet('front', 4097, '10.1.0.0/24'),
    peers: [
      peer({ taskId: 'w1', service: 'web', address: '10.1.0.2/24', ...n1, hostname: 'web-host', aliases: ['www'] }),
      peer({ taskId: 'w2', service: 'web', address: '10.1.0.3/24', ...n2, slot: 2 }),
      peer({ taskId: 'w3', service: 'web', address: '10.1.0.4/24', ...n2, slot: 3, ready: false }),
      peer({ taskId: 'd1', service: 'db', address: '10.1.0.5/24', ...n1 }),
      peer({ taskId: 'c1', service: 'client', address: '10.1.0.9/24', ...n1 }),
    ],
    services: [service('web', { vip: '10.1.0.100/24', aliases: ['frontend'] }), service('db', { dnsrr: true }), service('empty', { dnsrr: true })],
  },
  {
    network: overlayNet('back', 4098, '10.2.0.0/24'),
    peers: [peer({ taskId: 'c1', service: 'client', address: '10.2.0.9/24', ...n1 }), peer({ taskId: 'q1', service: 'queue', address: '10.2.0.2/24', ...n2 })],
    services: [service('queue', { dnsrr: true })],
  },
  {
    network: overlayNet('private', 4099, '10.3.0.0/24', { internal: true }),
    peers: [peer({ taskId: 'i1', service: 'secret', address: '10.3.0.2/24', ...n1 })],
  },
);
const index = buildDnsIndex(set);
const fromClient = { networkId: 'front', address: '10.1.0.9' };
const ask = (name: string, type = 'A', asker = fromClient, rotate = 0) => answerQuery(index, asker, { name, type }, rotate);
const addrs = (a: ReturnType<typeof ask>) => (a.kind === 'answer' ? a.answers.map((r) => r.data) : a.kind);

test('SERVICE answers the VIP in VIP mode, the ready tasks with dnsrr; aliases answer as the service', (t) => {
  t.deepEqual(addrs(ask('web')), ['10.1.0.100']);
  t.deepEqual(addrs(ask('frontend')), ['10.1.0.100']);
  t.deepEqual(addrs(ask('db')), ['10.1.0.5']);
  t.deepEqual(ask('empty'), { kind: 'answer', rcode: 'NOERROR', answers: [] }, 'a service with no ready task: the name exists, no address');
});

test('tasks.SERVICE answers every ready task, turned by the rotation; a task not ready is left out', (t) => {
  t.deepEqual(addrs(ask('tasks.web')), ['10.1.0.2', '10.1.0.3']);
  t.deepEqual(addrs(ask('tasks.web', 'A', fromClient, 1)), ['10.1.0.3', '10.1.0.2']);
  t.deepEqual(addrs(ask('TASKS.Frontend.')), ['10.1.0.2', '10.1.0.3'], 'case and the trailing dot do not matter');
});

test('task names, container hostnames and task aliases answer that task, ready or not', (t) => {
  t.deepEqual(addrs(ask('web.3.w3')), ['10.1.0.4']);
  t.deepEqual(addrs(ask('web-host')), ['10.1.0.2']);
  t.deepEqual(addrs(ask('www')), ['10.1.0.2']);
});

test('answers carry the short TTL and the name asked', (t) => {
  const a = ask('db');
  t.deepEqual(a, { kind: 'answer', rcode: 'NOERROR', answers: [{ name: 'db', type: 'A', ttl: DNS_TTL_SECONDS, data: '10.1.0.5' }] });
  t.true(DNS_TTL_SECONDS <= 5);
});

test('a task sees the names of all its networks, the one asked on first; others see only theirs', (t) => {
  t.deepEqual(addrs(ask('queue')), ['10.2.0.2'], 'client is on front and back');
  t.deepEqual(addrs(ask('client', 'A', { networkId: 'back', address: '10.2.0.2' })), ['10.2.0.9'], 'on back, client is its back address');
  t.like(ask('web', 'A', { networkId: 'back', address: '10.2.0.2' }), { kind: 'answer', rcode: 'NXDOMAIN' }, 'queue is not on front');
});

test('unknown names of the cluster namespace are NXDOMAIN, other names are forwarded, refused from internal-only tasks', (t) => {
  t.like(ask('tasks.unknown'), { kind: 'answer', rcode: 'NXDOMAIN' });
  t.like(ask('unknown'), { kind: 'answer', rcode: 'NXDOMAIN' });
  t.deepEqual(ask('example.org'), { kind: 'forward' });
  t.deepEqual(ask('example.org', 'A', { networkId: 'private', address: '10.3.0.2' }), { kind: 'refused' });
  t.true(inClusterNamespace('tasks.x') && inClusterNamespace('x') && !inClusterNamespace('a.b') && !inClusterNamespace('tasks.a.b'));
});

test('known names of another type than A: no data (NOERROR, no answers), so clients do not fail over to the host', (t) => {
  t.deepEqual(ask('web', 'AAAA'), { kind: 'answer', rcode: 'NOERROR', answers: [] });
});

test('a new set is a new index: a peer added and one removed change the answers', (t) => {
  const next = stateSet({
    network: overlayNet('front', 4097, '10.1.0.0/24'),
    peers: [
      peer({ taskId: 'w2', service: 'web', address: '10.1.0.3/24', ...n2, slot: 2 }),
      peer({ taskId: 'w4', service: 'web', address: '10.1.0.6/24', ...n1, slot: 4 }),
      peer({ taskId: 'c1', service: 'client', address: '10.1.0.9/24', ...n1 }),
    ],
  });
  t.deepEqual(addrs(answerQuery(buildDnsIndex(next), fromClient, { name: 'tasks.web', type: 'A' })), ['10.1.0.3', '10.1.0.6']);
  t.deepEqual(addrs(answerQuery(buildDnsIndex(next), fromClient, { name: 'web', type: 'A' })), ['10.1.0.3', '10.1.0.6'], 'no NetworkService: the ready tasks');
  t.deepEqual(answerQuery(buildDnsIndex(next), fromClient, { name: 'web.1.w1', type: 'A' }), { kind: 'forward' }, 'the removed task is no longer answered here');
});
