import test from 'ava';
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import dnsPacket from 'dns-packet';
import { buildDnsIndex } from '../src/networking/overlay/dns-records.js';
import { DnsResolver, nameserversOf } from '../src/networking/overlay/dns-server.js';
import { overlayNet, peer, service, stateSet } from './helpers/overlay-env.js';

const n1 = { nodeId: 'n1', nodeAddr: '192.168.5.2' };
const set = (webAddrs: string[]) =>
  stateSet({
    network: overlayNet('front', 4097, '10.1.0.0/24'),
    peers: [...webAddrs.map((a, i) => peer({ taskId: `w${i}`, service: 'web', address: a, ...n1, slot: i + 1 })), peer({ taskId: 'd1', service: 'db', address: '10.1.0.5/24', ...n1 })],
    services: [service('web', { dnsrr: true }), service('db', { dnsrr: true })],
  });

const port = () => 20000 + Math.floor(Math.random() * 30000);

async function udpAsk(p: number, name: string): Promise<dnsPacket.DecodedPacket> {
  const s = createSocket('udp4');
  try {
    const got = new Promise<Buffer>((resolve) => s.once('message', resolve));
    s.send(dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), p, '127.0.0.1');
    return dnsPacket.decode(await got);
  } finally {
    s.close();
  }
}

async function tcpAsk(p: number, name: string): Promise<dnsPacket.DecodedPacket> {
  const c = connect({ host: '127.0.0.1', port: p });
  let buf = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    c.on('error', reject);
    c.on('connect', () => c.write(dnsPacket.streamEncode({ type: 'query', id: 7, questions: [{ type: 'A', name }] })));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        c.destroy();
        resolve(dnsPacket.decode(buf.subarray(2)));
      }
    });
  });
}

const rcode = (r: dnsPacket.DecodedPacket) => (r as unknown as { rcode: string }).rcode;
const data = (r: dnsPacket.DecodedPacket) => (r.answers ?? []).map((a) => (a as { data: string }).data);

/** An upstream resolver that answers every A query with 192.0.2.7. */
async function fakeUpstream(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const s = createSocket('udp4');
  s.on('message', (m, r) => {
    const q = dnsPacket.decode(m);
    s.send(dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ type: 'A', name: q.questions![0].name, ttl: 60, data: '192.0.2.7' }] }), r.port, r.address);
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  return s.address().port;
}

async function silentUpstream(t: { teardown(fn: () => unknown): void }): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  t.teardown(() => s.close());
  return s;
}

test('the resolver answers cluster names over UDP and TCP, authoritatively with the short TTL; a new index answers at once', async (t) => {
  const dns = new DnsResolver({ upstreams: [] });
  t.teardown(() => dns.closeAll());
  dns.setIndex(buildDnsIndex(set(['10.1.0.2/24', '10.1.0.3/24'])));
  const p = port();
  await dns.listen('front', '127.0.0.1', { port: p });
  const r = await udpAsk(p, 'tasks.web');
  t.is(r.id, 4242);
  t.true(r.flag_aa && r.flag_rd && r.flag_ra);
  t.deepEqual(data(r).sort(), ['10.1.0.2', '10.1.0.3']);
  t.is((r.answers![0] as { ttl: number }).ttl, 1);
  t.deepEqual(data(await tcpAsk(p, 'db')), ['10.1.0.5']);
  t.is(rcode(await udpAsk(p, 'tasks.unknown')), 'NXDOMAIN');
  dns.setIndex(buildDnsIndex(set(['10.1.0.4/24'])));
  t.deepEqual(data(await udpAsk(p, 'tasks.web')), ['10.1.0.4']);
});

test('other names are relayed to the host resolvers, over UDP and TCP; SERVFAIL within the bound when none answers', async (t) => {
  const up = await fakeUpstream(t);
  const dns = new DnsResolver({ upstreams: [`127.0.0.1:${up}`] });
  t.teardown(() => dns.closeAll());
  const p = port();
  await dns.listen('front', '127.0.0.1', { port: p });
  t.deepEqual(data(await udpAsk(p, 'example.org')), ['192.0.2.7']);

  const silent = await silentUpstream(t);
  const dead = new DnsResolver({ upstreams: [`127.0.0.1:${silent.address().port}`], forwardTimeoutMs: 300 });
  t.teardown(() => dead.closeAll());
  const p2 = port();
  await dead.listen('front', '127.0.0.1', { port: p2 });
  const t0 = Date.now();
  t.is(rcode(await udpAsk(p2, 'example.org')), 'SERVFAIL');
  t.is(rcode(await tcpAsk(p2, 'example.org')), 'SERVFAIL');
  t.true(Date.now() - t0 < 2000, `bounded (${Date.now() - t0} ms)`);
});

test('a UDP answer too large for the client is truncated (TC) to what fits; over TCP it comes whole', async (t) => {
  const dns = new DnsResolver({ upstreams: [] });
  t.teardown(() => dns.closeAll());
  dns.setIndex(buildDnsIndex(set(Array.from({ length: 60 }, (_, i) => `10.1.1.${i + 1}/16`))));
  const p = port();
  await dns.listen('front', '127.0.0.1', { port: p });
  const udp = await udpAsk(p, 'tasks.web');
  t.true(udp.flag_tc);
  t.true(data(udp).length > 0 && data(udp).length < 60);
  t.is(data(await tcpAsk(p, 'tasks.web')).length, 60);
});

test('closing a network frees its port', async (t) => {
  const dns = new DnsResolver({ upstreams: [] });
  const p = port();
  await dns.listen('front', '127.0.0.1', { port: p });
  await dns.close('front');
  const again = new DnsResolver({ upstreams: [] });
  await again.listen('front', '127.0.0.1', { port: p });
  t.deepEqual(again.networks(), ['front']);
  await again.closeAll();
});

test('nameservers are read from resolv.conf', (t) => {
  t.deepEqual(nameserversOf('# x\nsearch lan\nnameserver 10.0.0.2\nnameserver  1.1.1.1 \nnameserver ::1\n'), ['10.0.0.2', '1.1.1.1']);
});
