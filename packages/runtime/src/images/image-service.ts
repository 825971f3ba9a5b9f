/**
 * Image management, the way containerd does it: content (manifests, configs, layers) in a
 * digest-addressed store, each layer unpacked once into a snapshot directory named by its chain
 * id, and image records that name what they use. Removing an image only drops its record;
 * `gc()` then deletes blobs and snapshots no record (and no lease, and no container) uses.
 *
 * Snapshots live in snapshots/layer-snapshots.ts (one per chain id, a lowerdir for overlayfs);
 * this service fills them by unpacking layers and tells their gc what to keep.
 * `layerDirs(image)` lists them top first, ready for `lowerdir=`.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { SwarmError, ErrorCode, wrapError, isSwarmError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { metrics, secondsSince } from '@swarmd/common/metrics';
import {
  checkCancelled,
  formatReference,
  MediaTypes,
  parseReference,
  RegistryClient,
  sha256Of,
  withTarget,
  type Credentials,
  type Descriptor,
  type Digest,
  type Platform,
  type Reference,
  type RegistryClientOptions,
} from '@swarmd/registry';
import { LocalContentStore } from '../content/content-store.js';
import { LayerSnapshots } from '../snapshots/layer-snapshots.js';
import { ImageStore, type ImageRecord } from './image-store.js';
import { hostPlatform, kindOf, parseConfig, parseIndex, parseManifest, parsePlatform, selectManifest, type ImageConfig, type ImageManifest } from './manifest.js';
import { unpackLayer } from './unpack.js';
import { importDockerArchive } from './docker-archive.js';
import { mapLimit, RwLock } from './util.js';

export interface PullProgress {
  /** `resolved`: the manifest is known; `layer`: a layer moved on; `done`: the image is recorded. */
  kind: 'resolved' | 'layer' | 'done';
  ref: string;
  digest?: Digest;
  status?: 'exists' | 'downloading' | 'downloaded' | 'unpacking' | 'unpacked';
  current?: number;
  total?: number;
}

export interface PullOptions {
  auth?: Credentials;
  /** `os/arch[/variant]` or an object; the host's platform by default. */
  platform?: string | Platform;
  onProgress?: (p: PullProgress) => void;
  /**
   * Stops the pull (CANCELLED). Downloads another pull shares are not cut short for it: a
   * pull waiting on a download whose starter was cancelled starts its own.
   */
  signal?: AbortSignal;
}

export interface PushOptions {
  auth?: Credentials;
  /** Local image to push (default: the destination reference itself). */
  source?: string;
}

/** An image held in memory (e.g. testkit's BuiltImage) that can be pushed as it is. */
export interface PushableImage {
  manifest: Buffer;
  manifestMediaType: string;
  config: Buffer;
  layers: readonly { digest: string; data: Buffer; mediaType?: string }[];
}

export interface GcResult {
  blobsRemoved: number;
  snapshotsRemoved: number;
  bytesFreed: number;
}

export interface ImageServiceOptions {
  /** The runtime root (`<state>/runtime`): content/, snapshots/, images/ go under it. */
  root: string;
  /** A client to share, or options for one. */
  registry?: RegistryClient | RegistryClientOptions;
  logger?: Logger;
  /** Layers downloaded (and unpacked) at once per pull (default 3). */
  concurrency?: number;
  /**
   * The container half's say on snapshots: gc keeps a snapshot for which this returns true
   * (e.g. a lowerdir of a container that exists), even when no image needs it any more.
   */
  isSnapshotInUse?: (chainId: Digest) => boolean | Promise<boolean>;
  /**
   * The same, asked once per gc: the lowerdirs containers use (e.g. the container half's
   * `ContainerService.layerDirsInUse()`); their snapshots are kept.
   */
  layerDirsInUse?: () => Promise<Iterable<string>>;
}

export class ImageService {
  readonly root: string;
  readonly content: LocalContentStore;
  readonly images: ImageStore;
  readonly registry: RegistryClient;
  /** Unpacked layers, one snapshot per chain id. */
  readonly snapshots: LayerSnapshots;
  readonly snapshotsDir: string;
  private readonly log: Logger;
  private readonly concurrency: number;
  private readonly ownsRegistry: boolean;
  private readonly isSnapshotInUse?: (chainId: Digest) => boolean | Promise<boolean>;
  private readonly layerDirsInUse?: () => Promise<Iterable<string>>;
  /** Pulls and imports hold it shared, gc exclusively. */
  private readonly gcLock = new RwLock();
  private readonly leases = new Map<number, Set<string>>();
  private nextLease = 1;

  constructor(opts: ImageServiceOptions) {
    this.root = opts.root;
    this.content = new LocalContentStore(opts.root);
    this.images = new ImageStore(opts.root);
    this.log = opts.logger ?? nullLogger;
    this.snapshots = new LayerSnapshots(opts.root, this.log);
    this.snapshotsDir = this.snapshots.dir;
    this.concurrency = opts.concurrency ?? 3;
    this.ownsRegistry = !(opts.registry instanceof RegistryClient);
    this.registry = opts.registry instanceof RegistryClient ? opts.registry : new RegistryClient({ logger: this.log, ...(opts.registry ?? {}) });
    this.isSnapshotInUse = opts.isSnapshotInUse;
    this.layerDirsInUse = opts.layerDirsInUse;
  }

  async init(): Promise<this> {
    await this.content.init();
    await this.snapshots.init();
    await mkdir(this.images.dir, { recursive: true });
    return this;
  }

  close(): void {
    if (this.ownsRegistry) this.registry.close();
  }

  /** The directory of a snapshot (its `fs/` is the layer's tree). */
  snapshotPath(chainId: Digest): string {
    return this.snapshots.path(chainId);
  }

  /** The tree of one snapshot: a lowerdir. */
  layerDirOf(chainId: Digest): string {
    return this.snapshots.layerDir(chainId);
  }

  /**
   * The chain id a lowerdir belongs to (the inverse of layerDirOf), or undefined for a path
   * that is not one of our snapshots: lets the container half answer isSnapshotInUse from the
   * lowerdirs it recorded for its containers.
   */
  chainIdOf(layerDir: string): Digest | undefined {
    return this.snapshots.chainIdOf(layerDir);
  }

  /** Overlay lowerdirs of an image, top layer first: `lowerdir=${dirs.join(':')}`. */
  layerDirs(image: ImageRecord): string[] {
    return image.chainIds.map((c) => this.layerDirOf(c)).reverse();
  }

  /** The image config (Entrypoint, Cmd, Env, User…). */
  async config(image: ImageRecord | string): Promise<ImageConfig> {
    const rec = typeof image === 'string' ? await this.get(image) : image;
    return parseConfig(await this.content.readAll(rec.config.digest), `config of ${rec.name}`);
  }

  /** A local image by reference; NOT_FOUND when absent. */
  async get(ref: string): Promise<ImageRecord> {
    const name = formatReference(parseReference(ref));
    const rec = await this.images.get(name);
    if (!rec) throw new SwarmError(ErrorCode.NOT_FOUND, `image ${ref}: not found locally`, { details: { reference: ref } });
    return rec;
  }

  list(): Promise<ImageRecord[]> {
    return this.images.list();
  }

  /** Drops the record of an image; its content goes at the next gc() unless still used. */
  async remove(ref: string): Promise<void> {
    const name = formatReference(parseReference(ref));
    try {
      await this.images.delete(name);
    } catch (err) {
      if (isSwarmError(err, ErrorCode.NOT_FOUND)) throw new SwarmError(ErrorCode.NOT_FOUND, `image ${ref}: not found locally`, { cause: err });
      throw err;
    }
  }

  /** Another name for a local image. */
  async tag(source: string, target: string): Promise<ImageRecord> {
    const rec = await this.get(source);
    const out = { ...rec, name: formatReference(parseReference(target)) };
    await this.images.put(out);
    return out;
  }

  /** What a reference points at in its registry (no download of layers). */
  async resolve(ref: string, o: { auth?: Credentials } = {}): Promise<Descriptor> {
    const r = parseReference(ref);
    return this.registry.repository(r, { auth: o.auth }).resolve(r.digest ?? r.tag ?? 'latest');
  }

  /**
   * Keeps content from gc while held: digests of blobs and chain ids of snapshots. Returns
   * the release function. (Pulls and imports hold one for what they fetch.)
   */
  lease(items: Iterable<string> = []): { add(item: string): void; release(): void } {
    const id = this.nextLease++;
    const set = new Set(items);
    this.leases.set(id, set);
    return { add: (i) => void set.add(i), release: () => void this.leases.delete(id) };
  }

  // ---------------------------------------------------------------- pull

  /**
   * The local image if there is one whose snapshots are all in place, else a pull (Docker's
   * "pull if missing"). A reference by digest never needs the registry once pulled.
   */
  async getOrPull(ref: string, o: PullOptions = {}): Promise<ImageRecord> {
    const rec = await this.get(ref).catch((err: unknown) => {
      if (isSwarmError(err, ErrorCode.NOT_FOUND)) return undefined;
      throw err;
    });
    if (rec) {
      const ready = await Promise.all(rec.chainIds.map((c) => this.snapshots.isReady(c)));
      if (ready.every(Boolean)) return rec;
    }
    const start = performance.now();
    try {
      const pulled = await this.pull(ref, o);
      metrics.imagePulls.inc({ result: 'ok' });
      metrics.imagePullSeconds.observe({ result: 'ok' }, secondsSince(start));
      return pulled;
    } catch (err) {
      metrics.imagePulls.inc({ result: 'error' });
      metrics.imagePullSeconds.observe({ result: 'error' }, secondsSince(start));
      throw err;
    }
  }

  async pull(ref: string, o: PullOptions = {}): Promise<ImageRecord> {
    const r = parseReference(ref);
    const name = formatReference(r);
    const want = typeof o.platform === 'string' ? parsePlatform(o.platform) : (o.platform ?? hostPlatform());
    const repo = this.registry.repository(r, { auth: o.auth, ...(o.signal ? { signal: o.signal } : {}) });
    const progress = (p: Omit<PullProgress, 'ref'>) => o.onProgress?.({ ref: name, ...p });
    return this.gcLock.shared(async () => {
      const lease = this.lease();
      try {
        // Manifests are stored with the record, once everything they name is in place.
        const top = await repo.getManifest(r.digest ?? r.tag ?? 'latest');
        lease.add(top.digest);
        const docs = [top];
        const target: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length };
        let manifestDesc = target;
        let manifestBytes = top.bytes;
        if (kindOf(top.mediaType) === 'index') {
          const index = parseIndex(top.bytes, `index ${name}`);
          manifestDesc = selectManifest(index, want, `image ${name}`);
          const m = await repo.getManifest(manifestDesc.digest);
          lease.add(m.digest);
          docs.push(m);
          manifestBytes = m.bytes;
        } else if (kindOf(top.mediaType) !== 'manifest') {
          throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `image ${name}: unsupported manifest media type ${JSON.stringify(top.mediaType)}`);
        }
        progress({ kind: 'resolved', digest: manifestDesc.digest });
        const manifest = parseManifest(manifestBytes, `manifest ${manifestDesc.digest} of ${name}`);
        const rec = await this.complete(name, target, manifestDesc, manifest, lease, {
          fetch: (d, onBytes) => repo.fetchBlobInto(this.content, d, onBytes),
          progress,
          platform: want,
          documents: docs,
          ...(o.signal ? { signal: o.signal } : {}),
        });
        progress({ kind: 'done', digest: manifestDesc.digest });
        return rec;
      } finally {
        lease.release();
      }
    });
  }

  /**
   * Fetches config and layers (each once), unpacks each layer once into its snapshot, and
   * writes the image record: shared by pull and the imports.
   */
  private async complete(
    name: string,
    target: Descriptor,
    manifestDesc: Descriptor,
    manifest: ImageManifest,
    lease: { add(i: string): void },
    src: {
      fetch: (d: Descriptor, onBytes?: (n: number) => void) => Promise<void>;
      progress?: (p: Omit<PullProgress, 'ref'>) => void;
      signal?: AbortSignal;
      platform?: Platform;
      /** Manifests and indexes to store along with the record. */
      documents?: { digest: Digest; bytes: Buffer }[];
    },
  ): Promise<ImageRecord> {
    const want = src.platform ?? hostPlatform();
    const progress = src.progress ?? (() => undefined);
    const what = `pull of ${name}`;
    // A shared download cancelled by the pull that started it is not our failure: start again.
    const ensure = async (d: Digest, fetch: () => Promise<void>) => {
      for (;;) {
        checkCancelled(src.signal, what);
        try {
          return await untilCancelled(this.content.ensure(d, fetch), src.signal, what);
        } catch (err) {
          if (isSwarmError(err, ErrorCode.CANCELLED) && !src.signal?.aborted) continue;
          throw err;
        }
      }
    };
    lease.add(manifest.config.digest);
    await ensure(manifest.config.digest, () => src.fetch(manifest.config));
    const config = parseConfig(await this.content.readAll(manifest.config.digest), `config ${manifest.config.digest} of ${name}`);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new SwarmError(ErrorCode.DATA_LOSS, `image ${name}: the manifest has ${manifest.layers.length} layers but the config ${diffIds.length} diff ids`);
    }
    const chainIds = chainIdsOf(diffIds);
    for (const l of manifest.layers) lease.add(l.digest);
    for (const c of chainIds) lease.add(c);
    await mapLimit(manifest.layers, this.concurrency, async (layer, i) => {
      checkCancelled(src.signal, what);
      if (await this.snapshots.isReady(chainIds[i])) {
        progress({ kind: 'layer', digest: layer.digest, status: 'exists' });
        return;
      }
      let current = 0;
      const how = await ensure(layer.digest, async () => {
        progress({ kind: 'layer', digest: layer.digest, status: 'downloading', current: 0, total: layer.size });
        await src.fetch(layer, (n) => {
          current += n;
          progress({ kind: 'layer', digest: layer.digest, status: 'downloading', current, total: layer.size });
        });
      });
      progress({ kind: 'layer', digest: layer.digest, status: how === 'exists' ? 'exists' : 'downloaded' });
      checkCancelled(src.signal, what);
      progress({ kind: 'layer', digest: layer.digest, status: 'unpacking' });
      await this.unpackSnapshot(chainIds[i], i > 0 ? chainIds[i - 1] : undefined, layer, diffIds[i]);
      progress({ kind: 'layer', digest: layer.digest, status: 'unpacked' });
    });
    checkCancelled(src.signal, what);
    if (config.os !== want.os || config.architecture !== want.architecture) {
      this.log.warn('images: the image is for another platform', { image: name, image_platform: `${config.os}/${config.architecture}`, wanted: `${want.os}/${want.architecture}` });
    }
    for (const d of src.documents ?? []) await this.content.put(d.bytes, d.digest);
    const rec: ImageRecord = {
      name,
      target,
      manifest: { mediaType: manifestDesc.mediaType, digest: manifestDesc.digest, size: manifestDesc.size },
      config: manifest.config,
      layers: manifest.layers,
      diffIds,
      chainIds,
      platform: { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) },
      createdAt: new Date().toISOString(),
      size: manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
    };
    await this.images.put(rec);
    return rec;
  }

  /** Unpacks a layer into the snapshot of its chain id, unless it is there. */
  private unpackSnapshot(chainId: Digest, parent: Digest | undefined, layer: Descriptor, diffId: Digest): Promise<void> {
    return this.snapshots.ensure({ chainId, diffId, ...(parent ? { parent } : {}), layer }, async (fsDir) => {
      const res = await unpackLayer(await this.content.read(layer.digest), fsDir, {
        expectedDiffId: diffId,
        layer: layer.digest,
        mediaType: layer.mediaType,
      });
      if (res.skippedXattrs.length) this.log.warn('images: xattrs not kept', { layer: layer.digest, xattrs: res.skippedXattrs });
      return { size: res.size };
    });
  }

  // ---------------------------------------------------------------- push

  /**
   * Pushes a local image: blobs the registry lacks (HEAD first), then the manifest under the
   * reference's tag (or digest). An image pulled from an index is pushed as its platform's
   * manifest unless every manifest of the index is present locally.
   */
  async push(ref: string, o: PushOptions = {}): Promise<Digest> {
    const dst = parseReference(ref);
    const rec = await this.get(o.source ?? ref);
    const repo = this.registry.repository(dst, { auth: o.auth, push: true });
    const tagOrDigest = dst.tag ?? dst.digest ?? 'latest';
    // Within one registry, ask it to mount blobs from the repository the image came from
    // instead of uploading them (it falls back to an upload when it cannot).
    const src = parseReference(rec.name);
    const mountFrom = src.domain === dst.domain && src.path !== dst.path ? src.path : undefined;
    const blobs = [rec.config, ...rec.layers];
    await mapLimit(blobs, this.concurrency, async (d) => {
      await this.content.info(d.digest);
      await repo.pushBlob(d, this.blobSource(d.digest), { mountFrom });
    });
    const manifestBytes = await this.content.readAll(rec.manifest.digest);
    if (rec.target.digest !== rec.manifest.digest) {
      const indexBytes = await this.content.readAll(rec.target.digest);
      const index = parseIndex(indexBytes, `index of ${rec.name}`);
      const complete = await this.allPresent(index.manifests);
      if (complete) {
        for (const m of index.manifests) {
          const mb = await this.content.readAll(m.digest);
          const man = parseManifest(mb, `manifest ${m.digest}`);
          await mapLimit([man.config, ...man.layers], this.concurrency, (d) => repo.pushBlob(d, this.blobSource(d.digest)).then(() => undefined));
          await repo.putManifest(m.digest, mb, m.mediaType);
        }
        return repo.putManifest(tagOrDigest, indexBytes, rec.target.mediaType);
      }
    }
    if (dst.digest && dst.digest !== rec.manifest.digest) {
      throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `push ${ref}: the local image has manifest ${rec.manifest.digest}, not ${dst.digest}`);
    }
    return repo.putManifest(tagOrDigest, manifestBytes, rec.manifest.mediaType);
  }

  /** A blob of the store as an upload source (whole, or a byte range for chunked uploads). */
  private blobSource(d: Digest): (range?: { start: number; end: number }) => Readable {
    const path = this.content.blobPath(d);
    return (range) => createReadStream(path, range ? { start: range.start, end: range.end - 1 } : {});
  }

  private async allPresent(manifests: Descriptor[]): Promise<boolean> {
    for (const m of manifests) {
      if (!(await this.content.exists(m.digest))) return false;
      const man = parseManifest(await this.content.readAll(m.digest), `manifest ${m.digest}`);
      for (const d of [man.config, ...man.layers]) if (!(await this.content.exists(d.digest))) return false;
    }
    return true;
  }

  /** Pushes an image held in memory (manifest bytes kept as they are, so its digest holds). */
  async pushImage(ref: string, img: PushableImage, o: { auth?: Credentials } = {}): Promise<Digest> {
    const dst = parseReference(ref);
    const repo = this.registry.repository(dst, { auth: o.auth, push: true });
    const configDigest = sha256Of(img.config);
    const blobs = [
      { desc: { mediaType: MediaTypes.ociConfig, digest: configDigest, size: img.config.length }, data: img.config },
      ...img.layers.map((l) => ({ desc: { mediaType: l.mediaType ?? MediaTypes.ociLayerGzip, digest: l.digest, size: l.data.length }, data: l.data })),
    ];
    await mapLimit(blobs, this.concurrency, (b) => repo.pushBlob(b.desc, b.data).then(() => undefined));
    return repo.putManifest(dst.tag ?? dst.digest ?? 'latest', img.manifest, img.manifestMediaType);
  }

  // ---------------------------------------------------------------- gc

  /**
   * Deletes blobs and snapshots that no image record, lease or in-use hook keeps, plus
   * leftovers of interrupted writes and unpacks. Waits for running pulls and imports.
   */
  gc(): Promise<GcResult> {
    return this.gcLock.exclusive(async () => {
      const keepBlobs = new Set<string>();
      const keepSnaps = new Set<string>();
      for (const set of this.leases.values()) for (const i of set) {
          keepBlobs.add(i);
          keepSnaps.add(i);
        }
      for (const rec of await this.images.list()) {
        keepBlobs.add(rec.target.digest);
        keepBlobs.add(rec.manifest.digest);
        keepBlobs.add(rec.config.digest);
        for (const l of rec.layers) keepBlobs.add(l.digest);
        for (const c of rec.chainIds) keepSnaps.add(c);
        if (rec.target.digest !== rec.manifest.digest && (await this.content.exists(rec.target.digest))) {
          // Sibling manifests of an index that happen to be here stay with it.
          try {
            for (const m of parseIndex(await this.content.readAll(rec.target.digest), rec.name).manifests) keepBlobs.add(m.digest);
          } catch {
            /* a broken index keeps only what the record names */
          }
        }
      }
      if (this.layerDirsInUse) {
        for (const dir of await this.layerDirsInUse()) {
          const c = this.chainIdOf(dir);
          if (c) keepSnaps.add(c);
        }
      }
      const res: GcResult = { blobsRemoved: 0, snapshotsRemoved: 0, bytesFreed: 0 };
      for (const b of await this.content.list()) {
        if (keepBlobs.has(b.digest)) continue;
        await this.content.delete(b.digest).catch(() => undefined);
        res.blobsRemoved++;
        res.bytesFreed += b.size;
      }
      await this.content.cleanIngest();
      const inUse = this.isSnapshotInUse;
      const pruned = await this.snapshots.prune(async (c) => keepSnaps.has(c) || (inUse !== undefined && (await inUse(c))));
      res.snapshotsRemoved += pruned.removed;
      res.bytesFreed += pruned.bytesFreed;
      this.log.debug('images: gc', { ...res });
      return res;
    });
  }

  // ---------------------------------------------------------------- imports

  /**
   * Imports an OCI image layout directory (`oci-layout`, `index.json`, `blobs/`) as `ref`. The
   * layout's manifest is the one annotated with `tag` (org.opencontainers.image.ref.name), or
   * its only one. Every blob is checked against its digest as it is copied in.
   */
  async importOciLayout(dir: string, ref: string, o: { tag?: string; platform?: string | Platform } = {}): Promise<ImageRecord> {
    const name = formatReference(parseReference(ref));
    const want = typeof o.platform === 'string' ? parsePlatform(o.platform) : (o.platform ?? hostPlatform());
    const what = `OCI layout ${dir}`;
    let indexBytes: Buffer;
    try {
      indexBytes = await readFile(join(dir, 'index.json'));
    } catch (err) {
      throw wrapError(ErrorCode.NOT_FOUND, `${what}: no index.json`, err);
    }
    const index = parseIndex(indexBytes, `${what}/index.json`);
    let desc: Descriptor | undefined;
    if (o.tag !== undefined) desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === o.tag);
    else if (index.manifests.length === 1) desc = index.manifests[0];
    else desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === (parseReference(ref).tag ?? 'latest'));
    if (!desc) throw new SwarmError(ErrorCode.NOT_FOUND, `${what}: no manifest${o.tag !== undefined ? ` tagged ${JSON.stringify(o.tag)}` : ''}`);
    const fetch = async (d: Descriptor) => {
      const w = await this.content.writer(`import-${d.digest.slice(7, 19)}`, d.digest);
      try {
        for await (const c of createReadStream(join(dir, 'blobs', ...d.digest.split(':'))) as AsyncIterable<Buffer>) await w.write(c);
        await w.commit(d.size);
      } catch (err) {
        await w.abort();
        if (isSwarmError(err)) throw err;
        throw wrapError(ErrorCode.NOT_FOUND, `${what}: blob ${d.digest}`, err);
      }
    };
    return this.gcLock.shared(async () => {
      const lease = this.lease();
      try {
        lease.add(desc.digest);
        await this.content.ensure(desc.digest, () => fetch(desc));
        const target = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
        let manifestDesc: Descriptor = target;
        if (kindOf(desc.mediaType) === 'index') {
          manifestDesc = selectManifest(parseIndex(await this.content.readAll(desc.digest), `${what} index ${desc.digest}`), want, `${what}`);
          lease.add(manifestDesc.digest);
          await this.content.ensure(manifestDesc.digest, () => fetch(manifestDesc));
        }
        const manifest = parseManifest(await this.content.readAll(manifestDesc.digest), `${what} manifest ${manifestDesc.digest}`);
        return await this.complete(name, target, manifestDesc, manifest, lease, { fetch, platform: want });
      } finally {
        lease.release();
      }
    });
  }

  /**
   * Imports a `docker save` archive (manifest.json + config JSON + layer tars, legacy or OCI
   * flavoured). Each tagged image of the archive becomes a record under its RepoTags; the
   * layers are stored as they are in the archive (uncompressed tars, usually) under an OCI
   * manifest made for them. Untagged images are skipped.
   */
  async importArchive(path: string): Promise<ImageRecord[]> {
    return this.gcLock.shared(async () => {
      const lease = this.lease();
      try {
        const images = await importDockerArchive(path, this.content, (d) => lease.add(d));
        const out: ImageRecord[] = [];
        for (const img of images) {
          if (img.repoTags.length === 0) {
            this.log.warn('images: skipping an untagged image of the archive', { path, config: img.manifest.config.digest });
            continue;
          }
          const manifestBytes = Buffer.from(JSON.stringify(img.manifest));
          const info = await this.content.put(manifestBytes);
          lease.add(info.digest);
          const desc = { mediaType: MediaTypes.ociManifest, digest: info.digest, size: manifestBytes.length };
          for (const tag of img.repoTags) {
            const name = formatReference(parseReference(tag));
            out.push(
              await this.complete(name, desc, desc, img.manifest, lease, {
                fetch: (d) => Promise.reject(new SwarmError(ErrorCode.DATA_LOSS, `archive ${path}: blob ${d.digest} missing`)),
              }),
            );
          }
        }
        return out;
      } finally {
        lease.release();
      }
    });
  }
}

/** Waits for `p`, or rejects with CANCELLED when `signal` fires first (p itself runs on). */
function untilCancelled<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new SwarmError(ErrorCode.CANCELLED, `${what}: cancelled`, { cause: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e instanceof Error ? e : new Error(String(e)))),
    );
  });
}

/** OCI chain ids: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + " " + diff(n)). */
export function chainIdsOf(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256Of(`${out[out.length - 1]} ${d}`));
  return out;
}

/** `name@digest` for a pulled image, when one wants to pin it. */
export function pinnedReference(ref: Reference, digest: Digest): string {
  return formatReference(withTarget(ref, { digest }));
}
