import * as os from 'node:os';
import type { NodeDescription } from '@swarmd/proto';

export const ENGINE_VERSION = '0.1.0';

const ARCH: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', arm: 'armv7l', ia32: 'i386', ppc64: 'ppc64le', s390x: 's390x' };

/** What the agent tells the dispatcher about its host (as `uname -m` / Docker name things). */
export function describeNode(o: { hostname?: string; labels?: Record<string, string>; engineVersion?: string } = {}): NodeDescription {
  return {
    hostname: o.hostname ?? os.hostname(),
    platform: { os: os.platform(), architecture: ARCH[os.arch()] ?? os.arch() },
    resources: { nanoCpus: Math.max(1, os.availableParallelism()) * 1e9, memoryBytes: os.totalmem() },
    engineVersion: o.engineVersion ?? ENGINE_VERSION,
    volumes: [], engineLabels: { ...(o.labels ?? {}) },
  };
}
