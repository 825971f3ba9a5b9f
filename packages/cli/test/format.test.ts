import test from 'ava';
import { NodeAvailability, NodeState } from '@swarmd/proto';
import { nodesTable, parseDuration, durationText, clusterJson, managerStatusText } from '../src/format.js';
import { pickNode } from '../src/resolve.js';
import { applyNodeChange, parseLabelAdds } from '../src/commands/node.js';
import { applyClusterChange } from '../src/commands/cluster.js';
import { parseVolumeFilters } from '../src/commands/volume.js';
import { makeNode } from './helpers/fake-control.js';
import { Cluster } from '@swarmd/proto';

const nodes = [
  makeNode('xyz333', 'h3'),
  makeNode('abc222', 'h2', { manager: true }),
  makeNode('abc111', 'h1', { manager: true, leader: true }),
  makeNode('xyz444', 'h3', { state: NodeState.NODE_STATE_DOWN }),
];

test('node table: docker-like columns, managers first, * on self', (t) => {
  const lines = nodesTable(nodes, 'abc111').split('\n');
  t.regex(lines[0], /^ID\s+HOSTNAME\s+STATUS\s+AVAILABILITY\s+MANAGER STATUS\s+ENGINE VERSION$/);
  t.regex(lines[1], /^abc111 \*\s+h1\s+Ready\s+Active\s+Leader\s+0\.1\.0$/);
  t.regex(lines[2], /^abc222\s+h2\s+Ready\s+Active\s+Reachable\s+0\.1\.0$/);
  t.regex(lines[3], /^xyz333\s+h3\s+Ready\s+Active\s+0\.1\.0$/);
  t.regex(lines[4], /^xyz444\s+h3\s+Down\s+Active\s+0\.1\.0$/);
  // columns line up
  const col = lines[0].indexOf('HOSTNAME');
  t.true(lines.slice(1).every((l) => l.slice(col).startsWith('h')));
});

test('manager status: a learner says it is catching up and does not vote yet, beside any problem', (t) => {
  const n = makeNode('abc555', 'h5', { manager: true });
  t.is(managerStatusText(n), 'Reachable');
  n.managerStatus!.learner = true;
  t.is(managerStatusText(n), 'Reachable (catching up, not voting yet)');
  n.managerStatus!.problem = 'state disk full';
  t.is(managerStatusText(n), 'Reachable (catching up, not voting yet; state disk full)');
});

test('node references: exact id, hostname, unique prefix; ambiguous and unknown are errors', (t) => {
  t.is(pickNode(nodes, 'abc111').id, 'abc111');
  t.is(pickNode(nodes, 'h2').id, 'abc222');
  t.is(pickNode(nodes, 'xyz3').id, 'xyz333');
  t.throws(() => pickNode(nodes, 'abc'), { message: /node abc is ambiguous \(id prefix of 2 nodes: abc111 \(h1\), abc222 \(h2\)\)/ });
  t.throws(() => pickNode(nodes, 'h3'), { message: /ambiguous \(hostname of 2 nodes/ });
  t.throws(() => pickNode(nodes, 'nope'), { message: 'node nope not found' });
});

test('durations', (t) => {
  t.is(parseDuration('5s'), 5000);
  t.is(parseDuration('1m30s'), 90_000);
  t.is(parseDuration('250ms'), 250);
  t.is(parseDuration('90d'), 90 * 86_400_000);
  t.is(parseDuration('1.5h'), 5_400_000);
  for (const bad of ['', '5', 's', '5x', '5s ', '-5s']) t.is(parseDuration(bad), undefined, bad);
  t.is(durationText(90_000), '1m30s');
  t.is(durationText(7_776_000_000), '90d');
});

test('node and cluster changes keep what they do not touch', (t) => {
  const spec = applyNodeChange(nodes[0], { availability: NodeAvailability.NODE_AVAILABILITY_DRAIN, labelAdd: { k: 'v' }, labelRm: ['zone'] });
  t.deepEqual(spec.annotations?.labels, { k: 'v' });
  t.is(spec.availability, NodeAvailability.NODE_AVAILABILITY_DRAIN);
  t.is(spec.desiredRole, nodes[0].spec!.desiredRole);
  t.deepEqual(parseLabelAdds(['a=b', 'c=', 'd=e=f']), { a: 'b', c: '', d: 'e=f' });
  t.throws(() => parseLabelAdds(['=x']), { message: /--label-add =x: expected KEY=VALUE/ });
  const c = Cluster.fromJSON({ id: 'c', spec: { dispatcher: { heartbeatPeriodMs: 5000 }, orchestration: { taskHistoryRetentionLimit: 5 } } });
  const cs = applyClusterChange(c, { certExpiryMs: 1000 });
  t.is(cs.dispatcher?.heartbeatPeriodMs, 5000);
  t.is(cs.caConfig?.nodeCertExpiryMs, 1000);
  t.is(cs.orchestration?.taskHistoryRetentionLimit, 5);
});

test('cluster JSON never shows the CA key', (t) => {
  const c = Cluster.fromJSON({ id: 'c', rootCa: { caKeyPem: Buffer.from('SECRET').toString('base64'), caCertPem: 'X' } });
  t.false(JSON.stringify(clusterJson(c)).includes(Buffer.from('SECRET').toString('base64')));
});

test('cluster update keeps autolock unless --autolock is given', (t) => {
  const on = Cluster.fromJSON({ id: 'c', spec: { autolockManagers: true, dispatcher: { heartbeatPeriodMs: 5000 } } });
  t.true(applyClusterChange(on, { heartbeatPeriodMs: 1000 }).autolockManagers);
  t.false(applyClusterChange(on, { autolock: false }).autolockManagers);
  const off = Cluster.fromJSON({ id: 'c', spec: {} });
  t.false(applyClusterChange(off, { taskHistoryLimit: 2 }).autolockManagers);
  t.true(applyClusterChange(off, { autolock: true }).autolockManagers);
});

test('volume ls filters: name= and node=, anything else refused naming the filter', (t) => {
  t.deepEqual(parseVolumeFilters(['name=data', 'node=w1', 'name=cache']), { names: ['data', 'cache'], nodes: ['w1'] });
  t.throws(() => parseVolumeFilters(['driver=local']), { message: /--filter driver=local: expected name=VOLUME or node=NODE/ });
  t.throws(() => parseVolumeFilters(['name=']), { message: /--filter name=: expected/ });
});
