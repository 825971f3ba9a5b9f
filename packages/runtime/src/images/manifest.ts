/** The JSON documents of images (OCI image spec / Docker schema2) and platform matching. */
import { arch as nodeArch } from 'node:os';
import { SwarmError, ErrorCode, wrapError } from '@swarmd/common/errors';
import { isIndexMediaType, isManifestMediaType, type Descriptor, type Platform } from '@swarmd/registry';

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of an image config (OCI `application/vnd.oci.image.config.v1+json`) we use. */
export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  created?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    StopSignal?: string;
    ExposedPorts?: Record<string, object>;
    Volumes?: Record<string, object>;
    Healthcheck?: { Test?: string[]; Interval?: number; Timeout?: number; Retries?: number; StartPeriod?: number };
  };
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw wrapError(ErrorCode.DATA_LOSS, `${what}: not valid JSON`, err);
  }
}

export function parseManifest(bytes: Buffer, what: string): ImageManifest {
  const m = parseJson<Partial<ImageManifest>>(bytes, what);
  if (m.schemaVersion !== 2 || !m.config || !Array.isArray(m.layers)) {
    throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${what}: not an image manifest (schemaVersion 2 with config and layers)`);
  }
  return m as ImageManifest;
}

export function parseIndex(bytes: Buffer, what: string): ImageIndex {
  const m = parseJson<Partial<ImageIndex>>(bytes, what);
  if (m.schemaVersion !== 2 || !Array.isArray(m.manifests)) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `${what}: not an image index`);
  return m as ImageIndex;
}

export function parseConfig(bytes: Buffer, what: string): ImageConfig {
  const c = parseJson<Partial<ImageConfig>>(bytes, what);
  if (!c.rootfs || !Array.isArray(c.rootfs.diff_ids)) throw new SwarmError(ErrorCode.DATA_LOSS, `${what}: image config without rootfs.diff_ids`);
  return c as ImageConfig;
}

export function kindOf(mediaType: string): 'index' | 'manifest' | 'unknown' {
  if (isIndexMediaType(mediaType)) return 'index';
  if (isManifestMediaType(mediaType)) return 'manifest';
  return 'unknown';
}

const GO_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** The platform of this machine, as images name it. */
export function hostPlatform(): Platform {
  const architecture = GO_ARCH[nodeArch()] ?? nodeArch();
  return { os: 'linux', architecture, ...(architecture === 'arm64' ? { variant: 'v8' } : {}) };
}

/** Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !p)) {
    throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `invalid platform ${JSON.stringify(s)}: want os/arch[/variant]`);
  }
  return { os: parts[0], architecture: parts[1], ...(parts[2] ? { variant: parts[2] } : {}) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** amd64 has no variant worth matching; arm64's default variant is v8. */
function normVariant(p: Platform): string {
  if (p.architecture === 'arm64') return p.variant ?? 'v8';
  if (p.architecture === 'amd64') return '';
  return p.variant ?? '';
}

export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have) return false;
  if (have.os !== want.os || have.architecture !== want.architecture) return false;
  return want.variant === undefined || normVariant(have) === normVariant(want);
}

/** Picks the manifest of an index for a platform (first match in index order). */
export function selectManifest(index: ImageIndex, want: Platform, what: string): Descriptor {
  const candidates = index.manifests.filter((d) => isManifestMediaType(d.mediaType) && platformMatches(d.platform, want));
  const pick = candidates[0];
  if (!pick) {
    const have = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : '?')).join(', ');
    throw new SwarmError(ErrorCode.NOT_FOUND, `${what}: no manifest for platform ${formatPlatform(want)} (the index has ${have || 'none'})`);
  }
  return pick;
}
