/**
 * Reads `docker save` archives: a tar with `manifest.json` ([{Config, RepoTags, Layers}]),
 * config JSON files and layer tars (legacy `<id>/layer.tar`, possibly symlinked to share a
 * layer, or OCI-style `blobs/sha256/<hex>`). Two passes over the file: the first reads
 * manifest.json and the symlinks, the second copies the files it names into the content store.
 */
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { SwarmError, ErrorCode, wrapError, isSwarmError } from '@swarmd/common/errors';
import type { ContentStore } from '../content/content-store.js';
import { MediaTypes, type Descriptor, type Digest } from '@swarmd/registry';
import type { ImageManifest } from './manifest.js';

export interface ArchiveImage {
  repoTags: string[];
  manifest: ImageManifest;
}

interface SaveManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

async function walk(path: string, onEntry: (h: tar.Header, body: Readable) => Promise<void>): Promise<void> {
  const extract = tar.extract();
  const feeding = pipeline(createReadStream(path), extract as unknown as NodeJS.WritableStream);
  let feedErr: unknown;
  const fed = feeding.catch((e: unknown) => {
    feedErr = e;
  });
  try {
    for await (const entry of extract) {
      await onEntry(entry.header, entry as unknown as Readable);
    }
    await fed;
    if (feedErr !== undefined) throw feedErr instanceof Error ? feedErr : new Error(`stream failed: ${JSON.stringify(feedErr)}`);
  } catch (err) {
    extract.destroy();
    await fed;
    if (isSwarmError(err)) throw err;
    throw wrapError(ErrorCode.INVALID_ARGUMENT, `archive ${path}: not a readable tar`, feedErr ?? err);
  }
}

const norm = (n: string) => posix.normalize(n.replace(/^\/+/, '')).replace(/\/+$/, '');

export async function importDockerArchive(path: string, store: ContentStore, onBlob: (d: Digest) => void): Promise<ArchiveImage[]> {
  let manifestJson: Buffer | undefined;
  const links = new Map<string, string>();
  await walk(path, async (h, body) => {
    const name = norm(h.name);
    if (name === 'manifest.json' && h.type === 'file') {
      const chunks: Buffer[] = [];
      for await (const c of body as AsyncIterable<Buffer>) chunks.push(c);
      manifestJson = Buffer.concat(chunks);
      return;
    }
    if (h.type === 'symlink') links.set(name, norm(posix.join(posix.dirname(name), h.linkname)));
    else if (h.type === 'link') links.set(name, norm(h.linkname));
    body.resume();
  });
  if (!manifestJson) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `archive ${path}: no manifest.json (not a docker save archive)`);
  let entries: SaveManifestEntry[];
  try {
    entries = JSON.parse(manifestJson.toString()) as SaveManifestEntry[];
    if (!Array.isArray(entries) || entries.some((e) => typeof e.Config !== 'string' || !Array.isArray(e.Layers))) throw new Error('unexpected shape');
  } catch (err) {
    throw wrapError(ErrorCode.INVALID_ARGUMENT, `archive ${path}: bad manifest.json`, err);
  }
  const resolve = (n: string) => {
    let cur = norm(n);
    for (let i = 0; i < 16 && links.has(cur); i++) cur = links.get(cur)!;
    return cur;
  };
  const wanted = new Set<string>();
  for (const e of entries) for (const f of [e.Config, ...e.Layers]) wanted.add(resolve(f));
  const stored = new Map<string, { digest: Digest; size: number; gzip: boolean }>();
  await walk(path, async (h, body) => {
    const name = norm(h.name);
    if (!wanted.has(name) || h.type !== 'file' || stored.has(name)) {
      body.resume();
      return;
    }
    const w = await store.writer(`archive-${posix.basename(name).slice(0, 40)}`, undefined);
    let head: Buffer | undefined;
    try {
      for await (const c of body as AsyncIterable<Buffer>) {
        head ??= c.subarray(0, 2);
        await w.write(c);
      }
      const info = await w.commit(h.size);
      onBlob(info.digest);
      stored.set(name, { digest: info.digest, size: info.size, gzip: head !== undefined && head[0] === 0x1f && head[1] === 0x8b });
    } catch (err) {
      await w.abort();
      throw err;
    }
  });
  const desc = (f: string, kind: 'config' | 'layer'): Descriptor => {
    const s = stored.get(resolve(f));
    if (!s) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `archive ${path}: ${f}, named in manifest.json, is not in the archive`);
    const mediaType = kind === 'config' ? MediaTypes.ociConfig : s.gzip ? MediaTypes.ociLayerGzip : MediaTypes.ociLayer;
    return { mediaType, digest: s.digest, size: s.size };
  };
  return entries.map((e) => ({
    repoTags: e.RepoTags ?? [],
    manifest: { schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: desc(e.Config, 'config'), layers: e.Layers.map((l) => desc(l, 'layer')) },
  }));
}
