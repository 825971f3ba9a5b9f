import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { ControlService, DispatcherService, GetClusterRequest, EventsRequest, ListNodesRequest, PublishLogsRequest, type ControlServer } from '@swarmd/proto';
import { strictService, wireFormatError } from '../src/index.js';

const enc = (b: Uint8Array) => Buffer.from(b);
// What the security probes (e2e/test/security-probes.test.ts) found the generated decoders accept.
const LENGTH_PAST_END = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
const UNKNOWN_WIRE_TYPE = Buffer.from([0x0f, 0x01]);
const TRUNCATED_VARINT = Buffer.from([0x08, 0xff, 0xff, 0xff]);

test('the generated decoders take malformed bytes as a default request (why the check exists)', (t) => {
  t.is(GetClusterRequest.decode(LENGTH_PAST_END).clusterId, '');
  t.is(EventsRequest.decode(TRUNCATED_VARINT).sinceMs, 2097151);
});

test('wireFormatError: well-formed messages pass; a length past the end, an unknown wire type and an unending varint are named', (t) => {
  t.is(wireFormatError(Buffer.alloc(0)), undefined);
  t.is(wireFormatError(enc(GetClusterRequest.encode({ clusterId: 'c1' }).finish())), undefined);
  t.is(wireFormatError(enc(EventsRequest.encode(EventsRequest.fromPartial({ sinceMs: 2 ** 40, types: ['service'], names: ['a', 'b'] })).finish())), undefined);
  t.regex(wireFormatError(LENGTH_PAST_END) ?? '', /field 1: 4294967295 bytes announced at offset 0, 0 left/);
  t.regex(wireFormatError(UNKNOWN_WIRE_TYPE) ?? '', /wire type 7 .*no such wire type/);
  t.regex(wireFormatError(TRUNCATED_VARINT) ?? '', /field 1: a varint that never ends/);
  t.regex(wireFormatError(Buffer.from([0x0d, 0x01, 0x02])) ?? '', /32-bit value past the end/);
  t.regex(wireFormatError(Buffer.from([0x00])) ?? '', /field number 0/);
});

test('wireFormatError: every encoded message passes, and every strict prefix of one that cuts a field is refused', (t) => {
  fc.assert(
    fc.property(fc.string(), fc.array(fc.string(), { maxLength: 4 }), fc.nat(), (name, names, since) => {
      const b = enc(EventsRequest.encode(EventsRequest.fromPartial({ sinceMs: since, types: [name], names })).finish());
      if (wireFormatError(b) !== undefined) return false;
      // cutting inside the last field always leaves it incomplete
      return b.length === 0 || wireFormatError(b.subarray(0, b.length - 1)) !== undefined;
    }),
  );
  t.pass();
});

async function serve(t: { teardown(fn: () => void): void }): Promise<{ client: grpc.Client; calls: () => number }> {
  const server = new grpc.Server();
  let calls = 0;
  const control = {
    getCluster: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      calls++;
      cb(null, { cluster: undefined });
    },
    events: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      calls++;
      call.end();
    },
  } as unknown as ControlServer;
  const dispatcher = {
    // As the real handler reads it (for await), answering once the stream ends.
    publishLogs: (call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      void (async () => {
        for await (const _ of call as AsyncIterable<unknown>) calls++;
        cb(null, {});
      })();
    },
  };
  server.addService(...strictService(ControlService, control));
  server.addService(...strictService(DispatcherService, dispatcher));
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => {
    client.close();
    server.forceShutdown();
  });
  return { client, calls: () => calls };
}

const id = (b: Buffer) => b;
type Res = { code: grpc.status; details: string };
const unary = (c: grpc.Client, path: string, b: Buffer) =>
  new Promise<Res>((res) => c.makeUnaryRequest(path, id, id, b, (e) => res(e ? { code: e.code, details: e.details } : { code: grpc.status.OK, details: '' })));
const serverStream = (c: grpc.Client, path: string, b: Buffer) =>
  new Promise<Res>((res) => {
    const s = c.makeServerStreamRequest(path, id, id, b);
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.on('status', (st: grpc.StatusObject) => res({ code: st.code, details: st.details }));
  });
const clientStream = (c: grpc.Client, path: string, ...messages: Buffer[]) =>
  new Promise<Res>((res) => {
    const w = c.makeClientStreamRequest(path, id, id, (e) => res(e ? { code: e.code, details: e.details } : { code: grpc.status.OK, details: '' }));
    w.on('error', () => undefined);
    for (const b of messages) w.write(b);
    w.end();
  });

test('strictService: malformed requests are refused before the handler with INVALID_ARGUMENT naming the method and the fault, on client streams too; well-formed ones reach it', async (t) => {
  const { client: c, calls } = await serve(t);
  const bad = await unary(c, ControlService.getCluster.path, LENGTH_PAST_END);
  t.is(bad.code, grpc.status.INVALID_ARGUMENT);
  t.regex(bad.details, /malformed \/swarm\.v1\.Control\/GetCluster request \(6 bytes\): field 1: 4294967295 bytes announced/);
  t.is((await unary(c, ControlService.getCluster.path, enc(GetClusterRequest.encode({ clusterId: 'c1' }).finish()))).code, grpc.status.OK);

  const badStream = await serverStream(c, ControlService.events.path, TRUNCATED_VARINT);
  t.is(badStream.code, grpc.status.INVALID_ARGUMENT);
  t.regex(badStream.details, /malformed \/swarm\.v1\.Control\/Events request/);
  t.is((await serverStream(c, ControlService.events.path, enc(EventsRequest.encode(EventsRequest.fromPartial({})).finish()))).code, grpc.status.OK);

  const good = enc(PublishLogsRequest.encode(PublishLogsRequest.fromPartial({ sessionId: 's' })).finish());
  const badClient = await clientStream(c, DispatcherService.publishLogs.path, LENGTH_PAST_END);
  t.is(badClient.code, grpc.status.INVALID_ARGUMENT);
  t.regex(badClient.details, /malformed \/swarm\.v1\.Dispatcher\/PublishLogs request \(6 bytes\): field 1: 4294967295 bytes announced/);
  // a good message, then a malformed one: the first reaches the handler, the stream stops at the second
  const midway = await clientStream(c, DispatcherService.publishLogs.path, good, TRUNCATED_VARINT, good);
  t.is(midway.code, grpc.status.INVALID_ARGUMENT);
  t.regex(midway.details, /malformed \/swarm\.v1\.Dispatcher\/PublishLogs request/);
  t.is((await clientStream(c, DispatcherService.publishLogs.path, good, good)).code, grpc.status.OK);
  t.is((await unary(c, ControlService.listNodes.path, enc(ListNodesRequest.encode(ListNodesRequest.fromPartial({})).finish()))).code, grpc.status.UNIMPLEMENTED, 'no handler: as before');
  t.is(calls(), 2 + 1 + 2, 'only the well-formed requests and stream messages reached a handler');
});
