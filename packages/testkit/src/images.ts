/**
 * Builds small real OCI/Docker images from Debian's busybox-static, so no test needs an outside
 * registry: layers are tar streams (tar-stream), gzip-compressed or plain, with an image config
 * and a manifest whose digests are real.
 */
import { createHash } from 'node:crypto';
import { readFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { run } from '@swarmd/common';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export const sha256 = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

export type LayerEntry =
  | { type: 'file'; path: string; content: Buffer | string; mode?: number; uid?: number; gid?: number }
  | { type: 'dir'; path: string; mode?: number; uid?: number; gid?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'link'; path: string; target: string } // hard link
  /** Deletes `path` from lower layers (a `.wh.` file). */
  | { type: 'whiteout'; path: string }
  /** Hides everything below `path` from lower layers (`.wh..wh..opq`). */
  | { type: 'opaque'; path: string };

/** A tar layer (uncompressed) from entries, in order. */
export async function tarLayer(entries: readonly LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((res, rej) => {
    pack.on('end', res);
    pack.on('error', rej);
  });
  const mtime = new Date(0);
  type H = Partial<tar.Header> & { name: string };
  const add = (h: H, body?: Buffer) =>
    new Promise<void>((res, rej) => {
      const cb = (e?: Error | null) => (e ? rej(e) : res());
      if (body) pack.entry({ uid: 0, gid: 0, ...h, mtime }, body, cb);
      else pack.entry({ uid: 0, gid: 0, ...h, mtime }, cb);
    });
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    switch (e.type) {
      case 'file': {
        const body = Buffer.isBuffer(e.content) ? e.content : Buffer.from(e.content);
        await add({ name: path, type: 'file', mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, size: body.length }, body);
        break;
      }
      case 'dir':
        await add({ name: path.endsWith('/') ? path : path + '/', type: 'directory', mode: e.mode ?? 0o755, uid: e.uid ?? 0, gid: e.gid ?? 0 });
        break;
      case 'symlink':
        await add({ name: path, type: 'symlink', linkname: e.target, mode: 0o777 });
        break;
      case 'link':
        await add({ name: path, type: 'link', linkname: e.target.replace(/^\/+/, ''), mode: 0o644 });
        break;
      case 'whiteout': {
        const i = path.lastIndexOf('/');
        await add({ name: `${path.slice(0, i + 1)}.wh.${path.slice(i + 1)}`, type: 'file', size: 0, mode: 0o644 }, Buffer.alloc(0));
        break;
      }
      case 'opaque':
        await add({ name: `${path.replace(/\/$/, '')}/.wh..wh..opq`, type: 'file', size: 0, mode: 0o644 }, Buffer.alloc(0));
        break;
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const BUSYBOX = '/bin/busybox';

/** The entries of a minimal root filesystem: busybox with every applet linked in /bin. */
export async function busyboxRootfsEntries(): Promise<LayerEntry[]> {
  const bin = await readFile(BUSYBOX).catch((err: unknown) => {
    throw new Error(`testkit: ${BUSYBOX} not found (apt-get install busybox-static)`, { cause: err });
  });
  const applets = (await run(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => a && a !== 'busybox');
  const entries: LayerEntry[] = [
    ...['bin', 'etc', 'dev', 'proc', 'sys', 'root', 'home', 'var', 'run'].map((d) => ({ type: 'dir' as const, path: d })),
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'file', path: 'bin/busybox', content: bin, mode: 0o755 },
    ...applets.map((a) => ({ type: 'symlink' as const, path: `bin/${a}`, target: 'busybox' })),
    {
      type: 'file',
      path: 'etc/passwd',
      content: 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n',
    },
    { type: 'file', path: 'etc/group', content: 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n' },
  ];
  return entries;
}

export interface ImageConfigInput {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  StopSignal?: string;
  Labels?: Record<string, string>;
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; Retries?: number; StartPeriod?: number };
}

export interface LayerInput {
  /** The uncompressed tar. */
  tar: Buffer;
  compression?: 'gzip' | 'none';
}

export interface BuiltLayer {
  mediaType: string;
  digest: string;
  size: number;
  diffId: string;
  data: Buffer;
}

export interface BuiltImage {
  format: 'oci' | 'docker';
  manifest: Buffer;
  manifestDigest: string;
  manifestMediaType: string;
  config: Buffer;
  configDigest: string;
  layers: BuiltLayer[];
}

export interface BuildImageOptions {
  layers: LayerInput[];
  config?: ImageConfigInput;
  /** Media types: OCI (default) or Docker schema2. */
  format?: 'oci' | 'docker';
  architecture?: string;
}

export function buildImage(opts: BuildImageOptions): BuiltImage {
  const format = opts.format ?? 'oci';
  const layers: BuiltLayer[] = opts.layers.map((l) => {
    const gz = (l.compression ?? 'gzip') === 'gzip';
    if (format === 'docker' && !gz) throw new Error('testkit: Docker schema2 layers are gzip');
    const data = gz ? gzipSync(l.tar) : l.tar;
    const mediaType = format === 'docker' ? MediaType.dockerLayerGzip : gz ? MediaType.ociLayerGzip : MediaType.ociLayer;
    return { mediaType, digest: sha256(data), size: data.length, diffId: sha256(l.tar), data };
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: opts.architecture ?? 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...opts.config },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map(() => ({ created: '1970-01-01T00:00:00Z', created_by: 'swarmd testkit' })),
    }),
  );
  const manifestMediaType = format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: manifestMediaType,
      config: { mediaType: format === 'docker' ? MediaType.dockerConfig : MediaType.ociConfig, digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }),
  );
  return { format, manifest, manifestDigest: sha256(manifest), manifestMediaType, config, configDigest: sha256(config), layers };
}

/** A one-layer busybox image; `extraLayers` go on top (e.g. to test whiteouts). */
export async function buildBusyboxImage(
  opts: { config?: ImageConfigInput; extraLayers?: LayerInput[]; compression?: 'gzip' | 'none'; format?: 'oci' | 'docker' } = {},
): Promise<BuiltImage> {
  const base = await tarLayer(await busyboxRootfsEntries());
  return buildImage({
    format: opts.format ?? 'oci',
    config: { Cmd: ['sh'], ...opts.config },
    layers: [{ tar: base, compression: opts.compression ?? 'gzip' }, ...(opts.extraLayers ?? [])],
  });
}

/** Writes an image as an OCI image layout directory (what skopeo, umoci and buildah read). */
export async function writeOciLayout(dir: string, image: BuiltImage, tag = 'latest'): Promise<void> {
  const blobs = join(dir, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });
  const put = (digest: string, data: Buffer) => writeFile(join(blobs, digest.slice('sha256:'.length)), data);
  await put(image.manifestDigest, image.manifest);
  await put(image.configDigest, image.config);
  for (const l of image.layers) await put(l.digest, l.data);
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: image.manifestMediaType,
          digest: image.manifestDigest,
          size: image.manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
}

/**
 * Pushes an OCI layout to a registry with skopeo (a real third-party client), keeping the
 * manifest bytes as they are, so the digest the test computed is the one the registry serves.
 */
export async function pushOciLayoutWithSkopeo(layoutDir: string, tag: string, destination: string): Promise<void> {
  await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--preserve-digests', `oci:${layoutDir}:${tag}`, `docker://${destination}`]);
}
