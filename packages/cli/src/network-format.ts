/** How networks and network attachments are shown: tables, details, JSON. */
import { type EndpointVirtualIp, type NetworkAttachment } from '@swarmd/proto/gen/swarm/types';
import { Network as NetworkMsg, type Network } from '@swarmd/proto/gen/swarm/objects';
import { kv, table } from './format.js';

export function networkName(n: Network): string {
  return n.spec?.annotations?.name ?? n.id;
}

export function networksTable(nets: readonly Network[], o: { noTrunc?: boolean } = {}): string {
  const rows = [...nets]
    .sort((a, b) => networkName(a).localeCompare(networkName(b)))
    .map((n) => [o.noTrunc ? n.id : n.id.slice(0, 12), networkName(n), n.spec?.driver || 'overlay', 'swarm', n.spec?.ipam[0]?.subnet ?? '']);
  return table(['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE', 'SUBNET'], rows);
}

export function networkDetails(n: Network): string {
  return kv([
    ['ID', n.id],
    ['Name', networkName(n)],
    ['Driver', n.spec?.driver || 'overlay'],
    ['Subnet', n.spec?.ipam[0]?.subnet ?? ''],
    ['Gateway', n.spec?.ipam[0]?.gateway ?? ''],
    ['VXLAN id', n.vni ? String(n.vni) : '(not allocated yet)'],
    ['Attachable', String(n.spec?.attachable ?? false)],
    ['Internal', String(n.spec?.internal ?? false)],
    ['Labels', Object.entries(n.spec?.annotations?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')],
    ['Created', n.meta?.createdAt ? new Date(n.meta.createdAt).toISOString() : ''],
  ]);
}

export function networkJson(n: Network): unknown {
  return NetworkMsg.toJSON(n);
}

const nameOf = (nets: readonly Network[], id: string): string => {
  const n = nets.find((x) => x.id === id);
  return n ? networkName(n) : id;
};

/** A service's networks with their VIPs: "backend (VIP 10.0.1.2/24), frontend". */
export function serviceNetworksText(targets: readonly string[], vips: readonly EndpointVirtualIp[], nets: readonly Network[]): string {
  return targets
    .map((id) => {
      const vip = vips.find((v) => v.networkId === id);
      return `${nameOf(nets, id)}${vip ? ` (VIP ${vip.addr})` : ''}`;
    })
    .join(', ');
}

/** A task's attachments with their addresses: "backend 10.0.1.5/24". */
export function attachmentsText(atts: readonly NetworkAttachment[], nets: readonly Network[]): string {
  return atts.map((a) => `${nameOf(nets, a.networkId)} ${a.addresses.join(' ')}`).join(', ');
}
