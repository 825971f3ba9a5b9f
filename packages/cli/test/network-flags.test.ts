import test from 'ava';
import { EndpointSpec_ResolutionMode, ServiceSpec } from '@swarmd/proto';
import { networkSpecOfFlags } from '../src/commands/network.js';
import { applyUpdateFlags, specOfCreateFlags } from '../src/service-spec.js';

test('network create flags make an overlay spec with subnet, gateway, labels and options', (t) => {
  const s = networkSpecOfFlags('backend', { subnet: ['10.9.0.0/24'], gateway: ['10.9.0.254'], internal: true, attachable: true, label: ['team=a'] });
  t.is(s.annotations!.name, 'backend');
  t.is(s.driver, 'overlay');
  t.deepEqual(s.ipam, [{ subnet: '10.9.0.0/24', gateway: '10.9.0.254', range: '' }]);
  t.true(s.internal);
  t.true(s.attachable);
  t.deepEqual(s.annotations!.labels, { team: 'a' });
});

test('network create refuses another driver, two subnets, a gateway without a subnet and a bad label', (t) => {
  t.throws(() => networkSpecOfFlags('x', { driver: 'bridge' }), { message: /--driver bridge: only overlay/ });
  t.throws(() => networkSpecOfFlags('x', { subnet: ['10.1.0.0/24', '10.2.0.0/24'] }), { message: /--subnet: one subnet per network/ });
  t.throws(() => networkSpecOfFlags('x', { gateway: ['10.1.0.1'] }), { message: /--gateway needs a --subnet/ });
  t.throws(() => networkSpecOfFlags('x', { label: ['=v'] }), { message: /--label =v: expected KEY=VALUE/ });
});

const nets = [
  { id: 'n1aaaa', spec: { annotations: { name: 'front' } } },
  { id: 'n2bbbb', spec: { annotations: { name: 'back' } } },
];

test('service update --network-add and --network-rm change the attachments by name', (t) => {
  const base = ServiceSpec.fromPartial({ annotations: { name: 'web' }, task: { container: { image: 'web:1' }, networks: [{ target: 'n1aaaa' }] } });
  const u = applyUpdateFlags(base, { 'network-add': ['back'], 'network-rm': ['front'] }, nets);
  t.deepEqual(u.task!.networks.map((n) => n.target), ['back']);
});

test('service update refuses to remove a network the service is not on, or add one it is on', (t) => {
  const base = ServiceSpec.fromPartial({ annotations: { name: 'web' }, task: { container: { image: 'web:1' }, networks: [{ target: 'n1aaaa' }] } });
  t.throws(() => applyUpdateFlags(base, { 'network-rm': ['back'] }, nets), { message: /--network-rm back: the service is not attached to it/ });
  t.throws(() => applyUpdateFlags(base, { 'network-add': ['front'] }, nets), { message: /--network-add front: the service is already attached to it/ });
});

test('--endpoint-mode dnsrr on create and update sets the resolution mode; vip on a service with no endpoint changes nothing', (t) => {
  const created = specOfCreateFlags({ 'endpoint-mode': 'dnsrr', network: ['front'] }, 'web:1', []);
  t.is(created.endpoint?.mode, EndpointSpec_ResolutionMode.DNSRR);
  const base = ServiceSpec.fromPartial({ annotations: { name: 'web' }, task: { container: { image: 'web:1' } } });
  t.is(applyUpdateFlags(base, { 'endpoint-mode': 'dnsrr' }).endpoint?.mode, EndpointSpec_ResolutionMode.DNSRR);
  t.is(applyUpdateFlags(created, { 'endpoint-mode': 'vip' }).endpoint?.mode, EndpointSpec_ResolutionMode.VIP);
  t.throws(() => applyUpdateFlags(base, { 'endpoint-mode': 'vip' }), { message: /nothing to change/ });
});

test('--endpoint-mode refuses an unknown mode, and dnsrr with a port published through the routing mesh', (t) => {
  t.throws(() => specOfCreateFlags({ 'endpoint-mode': 'round-robin' }, 'web:1', []), { message: /--endpoint-mode round-robin: expected vip or dnsrr/ });
  t.throws(() => specOfCreateFlags({ 'endpoint-mode': 'dnsrr', publish: ['8080:80'] }, 'web:1', []), { message: /--endpoint-mode dnsrr: port 8080 is published through the routing mesh/ });
  const hostMode = specOfCreateFlags({ 'endpoint-mode': 'dnsrr', publish: ['published=8080,target=80,mode=host'] }, 'web:1', []);
  t.is(hostMode.endpoint?.mode, EndpointSpec_ResolutionMode.DNSRR);
  const published = specOfCreateFlags({ publish: ['8080:80'] }, 'web:1', []);
  t.throws(() => applyUpdateFlags(published, { 'endpoint-mode': 'dnsrr' }), { message: /port 8080 is published through the routing mesh/ });
});
