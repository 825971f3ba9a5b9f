import test from 'ava';
import { NetworkState, PortConfig_Protocol, PortConfig_PublishMode } from '@swarmd/proto';
import { ingressRuleset, meshPorts } from '../src/networking/overlay/ingress-plan.js';

const state = NetworkState.fromPartial({
  network: { id: 'ing', vni: 4100, spec: { ingress: true } },
  services: [
    { serviceId: 's1', name: 'web', ports: [{ publishedPort: 9000, targetPort: 8080, publishMode: PortConfig_PublishMode.INGRESS }] },
    { serviceId: 's2', name: 'dns', ports: [{ publishedPort: 5353, targetPort: 53, protocol: PortConfig_Protocol.UDP, publishMode: PortConfig_PublishMode.INGRESS }, { publishedPort: 7000, targetPort: 70, publishMode: PortConfig_PublishMode.HOST }] },
  ],
  peers: [
    { taskId: 't2', serviceId: 's1', address: '10.255.0.5/16', ready: true },
    { taskId: 't1', serviceId: 's1', address: '10.255.0.4/16', ready: true },
    { taskId: 't3', serviceId: 's1', address: '10.255.0.6/16', ready: false },
    { taskId: '', serviceId: '', address: '10.255.0.2/16', nodeId: 'n1' },
  ],
  nodeAddress: '10.255.0.2/16',
});

test('mesh ports: ingress-mode ports with the ready endpoints of their service, node addresses and host-mode ports left out', (t) => {
  t.deepEqual(meshPorts(state), [
    { protocol: 'udp', published: 5353, target: 53, service: 'dns', endpoints: [], canaries: [], weight: 0 },
    { protocol: 'tcp', published: 9000, target: 8080, service: 'web', endpoints: ['10.255.0.4', '10.255.0.5'], canaries: [], weight: 0 },
  ]);
});

test('the mesh table spreads a port over its endpoints, SNATs what it forwarded, and leaves out a port with no endpoint', (t) => {
  const rules = ingressRuleset('swarmd_ingress', 'swob4100', '10.255.0.2', meshPorts(state));
  t.regex(rules, /tcp dport 9000 jump p-tcp-9000/);
  t.regex(rules, /numgen random mod 2 vmap \{ 0 : jump e-tcp-9000-0, 1 : jump e-tcp-9000-1 \}/);
  t.regex(rules, /dnat to 10\.255\.0\.4:8080/);
  t.regex(rules, /dnat to 10\.255\.0\.5:8080/);
  t.regex(rules, /oifname "swob4100" meta mark 0x5357 snat to 10\.255\.0\.2/);
  t.notRegex(rules, /5353/);
  t.regex(rules, /fib daddr type local jump mesh/);
});

test('no table at all when no port has an endpoint', (t) => {
  t.is(ingressRuleset('swarmd_ingress', 'swob4100', '10.255.0.2', meshPorts({ ...state, peers: [] })), '');
});

test('a published port of a service in a canary rollout sends its weight to the canaries (mod 100 intervals), the rest to the old endpoints', (t) => {
  const canary = NetworkState.fromPartial({
    ...state,
    services: [{ ...state.services[0], canaryWeight: 25 }],
    peers: [...state.peers, { taskId: 'c1', serviceId: 's1', address: '10.255.0.9/16', ready: true, canary: true }],
  });
  const [web] = meshPorts(canary).filter((p) => p.service === 'web');
  t.deepEqual(web.canaries, ['10.255.0.9']);
  const rules = ingressRuleset('swarmd_ingress', 'swob4100', '10.255.0.2', [web]);
  t.regex(rules, /chain p-tcp-9000 \{\n {4}numgen random mod 100 vmap \{ 0-74 : jump p-tcp-9000-s, 75-99 : jump p-tcp-9000-c \}/);
  t.regex(rules, /chain p-tcp-9000-s \{\n {4}numgen random mod 2 vmap \{ 0 : jump e-tcp-9000-0, 1 : jump e-tcp-9000-1 \}/);
  t.regex(rules, /chain p-tcp-9000-c \{\n {4}jump e-tcp-9000-2\n/);
  t.regex(rules, /chain e-tcp-9000-2 \{\n {4}meta l4proto tcp meta mark set 0x5357 dnat to 10\.255\.0\.9:8080/);
});
