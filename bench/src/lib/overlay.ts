/** Shared by the overlay benches (bench:network, bench:lb): figures, a hand-built overlay network, waits. */
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '@swarmd/common';
import { Network } from '@swarmd/proto';

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** The p-th quantile (0..1) by rank. */
export const quantile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.max(0, Math.ceil(p * xs.length) - 1)];

/** An overlay network as the managers would push it: `prefix` is the /24's first three octets, the gateway .1. */
export function benchNetwork(id: string, vni: number, prefix: string): Network {
  return Network.fromPartial({
    id,
    spec: { annotations: { name: id }, driver: 'overlay' },
    vni,
    ipam: [{ subnet: `${prefix}.0/24`, gateway: `${prefix}.1` }],
  });
}

/** Resolves once something listens on TCP `port` in the netns (5 s at most). */
export async function waitListening(ns: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await run('nsenter', [`--net=${ns}`, 'ss', '-Hltn', `sport = :${port}`], { okCodes: [0, 1] });
    if (r.stdout.includes(`:${port}`)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on :${port} in ${ns}`);
}

/** Throws unless run as root with `tool` installed (Debian package `pkg`). */
export async function preflight(bench: string, tool: string, versionArgs: string[], pkg: string): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error(`${bench} needs root (network namespaces)`);
  await run(tool, versionArgs).catch(() => {
    throw new Error(`${tool} not found (apt-get install ${pkg})`);
  });
}
