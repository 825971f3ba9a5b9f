#!/usr/bin/env node
/**
 * raft-kv: the smallest program built on raft-ts, a replicated key-value store.
 *
 *   node packages/raft-ts/dist/bin/raft-kv.js --id 1 --listen 127.0.0.1:7001 \
 *     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir /tmp/kv1
 *
 * One gRPC server per member serves both the Raft transport and the Kv service (raft.proto).
 * Logs are JSON lines on stderr. A corrupt WAL makes it refuse to start (exit code 2).
 */
import { parseArgs } from 'node:util';
import { RaftNode } from '../src/driver/raft-node.js';
import { WalCorruptError } from '../src/durable/wal.js';
import { addKvService } from '../src/kv/kv-server.js';
import { KvStateMachine } from '../src/kv/kv-state-machine.js';
import { bindServer, createRaftServer } from '../src/transport/grpc-transport.js';
import type { Logger } from '../src/types.js';

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
type Level = keyof typeof LEVELS;

function jsonLogger(id: number, level: Level): Logger {
  const min = LEVELS[level];
  const line = (l: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (LEVELS[l] < min) return;
    process.stderr.write(`${JSON.stringify({ ts: new Date().toISOString(), level: l, member: id, msg, ...fields })}\n`);
  };
  return {
    debug: (m, f) => line('debug', m, f),
    info: (m, f) => line('info', m, f),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}

function usage(msg: string): never {
  process.stderr.write(
    `raft-kv: ${msg}\nusage: raft-kv --id N --listen HOST:PORT --peers 1=HOST:PORT,2=... --data-dir DIR [--join] [--tick-ms 50] [--election-ticks 10] [--snapshot-every 10000] [--cluster-id 1] [--no-fsync] [--log-level info]\n`,
  );
  process.exit(64);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      id: { type: 'string' },
      listen: { type: 'string' },
      peers: { type: 'string', default: '' },
      'data-dir': { type: 'string' },
      join: { type: 'boolean', default: false },
      'tick-ms': { type: 'string', default: '50' },
      'election-ticks': { type: 'string', default: '10' },
      'snapshot-every': { type: 'string', default: '10000' },
      'cluster-id': { type: 'string', default: '1' },
      'no-fsync': { type: 'boolean', default: false },
      'log-level': { type: 'string', default: process.env.RAFT_KV_LOG_LEVEL ?? 'info' },
    },
  });
  const id = Number(values.id);
  if (!Number.isInteger(id) || id <= 0) usage('--id must be a positive integer');
  const listen = values.listen ?? usage('--listen is required');
  const dataDir = values['data-dir'] ?? usage('--data-dir is required');
  const peers = new Map<number, string>();
  for (const part of values.peers.split(',').filter(Boolean)) {
    const [k, addr] = part.split('=');
    const pid = Number(k);
    if (!Number.isInteger(pid) || pid <= 0 || !addr) usage(`bad --peers entry "${part}"`);
    peers.set(pid, addr);
  }
  if (!peers.has(id)) peers.set(id, listen);
  const level = (values['log-level'] in LEVELS ? values['log-level'] : 'info') as Level;
  const logger = jsonLogger(id, level);

  const sm = new KvStateMachine();
  const server = createRaftServer();
  let node: RaftNode;
  try {
    node = await RaftNode.open({
      id,
      clusterId: Number(values['cluster-id']),
      dataDir,
      stateMachine: sm,
      peers,
      join: values.join,
      server,
      tickMs: Number(values['tick-ms']),
      electionTicks: Number(values['election-ticks']),
      snapshotEvery: Number(values['snapshot-every']),
      fsync: !values['no-fsync'],
      logger,
    });
  } catch (e) {
    if (e instanceof WalCorruptError) {
      logger.error('raft-kv: refusing to start: the WAL is corrupt', { file: e.file, offset: e.offset, reason: e.reason });
      process.stderr.write(`raft-kv: refusing to start: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  addKvService(server, node, sm);
  await bindServer(server, listen);
  node.run();
  logger.info('raft-kv: serving', { listen, dataDir, peers: Object.fromEntries(peers) });

  const statsMs = Number(process.env.RAFT_KV_STATS_MS ?? 0);
  if (statsMs > 0) {
    const t = setInterval(() => logger.info('raft-kv: stats', { ...node.metrics, wal: node.walStats(), transport: node.transportStats() }), statsMs);
    t.unref();
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info('raft-kv: stopping', { signal });
    void node.stop().then(() => {
      server.forceShutdown();
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const watchdog = setInterval(() => {
    if (node.fatal !== undefined && !stopping) {
      logger.error('raft-kv: fatal error in the Raft loop', { error: node.fatal instanceof Error ? node.fatal.message : 'unknown' });
      process.exit(1);
    }
  }, 200);
  watchdog.unref();
}

main().catch((e: unknown) => {
  process.stderr.write(`raft-kv: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
