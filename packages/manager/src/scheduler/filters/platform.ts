import type { Platform, Task } from '@swarmd/proto';
import { type Filter, nodeCount } from '../filter.js';
import type { NodeInfo } from '../node-info.js';

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', armhf: 'arm', armv7l: 'arm', i386: '386', i686: '386' };
const normArch = (a: string): string => ARCH_ALIASES[a.toLowerCase()] ?? a.toLowerCase();

/** One of the task's platforms (placement.platforms: os/architecture) matches the node's. */
export class PlatformFilter implements Filter {
  readonly name = 'platform';
  private platforms: readonly Platform[] = [];
  setTask(t: Readonly<Task>): boolean {
    this.platforms = t.spec?.placement?.platforms ?? [];
    return this.platforms.length > 0;
  }
  check(n: NodeInfo): boolean {
    const np = n.node.description?.platform;
    const os = (np?.os ?? '').toLowerCase();
    const arch = normArch(np?.architecture ?? '');
    return this.platforms.some((p) => (!p.os || p.os.toLowerCase() === os) && (!p.architecture || normArch(p.architecture) === arch));
  }
  explain(failed: number): string {
    return `unsupported platform on ${nodeCount(failed)}`;
  }
}
