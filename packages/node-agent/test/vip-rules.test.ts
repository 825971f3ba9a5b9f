import test from 'ava';
import type { NetworkState } from '@swarmd/proto';
import { endpointChain, serviceChain, taskVipServices, vipRuleset, vipServices, vipTransaction, type VipService } from '../src/networking/overlay/vip-rules.js';
import { overlayNet, peer, service, stateSet } from './helpers/overlay-env.js';

const at = (taskId: string, svc: string, address: string, ready = true) => peer({ taskId, service: svc, address, nodeId: 'n1', nodeAddr: '192.168.5.2', ready });

const front: NetworkState = stateSet({
  network: overlayNet('front', 4097, '10.77.0.0/24'),
  peers: [at('w3', 'web', '10.77.0.12/24'), at('w1', 'web', '10.77.0.10/24'), at('w2', 'web', '10.77.0.9/24', false), at('d1', 'db', '10.77.0.20/24'), at('c1', 'cache', '10.77.0.30/24')],
  services: [service('web', { vip: '10.77.0.2/24' }), service('db', { dnsrr: true }), service('cache', { vip: '' }), service('idle', { vip: '10.77.0.3/24' })],
}).networks[0];

const back: NetworkState = stateSet({
  network: overlayNet('back', 4098, '10.78.0.0/24'),
  peers: [at('w1b', 'web', '10.78.0.10/24'), at('a1', 'api', '10.78.0.5/24')],
  services: [service('web', { vip: '10.78.0.2/24' }), service('api', { vip: '10.78.0.3/24' })],
}).networks[0];

const states = new Map([
  ['front', front],
  ['back', back],
]);

test('VIP services of a network: VIP mode with a VIP only (not dnsrr, not without a VIP), ready endpoints in address order', (t) => {
  t.deepEqual(vipServices(front), [
    { serviceId: 'svc-web', name: 'web', networkId: 'front', vip: '10.77.0.2', endpoints: ['10.77.0.10', '10.77.0.12'], canaries: [], weight: 0 },
    { serviceId: 'svc-idle', name: 'idle', networkId: 'front', vip: '10.77.0.3', endpoints: [], canaries: [], weight: 0 },
  ]);
});

test("a task's VIP services: those of each of its networks in the set; a network missing from the set gives none", (t) => {
  t.deepEqual(
    taskVipServices(['back', 'front', 'gone'], states).map((s) => `${s.name}@${s.vip}:${s.endpoints.join(',')}`),
    ['web@10.78.0.2:10.78.0.10', 'api@10.78.0.3:10.78.0.5', 'web@10.77.0.2:10.77.0.10,10.77.0.12', 'idle@10.77.0.3:'],
  );
  t.deepEqual(taskVipServices(['gone'], states), []);
});

test('chain names: nft identifiers with the service name to read and a hash per network and service', (t) => {
  const web = { name: 'web', serviceId: 'svc-web', networkId: 'front' };
  t.regex(serviceChain(web), /^svc-web-[0-9a-f]{8}$/);
  t.not(serviceChain(web), serviceChain({ ...web, networkId: 'back' }), 'the same service on another network has its own chain');
  t.regex(serviceChain({ ...web, name: 'my.app "x"' }), /^svc-my_app__x_-[0-9a-f]{8}$/);
  t.regex(serviceChain({ ...web, name: 'a'.repeat(100) }), /^svc-a{32}-[0-9a-f]{8}$/);
  t.is(endpointChain('10.77.0.10'), 'ep-10-77-0-10');
});

test('the ruleset: a VIP map in the output nat hook, numgen over the endpoints, a DNAT chain per endpoint keeping the port, VIPs without endpoints rejected', (t) => {
  const rules = vipRuleset(taskVipServices(['front'], states));
  const web = serviceChain({ name: 'web', serviceId: 'svc-web', networkId: 'front' });
  t.is(
    rules,
    [
      'table ip swarmd_vip {',
      '  map service-ips {',
      '    type ipv4_addr : verdict',
      `    elements = { 10.77.0.2 comment "web" : goto ${web}, 10.77.0.3 comment "idle" : goto no-endpoints }`,
      '  }',
      '  chain output {',
      '    type nat hook output priority -100; policy accept;',
      '    ip daddr vmap @service-ips',
      '  }',
      `  chain ${web} {`,
      '    numgen random mod 2 vmap { 0 : goto ep-10-77-0-10, 1 : goto ep-10-77-0-12 }',
      '  }',
      '  chain ep-10-77-0-10 {',
      '    dnat to 10.77.0.10',
      '  }',
      '  chain ep-10-77-0-12 {',
      '    dnat to 10.77.0.12',
      '  }',
      '  chain no-endpoints {',
      '    meta l4proto tcp reject with tcp reset',
      '    reject',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
});

test('one endpoint: a plain goto, no numgen; no VIP without endpoints: no reject chain', (t) => {
  const rules = vipRuleset(taskVipServices(['back'], states));
  t.regex(rules, /^ {4}goto ep-10-78-0-10$/m);
  t.notRegex(rules, /numgen|no-endpoints/);
});

test('no service reached by VIP: no table; the transaction then only deletes it', (t) => {
  const dnsOnly = stateSet({ network: overlayNet('dns', 4099, '10.79.0.0/24'), peers: [at('d1', 'db', '10.79.0.5/24')], services: [service('db', { dnsrr: true })] }).networks[0];
  t.is(vipRuleset(taskVipServices(['dns'], new Map([['dns', dnsOnly]]))), '');
  t.deepEqual(vipTransaction(''), ['add table ip swarmd_vip', 'delete table ip swarmd_vip']);
  const tx = vipTransaction(vipRuleset(taskVipServices(['back'], states)));
  t.deepEqual(tx.slice(0, 3), ['add table ip swarmd_vip', 'delete table ip swarmd_vip', 'table ip swarmd_vip {']);
  t.is(tx.at(-1), '}');
  t.deepEqual(vipTransaction(vipRuleset(taskVipServices(['back'], states)), { fresh: true }), tx.slice(2), 'a new netns: the table alone');
  t.deepEqual(vipTransaction('', { fresh: true }), []);
});

test('equal sets render equal text whatever the order of peers and services (the driver diffs on it); a readiness change shows', (t) => {
  const shuffled: NetworkState = { ...front, peers: [...front.peers].reverse(), services: [...front.services].reverse() };
  t.is(vipRuleset(vipServices(shuffled)), vipRuleset(vipServices(front)));
  const unready: NetworkState = { ...front, peers: front.peers.map((p) => (p.taskId === 'w1' ? { ...p, ready: false } : p)) };
  const rules = vipRuleset(vipServices(unready));
  t.not(rules, vipRuleset(vipServices(front)));
  t.notRegex(rules, /10\.77\.0\.10/, 'an endpoint no longer ready leaves the map');
});

test('a VIP twice among a task\'s networks (overlapping subnets): the first network wins; an endpoint shared by two services has one chain', (t) => {
  const dup = (id: string, vip: string): NetworkState => stateSet({ network: overlayNet(id, 5000, '10.80.0.0/24'), peers: [at(`${id}-t`, id, '10.80.0.7/24')], services: [service(id, { vip })] }).networks[0];
  const m = new Map([
    ['x', dup('x', '10.80.0.2/24')],
    ['y', dup('y', '10.80.0.2/24')],
    ['z', dup('z', '10.80.0.3/24')],
  ]);
  const svcs: VipService[] = taskVipServices(['x', 'y', 'z'], m);
  t.deepEqual(
    svcs.map((s) => s.name),
    ['x', 'z'],
  );
  t.is(vipRuleset(svcs).match(/chain ep-10-80-0-7 /g)?.length, 1);
});

const canaryNet = (weight: number, canaryReady = true): NetworkState =>
  stateSet({
    network: overlayNet('front', 4097, '10.77.0.0/24'),
    peers: [
      at('o1', 'web', '10.77.0.10/24'),
      at('o2', 'web', '10.77.0.11/24'),
      peer({ taskId: 'c1', service: 'web', address: '10.77.0.40/24', nodeId: 'n2', nodeAddr: '192.168.5.3', canary: true, ready: canaryReady }),
    ],
    services: [service('web', { vip: '10.77.0.2/24', canaryWeight: weight })],
  }).networks[0];

test('a canary weight splits new connections exactly: numgen mod 100 over two intervals, the old endpoints on one side, the canaries on the other', (t) => {
  const [web] = vipServices(canaryNet(20));
  t.deepEqual(web.canaries, ['10.77.0.40']);
  t.is(web.weight, 20);
  const rules = vipRuleset([web]);
  const chain = serviceChain(web);
  t.true(rules.includes(`  chain ${chain} {\n    numgen random mod 100 vmap { 0-79 : goto ${chain}-s, 80-99 : goto ${chain}-c }\n  }`), rules);
  t.true(rules.includes(`  chain ${chain}-s {\n    numgen random mod 2 vmap { 0 : goto ep-10-77-0-10, 1 : goto ep-10-77-0-11 }\n  }`), rules);
  t.true(rules.includes(`  chain ${chain}-c {\n    goto ep-10-77-0-40\n  }`), rules);
});

test('no weighting without a weight, or while no canary is ready: every ready endpoint alike', (t) => {
  for (const [weight, ready] of [
    [0, true],
    [30, false],
  ] as const) {
    const rules = vipRuleset(vipServices(canaryNet(weight, ready)));
    t.false(rules.includes('mod 100'), `weight ${weight}, canary ready ${ready}`);
  }
  t.regex(vipRuleset(vipServices(canaryNet(0))), /numgen random mod 3 vmap/);
});
