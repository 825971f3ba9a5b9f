/**
 * A container's OCI bundle and rootfs: what create is given is checked first (layers, command,
 * signal, netns, mounts), then the overlay snapshot is prepared and mounted at rootfs/, the
 * /etc files are generated, the user is resolved in the image, named volumes are created on first
 * use (seeded with the image's files at their target: Docker's copy-up), and config.json is
 * written. Also the unmount of it all when the container goes.
 */
import { cp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { invalidArgument, notFound, SwarmError, ErrorCode } from '@swarmd/common/errors';
import { mountsUnder, type Mounter } from '../mount/mounter.js';
import type { OverlaySnapshotter } from '../snapshots/overlay-snapshotter.js';
import { buildSpec, defaultSeccompProfile, ownNofileLimit, hostsFile, normalizeSignal, planProcess, resolvConfFile } from '../oci/spec-builder.js';
import { resolveInRoot } from '../oci/rootfs-path.js';
import { resolveUser } from '../oci/user.js';
import type { ContainerSpec, ImageRuntimeConfig, MountSpec } from '../oci/types.js';
import { checkVolumeDriver, checkVolumeName, type VolumeStore } from '../volumes/volume-store.js';
import { pathExists, type ContainerFiles } from './container-records.js';
import type { CreateContainerOptions, NetworkInput } from './container-types.js';

/** What create was given, checked, with the defaults filled in. */
export interface CheckedInput {
  image: { layers: string[]; config: ImageRuntimeConfig };
  spec: ContainerSpec;
  stopSignal: string;
}

export interface BundleInput {
  id: string;
  image: { layers: string[]; config: ImageRuntimeConfig };
  spec: ContainerSpec;
  hostname: string;
  netnsPath?: string;
  /** Awaited only for resolv.conf and config.json (CreateContainerOptions.network). */
  network?: Promise<NetworkInput>;
  cgroupsPath: string;
}

export interface BundleDeps {
  snapshotter: OverlaySnapshotter;
  mounter: Mounter;
  volumes: VolumeStore;
  /** The host's resolv.conf (default /etc/resolv.conf). */
  hostResolvConf?: string;
}

export class BundleMaker {
  constructor(private readonly d: BundleDeps) {}

  /** Checks everything that can be checked before touching the disk. */
  async check(id: string, o: CreateContainerOptions): Promise<CheckedInput> {
    const spec = o.spec ?? {};
    const image = { layers: [...o.image.layers], config: o.image.config ?? {} };
    if (image.layers.length === 0) throw invalidArgument(`container ${id}: the image has no layers (no rootfs to run)`);
    for (const l of image.layers) {
      if (!(await stat(l).then((s) => s.isDirectory(), () => false))) {
        throw notFound(`container ${id}: rootfs layer ${l} does not exist (is the image unpacked?)`);
      }
    }
    planProcess(image.config, spec);
    const stopSignal = normalizeSignal(spec.stopSignal ?? (image.config.StopSignal || 'SIGTERM'));
    if (o.netnsPath !== undefined && !(await pathExists(o.netnsPath))) {
      throw invalidArgument(`container ${id}: network namespace ${o.netnsPath} does not exist`);
    }
    await checkMounts(spec.mounts ?? []);
    return { image, spec, stopSignal };
  }

  /**
   * Prepares the snapshot and mounts the rootfs (while the /etc files are written), then
   * resolves the user, makes named volumes and writes config.json. Volumes this call creates
   * are pushed to `createdVolumes` as they come, so a caller that fails later removes them.
   * `phase` marks the end of the snapshot and of the mounts (create's timing log).
   */
  async prepare(f: ContainerFiles, b: BundleInput, createdVolumes: string[], phase: (name: string) => void): Promise<NetworkInput> {
    const { image } = b;
    let spec = b.spec;
    let netnsPath = b.netnsPath;
    const mounts = await this.d.snapshotter.prepare(b.id, image.layers);
    phase('prepare');
    const etcFiles = { hosts: join(f.etc, 'hosts'), hostname: join(f.etc, 'hostname'), resolvConf: join(f.etc, 'resolv.conf') };
    const writeEtc = async () => {
      const hostResolv = await readFile(this.d.hostResolvConf ?? '/etc/resolv.conf', 'utf8').catch(() => '');
      if (b.network) {
        const net = await b.network;
        if (net.dns) spec = { ...spec, dns: net.dns };
        if (net.netnsPath !== undefined) netnsPath = net.netnsPath;
        if (netnsPath !== undefined && !(await pathExists(netnsPath))) {
          throw invalidArgument(`container ${b.id}: network namespace ${netnsPath} does not exist`);
        }
      }
      await Promise.all([
        writeFile(etcFiles.hosts, hostsFile(b.hostname, spec.extraHosts)),
        writeFile(etcFiles.hostname, b.hostname + '\n'),
        writeFile(etcFiles.resolvConf, resolvConfFile(spec.dns, hostResolv)),
      ]);
    };
    const mountAll = async () => {
      for (const m of mounts) await this.d.mounter.mount(m, f.rootfs);
    };
    // Both finish before an error is handled, so cleanup never races a mount in flight.
    const settled = await Promise.allSettled([mountAll(), writeEtc()]);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    phase(b.network ? 'mountAndNetwork' : 'mount');
    const user = await resolveUser(f.rootfs, spec.user ?? image.config.User ?? '');

    const mountSources: (string | undefined)[] = [];
    for (const m of spec.mounts ?? []) {
      if (m.type === 'bind') mountSources.push(resolve(m.source));
      else if (m.type === 'volume') {
        const { volume, created } = await this.d.volumes.ensure(m.source, { ...(m.driver ? { driver: m.driver } : {}) });
        if (created) {
          createdVolumes.push(m.source);
          if (!m.noCopy) await copyUp(f.rootfs, m.target, volume.mountpoint);
        }
        mountSources.push(volume.mountpoint);
      } else mountSources.push(undefined);
    }

    const oci = buildSpec({
      id: b.id,
      rootfs: f.rootfs,
      image: image.config,
      spec,
      user,
      ...(netnsPath !== undefined ? { netnsPath } : {}),
      cgroupsPath: b.cgroupsPath,
      etcFiles,
      mountSources,
      seccomp: defaultSeccompProfile(),
      defaultNofile: ownNofileLimit(),
    });
    await writeFile(f.config, JSON.stringify(oci, null, 1));
    return { ...(netnsPath !== undefined ? { netnsPath } : {}), ...(spec.dns ? { dns: spec.dns } : {}) };
  }

  /** Unmounts everything under the bundle (rootfs and all); INTERNAL if something stays. */
  async unmount(id: string, f: ContainerFiles): Promise<void> {
    await this.d.mounter.unmountAll(f.bundle);
    const left = await mountsUnder(f.bundle);
    if (left.length) throw new SwarmError(ErrorCode.INTERNAL, `container ${id}: still mounted: ${left.join(', ')}`);
  }
}

async function checkMounts(mounts: readonly MountSpec[]): Promise<void> {
  for (const m of mounts) {
    const t = m.target as string | undefined;
    if (!t || !t.startsWith('/')) throw invalidArgument(`mount target "${t ?? ''}" must be an absolute path`);
    switch (m.type) {
      case 'bind':
        if (!m.source || !m.source.startsWith('/')) throw invalidArgument(`bind mount ${t}: source "${m.source}" must be an absolute host path`);
        if (!(await pathExists(m.source))) throw invalidArgument(`bind mount ${t}: source ${m.source} does not exist`);
        break;
      case 'volume':
        checkVolumeDriver(m.driver, m.source);
        checkVolumeName(m.source);
        break;
      case 'tmpfs':
        break;
      default:
        throw invalidArgument(`mount ${t}: type "${(m as { type: string }).type}" is not supported (bind, volume, tmpfs)`);
    }
  }
}

/** A new volume starts with what the image has at the mount point (Docker's copy-up). */
async function copyUp(rootfs: string, target: string, data: string): Promise<void> {
  const src = await resolveInRoot(rootfs, target);
  const st = await stat(src).catch(() => undefined);
  if (!st?.isDirectory()) return;
  const entries = await readdir(src);
  for (const e of entries) await cp(join(src, e), join(data, e), { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
}
