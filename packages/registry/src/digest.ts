import { createHash, type Hash } from 'node:crypto';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';

/** `sha256:<64 lowercase hex>`: the only digest algorithm the store keeps. */
export type Digest = string;

const SHA256 = /^sha256:[0-9a-f]{64}$/;

export function isDigest(d: string): boolean {
  return SHA256.test(d);
}

export function assertDigest(d: string, what = 'digest'): Digest {
  if (!SHA256.test(d)) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `invalid ${what} ${JSON.stringify(d)}: want sha256:<64 hex digits>`);
  return d;
}

/** The hex part of a digest (the file name in the store). */
export function digestHex(d: Digest): string {
  return assertDigest(d).slice('sha256:'.length);
}

export function sha256Of(data: Buffer | string): Digest {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

export function newDigester(): { hash: Hash; digest(): Digest } {
  const hash = createHash('sha256');
  return { hash, digest: () => 'sha256:' + hash.copy().digest('hex') };
}

/** A piece of content as manifests point at it. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}
