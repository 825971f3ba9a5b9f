/**
 * The embedded resolver of a host: UDP and TCP on port 53 of each overlay bridge's gateway
 * address (one pair of sockets per network, so the socket names the network and the source
 * address names the task). Answers come from dns-records.ts over the latest index (swapped
 * whole by setIndex); names it does not own are relayed as they are to the host's resolvers
 * (/etc/resolv.conf), SERVFAIL when none answers within `forwardTimeoutMs`.
 */
import { createSocket, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { connect, type Server, type Socket as TcpSocket } from 'node:net';
import dnsPacket from 'dns-packet';
import { describeError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { answerQuery, buildDnsIndex, type DnsAnswer, type DnsIndex } from './dns-records.js';
import { bindSockets } from './netns-bind.js';

const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

export interface DnsResolverOptions {
  /** Upstream resolvers (IP or IP:PORT); default: the nameservers of /etc/resolv.conf. */
  upstreams?: string[];
  /** Bound on a forwarded query, all upstreams together (default 2000 ms). */
  forwardTimeoutMs?: number;
  logger?: Logger;
}

interface Listener {
  address: string;
  udp: Socket;
  tcp: Server;
  conns: Set<TcpSocket>;
}

/** The nameservers of a resolv.conf text. */
export function nameserversOf(text: string): string[] {
  return [...text.matchAll(/^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/gm)].map((m) => m[1]);
}

function hostPort(s: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(s);
  return m ? { host: m[1], port: Number(m[2]) } : { host: s, port: 53 };
}

export class DnsResolver {
  private index: DnsIndex = buildDnsIndex({ networks: [] });
  private readonly listeners = new Map<string, Listener>();
  private readonly log: Logger;
  private upstreams: Promise<string[]> | undefined;
  private turn = 0;

  constructor(private readonly o: DnsResolverOptions = {}) {
    this.log = o.logger ?? nullLogger;
  }

  /** New answers at once, for every network. */
  setIndex(index: DnsIndex): void {
    this.index = index;
  }

  networks(): string[] {
    return [...this.listeners.keys()];
  }

  /** Listens on `address:port` for `networkId` (in `netns` when given). Idempotent per network. */
  async listen(networkId: string, address: string, o: { port?: number; netns?: string } = {}): Promise<void> {
    if (this.listeners.get(networkId)?.address === address) return;
    await this.close(networkId);
    const { udp, tcp } = await bindSockets(address, o.port ?? 53, o.netns);
    const l: Listener = { address, udp, tcp, conns: new Set() };
    udp.on('message', (msg, rinfo) => {
      void this.respond(networkId, rinfo.address, msg, 'udp').then((out) => {
        if (out) udp.send(out, rinfo.port, rinfo.address);
      });
    });
    udp.on('error', (err) => this.log.warn('dns udp socket error', { network: networkId, err: describeError(err) }));
    tcp.on('connection', (c) => this.serveTcp(networkId, c, l));
    tcp.on('error', (err) => this.log.warn('dns tcp socket error', { network: networkId, err: describeError(err) }));
    this.listeners.set(networkId, l);
  }

  async close(networkId: string): Promise<void> {
    const l = this.listeners.get(networkId);
    if (!l) return;
    this.listeners.delete(networkId);
    for (const c of l.conns) c.destroy();
    await Promise.all([new Promise<void>((r) => l.udp.close(() => r())), new Promise<void>((r) => l.tcp.close(() => r()))]);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((id) => this.close(id)));
  }

  private serveTcp(networkId: string, c: TcpSocket, l: Listener): void {
    l.conns.add(c);
    c.setTimeout(10_000, () => c.destroy());
    c.on('close', () => l.conns.delete(c));
    c.on('error', () => c.destroy());
    let buf = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.respond(networkId, c.remoteAddress?.replace(/^::ffff:/, '') ?? '', msg, 'tcp').then((out) => {
          if (out && !c.destroyed) c.write(Buffer.concat([u16(out.length), out]));
        });
      }
    });
  }

  /** The response to one query message (undefined: not a query, dropped). */
  async respond(networkId: string, from: string, msg: Buffer, proto: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return undefined;
    }
    const question = q.questions?.[0];
    if (q.type !== 'query' || !question) return undefined;
    const a: DnsAnswer = answerQuery(this.index, { networkId, address: from }, { name: question.name, type: question.type }, this.turn++);
    if (a.kind === 'forward') {
      const relayed = await this.forward(msg, proto);
      if (relayed) return relayed;
      return reply(q, RCODE.SERVFAIL, []);
    }
    if (a.kind === 'refused') return reply(q, RCODE.REFUSED, []);
    const out = reply(q, RCODE[a.rcode], a.answers, dnsPacket.AUTHORITATIVE_ANSWER);
    return proto === 'udp' ? fitUdp(q, out, a.answers) : out;
  }

  private upstreamList(): Promise<string[]> {
    this.upstreams ??= this.o.upstreams
      ? Promise.resolve(this.o.upstreams)
      : readFile('/etc/resolv.conf', 'utf8').then(nameserversOf, () => []);
    return this.upstreams;
  }

  /** Relays a query to the upstreams in turn within the time bound; undefined when none answers. */
  private async forward(msg: Buffer, proto: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    const ups = await this.upstreamList();
    if (!ups.length) return undefined;
    const deadline = Date.now() + (this.o.forwardTimeoutMs ?? 2000);
    for (let i = 0; i < ups.length; i++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      const per = Math.max(1, Math.floor(left / (ups.length - i)));
      const up = hostPort(ups[i]);
      const r = await (proto === 'udp' ? forwardUdp(msg, up, per) : forwardTcp(msg, up, per)).catch(() => undefined);
      if (r) return r;
    }
    return undefined;
  }
}

const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};

/**
 * A UDP answer larger than the client takes (512 bytes, or its EDNS payload size) goes with the
 * records that fit and the TC flag, so the client asks again over TCP (tasks.SERVICE of a large
 * service).
 */
function fitUdp(q: dnsPacket.DecodedPacket, out: Buffer, answers: dnsPacket.Answer[]): Buffer {
  const opt = q.additionals?.find((r): r is dnsPacket.OptAnswer => r.type === 'OPT');
  const max = Math.max(512, opt?.udpPayloadSize ?? 512);
  if (out.length <= max) return out;
  let n = answers.length;
  let fit = out;
  while (n > 0 && fit.length > max) fit = reply(q, RCODE.NOERROR, answers.slice(0, --n), dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.TRUNCATED_RESPONSE);
  return fit;
}

function reply(q: dnsPacket.DecodedPacket, rcode: number, answers: dnsPacket.Answer[], extraFlags = 0): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | extraFlags | rcode,
    questions: q.questions,
    answers,
  });
}

/** A promise settled once: by `start`'s callback, or undefined after `timeoutMs`; `close` runs then. */
function settleOnce<T>(timeoutMs: number, close: () => void, start: (done: (r: T | undefined) => void) => void): Promise<T | undefined> {
  return new Promise((resolve) => {
    const done = (r: T | undefined) => {
      clearTimeout(timer);
      close();
      resolve(r);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    start(done);
  });
}

function forwardUdp(msg: Buffer, up: { host: string; port: number }, timeoutMs: number): Promise<Buffer | undefined> {
  const s = createSocket('udp4');
  return settleOnce<Buffer>(timeoutMs, () => s.close(), (done) => {
    s.on('error', () => done(undefined));
    s.on('message', (m, rinfo) => {
      // Only the upstream's answer to this query (same id) counts.
      if (rinfo.address === up.host && m.length >= 2 && m.readUInt16BE(0) === msg.readUInt16BE(0)) done(m);
    });
    s.send(msg, up.port, up.host, (err) => err && done(undefined));
  });
}

function forwardTcp(msg: Buffer, up: { host: string; port: number }, timeoutMs: number): Promise<Buffer | undefined> {
  const c = connect({ host: up.host, port: up.port });
  let buf = Buffer.alloc(0);
  return settleOnce<Buffer>(timeoutMs, () => c.destroy(), (done) => {
    c.on('error', () => done(undefined));
    c.on('connect', () => c.write(Buffer.concat([u16(msg.length), msg])));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    c.on('end', () => done(undefined));
  });
}
