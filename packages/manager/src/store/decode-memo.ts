import { Endpoint, TaskSpec } from '@swarmd/proto';
import { deepFreeze } from './kinds.js';

/**
 * Decoding store entries without decoding the same task spec again for every task.
 *
 * Every task of a service carries its service's task spec and endpoint, byte for byte the same in
 * each (SharedTaskFields then keeps one frozen copy per service). Decoding them anyway was the
 * largest part of applying a scheduler's batch of assignments (a third of the store's apply in
 * bench:scheduler's "through the store" profile, plus the garbage). Inside `withDecodeMemo`, the
 * codecs of those two messages first compare the bytes they are asked to decode with the last
 * few they decoded and hand back the frozen result on a match: the memo of a pure function on
 * its exact input, so every member still builds the very same state from the same entry.
 *
 * The memo is on only while the store decodes an entry or a snapshot (synchronous, so nothing
 * else decodes meanwhile); the codecs' other users (requests, answers) get fresh, mutable objects.
 */

/** Distinct values kept per codec: a rolling update has two specs live at once, a rollback three. */
const KEPT = 8;

interface Reader {
  buf: Uint8Array;
  pos: number;
}

type Decode<T> = (input: Reader | Uint8Array, length?: number) => T;

interface Memoized<T> {
  codec: { decode: Decode<T> };
  plain: Decode<T>;
  memo: Decode<T>;
}

function memoize<T>(codec: { decode: Decode<T> }): Memoized<T> {
  const plain = codec.decode.bind(codec);
  /** Most recently used first. */
  const kept: { bytes: Buffer; value: T }[] = [];
  const memo: Decode<T> = (input, length) => {
    if (length === undefined || input instanceof Uint8Array) return plain(input, length);
    const bytes = Buffer.from(input.buf.buffer, input.buf.byteOffset + input.pos, length);
    for (let i = 0; i < kept.length; i++) {
      const k = kept[i];
      if (k.bytes.length !== length || !k.bytes.equals(bytes)) continue;
      input.pos += length;
      if (i > 0) kept.unshift(...kept.splice(i, 1));
      return k.value;
    }
    const value = deepFreeze(plain(input, length)) as T;
    kept.unshift({ bytes: Buffer.from(bytes), value });
    if (kept.length > KEPT) kept.length = KEPT;
    return value;
  };
  return { codec, plain, memo };
}

const MEMOIZED = [memoize<TaskSpec>(TaskSpec as { decode: Decode<TaskSpec> }), memoize<Endpoint>(Endpoint as { decode: Decode<Endpoint> })];

/** Runs `fn` (a synchronous decode) with the memo on; the decoded task specs and endpoints come frozen and may be shared. */
export function withDecodeMemo<T>(fn: () => T): T {
  for (const m of MEMOIZED) m.codec.decode = m.memo;
  try {
    return fn();
  } finally {
    for (const m of MEMOIZED) m.codec.decode = m.plain;
  }
}
