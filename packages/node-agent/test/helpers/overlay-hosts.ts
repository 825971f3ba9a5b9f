/**
 * Root-test helpers for overlay networks: two testkit hosts (network namespaces on an underlay
 * bridge), each with the agent's overlay layer, torn down after the test; commands in a netns.
 */
import { randomBytes } from 'node:crypto';
import { run } from '@swarmd/common';
import type { NetworkStateSet } from '@swarmd/proto';
import { createHosts, type TestHost, type TestHosts, type Teardown } from '@swarmd/testkit';
import { OverlayNetworking } from '../../src/networking/overlay/overlay-networking.js';
import { peer } from './overlay-env.js';

export interface OverlayNode {
  host: TestHost;
  nodeId: string;
  overlay: OverlayNetworking;
}

/** Two hosts, each with its overlay layer (nodes n1/n2 of a random run id), torn down after the test. */
export async function twoNodes(t: Teardown): Promise<{ hosts: TestHosts; nodes: [OverlayNode, OverlayNode] }> {
  const hosts = await createHosts(2, { t });
  const id = randomBytes(3).toString('hex');
  const nodes = hosts.hosts.map((host, i) => {
    const nodeId = `n${i + 1}-${id}`;
    const overlay = new OverlayNetworking({ nodeId, stateDir: host.stateDir, hostNetns: host.nsPath, underlayAddr: host.addr, dns: { upstreams: [] } });
    t.teardown(() => overlay.destroy());
    return { host, nodeId, overlay };
  }) as [OverlayNode, OverlayNode];
  return { hosts, nodes };
}

/** The same set pushed to every node. */
export const setAll = (nodes: OverlayNode[], s: NetworkStateSet) => Promise.all(nodes.map((n) => n.overlay.setState(s)));

/** A busybox applet in a netns (exit 1 is an answer, not an error). */
export const inNs = (nsPath: string, args: string[], timeoutMs = 10_000) => run('nsenter', [`--net=${nsPath}`, 'busybox', ...args], { okCodes: [0, 1], timeoutMs });

/** A peer of a service on node `n`. */
export const at = (n: OverlayNode, taskId: string, service: string, address: string, extra: { ready?: boolean } = {}) =>
  peer({ taskId, service, address, nodeId: n.nodeId, nodeAddr: n.host.addr, ...extra });
