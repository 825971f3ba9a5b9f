import test from 'ava';
import { ServiceSpec } from '@swarmd/proto';
import { networkSpecOfFlags } from '../src/commands/network.js';
import { applyUpdateFlags } from '../src/service-spec.js';

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
