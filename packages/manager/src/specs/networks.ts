import type { Task, TaskSpec } from '@swarmd/proto';

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
