import test from 'ava';
import { macOf, overlayNetworkOf, remotePeers, vethName, bridgeName, vxlanName, ownUnderlayAddr, type RemotePeer } from '../src/networking/overlay/model.js';
import { networkCreateLines, overlayRuleset, peerChanges, peersFromKernel, taskLinkLines } from '../src/networking/overlay/plan.js';
import { overlayNet, peer, stateSet } from './helpers/overlay-env.js';

const netA = overlayNetworkOf({ network: overlayNet('netA', 4097, '10.77.0.0/24'), peers: [], services: [], nodeAddress: '' });
const netI = overlayNetworkOf({ network: overlayNet('netI', 16777215, '10.78.0.0/16', { internal: true }), peers: [], services: [], nodeAddress: '' });

test('a network as the host programs it: names from the VNI (≤ 15 characters), gateway, subnet, MAC from the IPv4', (t) => {
  if ('error' in netA || 'error' in netI) return t.fail();
  t.like(netA, { vni: 4097, subnet: '10.77.0.0/24', bits: 24, gateway: '10.77.0.1', internal: false, bridge: 'swob4097', vxlan: 'swox4097' });
  t.true(bridgeName(16777215).length <= 15 && vxlanName(16777215).length <= 15 && vethName('a-very-long-task-id', 'a-network-id').length <= 15);
  t.not(vethName('t1', 'netA'), vethName('t1', 'netB'));
  t.is(macOf('10.77.0.2/24'), '02:42:0a:4d:00:02');
  t.like(overlayNetworkOf({ network: { ...overlayNet('x', 0, '10.0.0.0/24') }, peers: [], services: [], nodeAddress: '' }), { error: 'network x has no VNI' });
  t.like(overlayNetworkOf({ network: { ...overlayNet('x', 5, '10.0.0.0/24'), ipam: [] }, peers: [], services: [], nodeAddress: '' }), { error: 'network x has no subnet' });
});

test('remote peers: ours and those without an underlay address are left out', (t) => {
  const s = stateSet({
    network: overlayNet('netA', 4097, '10.77.0.0/24'),
    peers: [
      peer({ taskId: 'a', service: 'web', address: '10.77.0.2/24', nodeId: 'n1', nodeAddr: '192.168.5.2' }),
      peer({ taskId: 'b', service: 'web', address: '10.77.0.3/24', nodeId: 'n2', nodeAddr: '192.168.5.3' }),
      peer({ taskId: 'c', service: 'web', address: '10.77.0.4/24', nodeId: 'n3', nodeAddr: '' }),
    ],
  }).networks[0];
  t.deepEqual([...remotePeers(s, { nodeId: 'n1' }).values()], [{ ip: '10.77.0.3', mac: '02:42:0a:4d:00:03', vtep: '192.168.5.3' }]);
  t.is(ownUnderlayAddr([s], 'n2'), '192.168.5.3');
});

test('peer changes: only peers added, gone or moved to another host are written', (t) => {
  const p = (ip: string, vtep: string): [string, RemotePeer] => [ip, { ip, mac: macOf(ip), vtep }];
  const prev = new Map([p('10.77.0.3', '192.168.5.3'), p('10.77.0.4', '192.168.5.4'), p('10.77.0.5', '192.168.5.3')]);
  const next = new Map([p('10.77.0.3', '192.168.5.3'), p('10.77.0.5', '192.168.5.4'), p('10.77.0.6', '192.168.5.4')]);
  t.deepEqual(peerChanges('swox4097', prev, next), {
    fdb: [
      'fdb del 02:42:0a:4d:00:04 dev swox4097 dst 192.168.5.4 self',
      'fdb del 02:42:0a:4d:00:05 dev swox4097 dst 192.168.5.3 self',
      'fdb append 02:42:0a:4d:00:05 dev swox4097 dst 192.168.5.4 self permanent',
      'fdb append 02:42:0a:4d:00:06 dev swox4097 dst 192.168.5.4 self permanent',
    ],
    neigh: ['neigh del 10.77.0.4 dev swox4097', 'neigh replace 10.77.0.6 lladdr 02:42:0a:4d:00:06 dev swox4097 nud permanent'],
  });
  t.deepEqual(peerChanges('swox4097', next, next), { fdb: [], neigh: [] });
});

test('peers read back from the kernel (bridge -j fdb, ip -j neigh) after an agent restart', (t) => {
  const fdb = JSON.stringify([
    { mac: '72:ea:d4:e5:99:9b', master: 'swob4097', state: 'permanent' },
    { mac: '02:42:0a:4d:00:03', dst: '10.231.72.3', flags: ['self'], state: 'permanent' },
  ]);
  const neigh = JSON.stringify([{ dst: '10.77.0.3', lladdr: '02:42:0a:4d:00:03', state: ['PERMANENT'] }]);
  t.deepEqual([...peersFromKernel(fdb, neigh).values()], [{ ip: '10.77.0.3', mac: '02:42:0a:4d:00:03', vtep: '10.231.72.3' }]);
  t.deepEqual(peersFromKernel('', 'not json').size, 0);
});

test('ip batches: the bridge and vxlan of a network, a task veth per network, the default route via the first network that is not internal', (t) => {
  if ('error' in netA || 'error' in netI) return t.fail();
  t.deepEqual(networkCreateLines(netA, { local: '192.168.5.2', mtu: 1450 }), [
    'link add swob4097 type bridge',
    'link set swob4097 address 02:42:0a:4d:00:01 mtu 1450',
    'addr replace 10.77.0.1/24 dev swob4097',
    'link add swox4097 mtu 1450 type vxlan id 4097 dstport 4789 local 192.168.5.2 nolearning proxy',
    'link set swox4097 master swob4097 up',
    'link set swob4097 up',
  ]);
  const links = [
    { network: netI, ip: '10.78.0.9', veth: 'swov00000001' },
    { network: netA, ip: '10.77.0.2', veth: 'swov00000002' },
  ];
  t.deepEqual(taskLinkLines('task-ns', links, 1450, new Set(['swov00000001'])), {
    host: [
      'link set swov00000001 master swob16777215 up',
      'link add swov00000002 mtu 1450 type veth peer name eth1 mtu 1450 address 02:42:0a:4d:00:02 netns task-ns',
      'link set swov00000002 master swob4097 up',
    ],
    inside: ['link set lo up', 'addr replace 10.78.0.9/16 dev eth0', 'link set eth0 up', 'addr replace 10.77.0.2/24 dev eth1', 'link set eth1 up', 'route replace default via 10.77.0.1 dev eth1'],
  });
  t.false(taskLinkLines('ns', [links[0]], 1450).inside.some((l) => l.startsWith('route')), 'internal only: no route out');
});

test('the nft table: traffic stays within a network, nothing enters from another but connections the host DNATed, internal networks have no way out, the others are masqueraded', (t) => {
  if ('error' in netA || 'error' in netI) return t.fail();
  t.is(
    overlayRuleset('swarmd_overlay', [netI, netA]),
    [
      'table ip swarmd_overlay {',
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      '    iifname "swob16777215" oifname "swob16777215" accept',
      '    iifname "swob16777215" drop',
      '    oifname "swob16777215" drop',
      '    iifname "swob4097" oifname "swob4097" accept',
      '    oifname "swob4097" ct status dnat accept',
      '    oifname "swob4097" ct state established,related accept',
      '    oifname "swob4097" drop',
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      '    ip saddr 10.77.0.0/24 oifname != "swob4097" masquerade',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
});
