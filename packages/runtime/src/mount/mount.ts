/**
 * A mount as data, in containerd's shape: snapshotters return these and only mount/mounter.ts
 * turns them into mount(2) calls.
 */
export interface Mount {
  /** Filesystem type: "overlay", "bind", "tmpfs"... */
  type: string;
  /** "overlay" for overlayfs, a host path for a bind mount, "tmpfs"... */
  source: string;
  /** Where it goes, when the mount itself knows (otherwise the caller gives a target). */
  target?: string;
  /** mount -o options, e.g. ["lowerdir=a:b", "upperdir=u", "workdir=w"] or ["rbind", "ro"]. */
  options: string[];
}

/** The value of `key=` in a mount's options, if there. */
export function mountOption(m: Mount, key: string): string | undefined {
  const prefix = `${key}=`;
  return m.options.find((o) => o.startsWith(prefix))?.slice(prefix.length);
}

/** True when a bind mount is asked for (type "bind" or a "bind"/"rbind" option). */
export function isBind(m: Mount): boolean {
  return m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
}
