import test from 'ava';
import { readFile } from 'node:fs/promises';
import * as net from 'node:net';
import { countOpenConnections, openConnections } from '../src/executor/open-connections.js';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0300FF0A:1F90 0200FF0A:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0300FF0A:1F90 0200FF0A:A1B3 06 00000000:00000000 03:00000F2B 00000000     0        0 0 3 0000000000000000
   3: 0300FF0A:1F90 0200FF0A:A1B4 08 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   4: 0300FF0A:1F90 0200FF0A:A1B5 03 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
`;

test('open connections: ESTABLISHED, SYN_RECV and CLOSE_WAIT count; LISTEN and TIME_WAIT do not', (t) => {
  t.is(countOpenConnections(TCP), 3);
  t.is(countOpenConnections(TCP.split('\n')[0] + '\n'), 0);
});

test("a real loopback connection is counted from this process's /proc/PID/net/tcp while open, and not once closed", async (t) => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  /** This test's connections only (the machine has others): lines naming its port. */
  const ours = async () => {
    const text = await readFile(`/proc/${process.pid}/net/tcp`, 'utf8');
    const [head, ...rows] = text.split('\n');
    return countOpenConnections([head, ...rows.filter((l) => l.includes(hexPort))].join('\n'));
  };
  t.is(await ours(), 0);
  t.true(typeof (await openConnections(process.pid)) === 'number');
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect(port, '127.0.0.1');
  const peer = await accepted;
  t.is(await ours(), 2, 'both ends ESTABLISHED');
  client.destroy();
  peer.destroy();
  await new Promise((r) => setTimeout(r, 100));
  t.is(await ours(), 0);
});
