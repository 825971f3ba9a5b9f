import { NetworkSpec, PortConfig_PublishMode, type EndpointSpec, type Task, type TaskSpec } from '@swarmd/proto';

/** The routing mesh's network, made at init (as Docker's `ingress`, 10.255.0.0/16). */
export const INGRESS_NAME = 'ingress';
export const INGRESS_SUBNET = '10.255.0.0/16';

export function ingressNetworkSpec(): NetworkSpec {
  return NetworkSpec.fromPartial({
    annotations: { name: INGRESS_NAME, labels: {} },
    driver: 'overlay',
    ipam: [{ subnet: INGRESS_SUBNET, gateway: '10.255.0.1' }],
    ingress: true,
  });
}

/** Ports a spec publishes through the routing mesh (mode ingress). */
export function ingressPorts(ep: Readonly<EndpointSpec> | undefined): EndpointSpec['ports'] {
  return (ep?.ports ?? []).filter((p) => p.publishMode === PortConfig_PublishMode.INGRESS);
}

/** Task network modes that are not stored networks (the per-host bridge, the host's netns, none). */
export const BUILTIN_NETWORKS: ReadonlySet<string> = new Set(['host', 'none', 'bridge']);

/** The stored networks (their ids, once the control API resolved them) a task spec attaches to, in order. */
export function overlayTargets(spec: Readonly<TaskSpec> | undefined): string[] {
  return (spec?.networks ?? []).map((n) => n.target).filter((t) => !BUILTIN_NETWORKS.has(t));
}

/** Whether the allocator gave the task an address on every overlay network its spec names. */
export function networksAllocated(t: Readonly<Task>): boolean {
  return overlayTargets(t.spec).every((id) => t.networks.some((a) => a.networkId === id && a.addresses.length > 0));
}
