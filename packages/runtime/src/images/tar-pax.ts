/**
 * PAX records carry xattrs as `SCHILY.xattr.<name>=<bytes>`, and those bytes are often not text
 * (`security.capability` of ping, say). tar-stream decodes every PAX value as UTF-8, which
 * mangles them; so its PAX decoder is swapped, once per process, for one that is the same except
 * that xattr values are decoded byte for byte (latin1), for `paxXattrValue` to turn back into
 * the exact bytes. Should a tar-stream version not allow the swap, values stay UTF-8 and those
 * that did not survive decoding are reported as undefined (skipped) rather than written wrong.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const XATTR = 'SCHILY.xattr.';

type DecodePax = (buf: Buffer) => Record<string, string>;

function decodePaxBinaryXattrs(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  while (buf.length) {
    let i = 0;
    while (i < buf.length && buf[i] !== 32) i++;
    const len = parseInt(buf.subarray(0, i).toString(), 10);
    if (!len) return result;
    const rec = buf.subarray(i + 1, len - 1);
    const eq = rec.indexOf(0x3d); // '='
    if (eq === -1) return result;
    const key = rec.subarray(0, eq).toString('utf8');
    result[key] = rec.subarray(eq + 1).toString(key.startsWith(XATTR) ? 'latin1' : 'utf8');
    buf = buf.subarray(len);
  }
  return result;
}

let binary = false;
try {
  const req = createRequire(import.meta.url);
  const headers = req(join(dirname(req.resolve('tar-stream')), 'headers.js')) as { decodePax?: DecodePax };
  if (typeof headers.decodePax === 'function') {
    headers.decodePax = decodePaxBinaryXattrs;
    binary = true;
  }
} catch {
  binary = false;
}

/** The xattrs of an entry's PAX records: name → exact bytes (undefined when they were lost). */
export function paxXattrs(pax: unknown): Map<string, Buffer | undefined> {
  const out = new Map<string, Buffer | undefined>();
  if (!pax || typeof pax !== 'object') return out;
  for (const [k, v] of Object.entries(pax as Record<string, unknown>)) {
    if (!k.startsWith(XATTR) || typeof v !== 'string') continue;
    const name = k.slice(XATTR.length);
    if (binary) out.set(name, Buffer.from(v, 'latin1'));
    else out.set(name, v.includes('\uFFFD') ? undefined : Buffer.from(v, 'utf8'));
  }
  return out;
}
