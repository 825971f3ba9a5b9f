/**
 * bench:store — the same control plane on its two store backends, side by side in one run:
 * 3 in-process managers (real startManager: mTLS port, control socket, controllers) on the
 * built-in Raft (WAL fsync on, default timings) vs 3 managers on a 3-member etcd (Debian's
 * etcd-server, testkit's startEtcd, fsync on), each with the same 50 simulated READY worker
 * nodes in its store. A round: Control.CreateService of 1,000 replicas on the leader's control
 * socket, timed until the leader's store holds 1,000 tasks ASSIGNED to a node (orchestrator →
 * allocator → scheduler, every write through the backend). Rounds alternate between backends.
 *
 *   npm run bench:store        (BENCH_ROUNDS=3 BENCH_REPLICAS=1000 BENCH_NODES=50)
 *
 * The last line is `store: etcd/raft p50 ratio R`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { nullLogger } from '@swarmd/common';
import { ContainerSpec, ControlClient, NodeAvailability, NodeRole, NodeState, TaskState, type ServiceSpec } from '@swarmd/proto';
import { ClusterCa, createKeyAndCsr, makeObject, newId, startManager, type Manager, type ManagerStoreOptions } from '@swarmd/manager';
import { startEtcd } from '@swarmd/testkit/etcd';
import { freePort } from '@swarmd/testkit/registry';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 1000);
const NODES = Number(process.env.BENCH_NODES ?? 50);

interface Side {
  name: 'raft' | 'etcd';
  managers: Manager[];
  dirs: string[];
  times: number[];
}

async function startSide(name: Side['name'], store: ManagerStoreOptions | undefined): Promise<Side> {
  const dirs: string[] = [];
  const managers: Manager[] = [];
  const one = async (o: Partial<Parameters<typeof startManager>[0]> & Pick<Parameters<typeof startManager>[0], 'bootstrap'>, port: number): Promise<Manager> => {
    const dir = await mkdtemp(join(tmpdir(), `bench-store-${name}-`));
    dirs.push(dir);
    const addr = `127.0.0.1:${port}`;
    const m = await startManager({ stateDir: dir, listenAddr: addr, advertiseAddr: addr, logger: nullLogger, clusterSpec: { heartbeatPeriodMs: 3_600_000 }, ...o });
    managers.push(m);
    return m;
  };
  const leader = await one({ bootstrap: 'init', ...(store ? { store } : {}) }, await freePort());
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const nodeId = newId();
    const ca = await ClusterCa.fromCluster(leader.cluster()!);
    const { keyPem, csrPem } = await createKeyAndCsr(nodeId);
    const c = await ca.issueNodeCertificate(csrPem, 'swarm-manager', nodeId, { now: Date.now(), addresses: [`127.0.0.1:${port}`] });
    await one({ bootstrap: 'join', join: { leaderAddr: `127.0.0.1:${leader.port}` }, tls: { caCertPem: ca.certPem, certPem: c.certPem, keyPem } }, port);
  }
  // Simulated workers: READY in the store (no agent; the heartbeat period is an hour).
  await leader.store.update((tx) => {
    for (let i = 0; i < NODES; i++) {
      tx.create(
        'node',
        makeObject('node', {
          id: newId(),
          role: NodeRole.NODE_ROLE_WORKER,
          spec: { annotations: { name: '', labels: {} }, desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
          description: { hostname: `sim${i}`, platform: { os: 'linux', architecture: 'amd64' }, resources: { nanoCpus: 64e9, memoryBytes: 256 * 2 ** 30 }, engineVersion: '', volumes: [], engineLabels: {} },
          status: { state: NodeState.NODE_STATE_READY, message: '', addr: '' },
        }),
      );
    }
  });
  return { name, managers, dirs, times: [] };
}

function spec(name: string): ServiceSpec {
  return {
    annotations: { name, labels: {} },
    task: { container: ContainerSpec.fromPartial({ image: 'busybox:latest' }), resources: undefined, restart: undefined, placement: undefined, networks: [], forceUpdate: 0 },
    mode: { $case: 'replicated', replicated: { replicas: REPLICAS } },
    update: undefined,
    rollback: undefined,
    endpoint: undefined,
  };
}

async function round(side: Side, i: number): Promise<number> {
  const leader = side.managers.find((m) => m.isLeader());
  if (!leader?.controlSocketPath) throw new Error(`${side.name}: no leader with a control socket`);
  const client = new ControlClient(`unix://${leader.controlSocketPath}`, grpc.credentials.createInsecure());
  try {
    const t0 = performance.now();
    const res = await new Promise<{ service?: { id: string } }>((resolve, reject) =>
      client.createService({ spec: spec(`s${i}`), noResolveImage: true, requestId: newId() }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    const id = res.service!.id;
    for (;;) {
      const assigned = leader.store.view((tx) => tx.find('task').filter((x) => x.serviceId === id && x.nodeId && x.status && x.status.state >= TaskState.TASK_STATE_ASSIGNED).length);
      if (assigned >= REPLICAS) break;
      if (performance.now() - t0 > 600_000) throw new Error(`${side.name}: ${assigned} of ${REPLICAS} assigned after 600 s`);
      await sleep(10);
    }
    return (performance.now() - t0) / 1000;
  } finally {
    client.close();
  }
}

const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

async function main(): Promise<void> {
  const etcd = await startEtcd({ members: 3 });
  const sides: Side[] = [];
  try {
    sides.push(await startSide('raft', undefined));
    sides.push(await startSide('etcd', { kind: 'etcd', connection: { endpoints: etcd.endpoints } }));
    for (let i = 0; i < ROUNDS; i++) {
      for (const s of i % 2 === 0 ? sides : [...sides].reverse()) {
        const secs = await round(s, i);
        s.times.push(secs);
        console.log(`round ${i + 1} ${s.name}: ${REPLICAS} replicas assigned in ${secs.toFixed(2)} s`);
      }
    }
    const [raft, et] = sides;
    console.log(`raft: p50 ${p50(raft.times).toFixed(2)} s (${raft.times.map((x) => x.toFixed(2)).join(', ')})`);
    console.log(`etcd: p50 ${p50(et.times).toFixed(2)} s (${et.times.map((x) => x.toFixed(2)).join(', ')})`);
    console.log(`store: etcd/raft p50 ratio ${(p50(et.times) / p50(raft.times)).toFixed(2)}`);
  } finally {
    for (const s of sides) {
      for (const m of s.managers) await m.stop().catch(() => undefined);
      for (const d of s.dirs) await rm(d, { recursive: true, force: true });
    }
    await etcd.stop();
  }
}

await main();
process.exit(0);
