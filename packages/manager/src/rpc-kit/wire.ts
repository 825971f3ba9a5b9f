import type { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { toGrpcError } from '../ca/grpc-auth.js';

/**
 * Why `b` is not a well-formed protobuf message at its top level, or undefined when it is. The
 * generated decoders (protobufjs) are lenient: a length past the end reads as an empty string, a
 * truncated 64-bit varint as a number, so malformed bytes would reach a handler as a default
 * request. This walks every field: tags, varints of at most 10 bytes that end inside the
 * message, lengths and fixed-width values that fit, and the wire types proto3 uses (0, 1, 2, 5).
 * Nested messages are left to the decoder and the handlers' own checks.
 */
export function wireFormatError(b: Uint8Array): string | undefined {
  let pos = 0;
  const varint = (): number | undefined => {
    let v = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= b.length) return undefined;
      const byte = b[pos++];
      v += (byte & 0x7f) * 2 ** (7 * i);
      if (byte < 0x80) return v;
    }
    return undefined;
  };
  while (pos < b.length) {
    const at = pos;
    const tag = varint();
    if (tag === undefined) return `a tag that never ends at offset ${at}`;
    const field = Math.floor(tag / 8);
    const type = tag % 8;
    if (field === 0 || field > 0x1fffffff) return `field number ${field} at offset ${at}`;
    if (type === 0) {
      if (varint() === undefined) return `field ${field}: a varint that never ends at offset ${at}`;
    } else if (type === 1 || type === 5) {
      pos += type === 1 ? 8 : 4;
      if (pos > b.length) return `field ${field}: a ${type === 1 ? 64 : 32}-bit value past the end at offset ${at}`;
    } else if (type === 2) {
      const len = varint();
      if (len === undefined) return `field ${field}: a length that never ends at offset ${at}`;
      if (len > b.length - pos) return `field ${field}: ${len} bytes announced at offset ${at}, ${b.length - pos} left`;
      pos += len;
    } else {
      return `field ${field}: wire type ${type} at offset ${at} (${type === 3 || type === 4 ? 'groups are not used' : 'no such wire type'})`;
    }
  }
  return undefined;
}

const MALFORMED = Symbol('malformed request');
interface Malformed {
  [MALFORMED]: string;
}
const isMalformed = (v: unknown): v is Malformed => typeof v === 'object' && v !== null && MALFORMED in v;

/**
 * A service definition and implementation that refuse malformed requests (wireFormatError)
 * before any handler sees them, with INVALID_ARGUMENT naming the method and the fault:
 * - a unary or server-streaming call at once (the handler never runs);
 * - a client stream at its first malformed message: the handler reads the stream itself, so the
 *   decoder hands grpc-js a marker instead of throwing (a throwing decoder makes grpc-js answer
 *   INTERNAL "Error deserializing request"), and the stream stops there: the marker never reaches
 *   the handler (the stream ends as if the client had closed it), the call is answered with the
 *   refusal, and whatever the handler answers later is dropped.
 */
export function strictService<D extends grpc.ServiceDefinition>(definition: D, implementation: grpc.UntypedServiceImplementation): [D, grpc.UntypedServiceImplementation] {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const impl: grpc.UntypedServiceImplementation = { ...implementation };
  for (const [name, m] of Object.entries(definition) as [string, grpc.MethodDefinition<unknown, unknown>][]) {
    const refusal = (b: Buffer): string | undefined => {
      const why = wireFormatError(b);
      return why && `malformed ${m.path} request (${b.length} bytes): ${why}`;
    };
    def[name] = {
      ...m,
      requestDeserialize: (b: Buffer): unknown => {
        const why = refusal(b);
        return why ? { [MALFORMED]: why } : m.requestDeserialize(b);
      },
    };
    const handler = implementation[name] as ((call: unknown, cb?: unknown) => void) | undefined;
    if (!handler) continue;
    impl[name] = (m.requestStream ? guardClientStream(handler, m.responseStream) : guardRequest(handler, m.responseStream)) as grpc.UntypedHandleCall;
  }
  return [def as D, impl];
}

type Refuse = (call: { emit?: (e: string, err: unknown) => void }, cb: grpc.sendUnaryData<unknown> | undefined, why: string) => void;

const refuseCall =
  (responseStream: boolean): Refuse =>
  (call, cb, why) => {
    const err = toGrpcError(new SwarmError(ErrorCode.INVALID_ARGUMENT, why));
    if (responseStream) call.emit?.('error', err);
    else cb?.(err);
  };

/** Unary and server-streaming calls: one request, checked before the handler runs. */
function guardRequest(handler: (call: unknown, cb?: unknown) => void, responseStream: boolean) {
  const refuse = refuseCall(responseStream);
  return (call: { request: unknown; emit?: (e: string, err: unknown) => void }, cb?: grpc.sendUnaryData<unknown>) => {
    if (isMalformed(call.request)) return refuse(call, cb, call.request[MALFORMED]);
    handler(call, cb);
  };
}

/**
 * Client streams: grpc-js pushes each decoded message into the call (a Readable); the first
 * malformed one is refused and ends the stream instead of being pushed.
 */
function guardClientStream(handler: (call: unknown, cb?: unknown) => void, responseStream: boolean) {
  const refuse = refuseCall(responseStream);
  return (call: Readable & { emit: (e: string, err: unknown) => boolean }, cb?: grpc.sendUnaryData<unknown>) => {
    let refused = false;
    const push = call.push.bind(call);
    call.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (refused) return false;
      if (!isMalformed(chunk)) return push(chunk, encoding);
      refused = true;
      refuse(call, cb, chunk[MALFORMED]);
      push(null);
      return false;
    };
    const answer = cb && ((err: grpc.ServerErrorResponse | null, value?: unknown) => (refused ? undefined : cb(err, value)));
    handler(call, answer);
  };
}
