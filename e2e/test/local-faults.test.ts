// Faults from the harness (src/faults) on real local clusters, one per test, with every invariant
// (src/invariants: acknowledged writes, one running task per slot, no orphan on any host) checked
// after the fault heals within a stated bound. Convergence times are printed, never asserted
// tightly (the machine is shared).
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, ListServicesRequest } from '@swarmd/proto';
import { swarmctl } from '@swarmd/cli/testing';
import { clusterTest, startLocalCluster, type ClusterOptions, type LocalCluster } from './helpers/local-cluster.js';
import { Faults } from '../src/faults/faults.js';
import { converge, problems } from '../src/invariants/invariants.js';
import { Ledger } from '../src/invariants/ledger.js';

/** Seconds a cluster has to converge once a fault healed. */
const BOUND_S = 120;
const net = (n: number) => `10.252.${20 + n}`;
const name = (k: string) => `faults-${k}${process.pid % 1000}`;

async function leaderHost(c: LocalCluster): Promise<string> {
  const l = (await c.nodes()).find((n) => n.managerStatus?.leader);
  if (!l) throw new Error('no leader in node ls');
  return l.description!.hostname!.slice(c.name.length + 1);
}

/** A cluster with one converged replicated service `web` recorded in a ledger. */
async function withService(t: ExecutionContext, k: string, n: number, managers: number, workers: number, replicas: number, o: ClusterOptions = {}): Promise<{ c: LocalCluster; ledger: Ledger }> {
  const c = await startLocalCluster(t, name(k), net(n), managers, workers, o);
  const ledger = new Ledger(c);
  const r = await ledger.create('web', 'replicated', replicas, c.image);
  if (!r.ok) throw new Error(`service create web: ${r.message}`);
  await converge(c, ledger, BOUND_S);
  return { c, ledger };
}

clusterTest("a partitioned leader's acknowledged writes are not lost and the majority keeps serving", async (t) => {
  const { c, ledger } = await withService(t, 'p', 0, 3, 1, 2);
  const leader = await leaderHost(c);
  const heal = await new Faults(t, c).partition([leader]);
  // the majority elects and serves writes through the context's fallbacks
  for (const [i, n] of [3, 4].entries()) {
    const r = await ledger.scale('web', n);
    t.true(r.ok, `scale to ${n} while ${leader} is cut off: ${r.message}`);
    t.log(`scale ${i + 1} with the leader ${leader} cut off: ${r.ms} ms`);
  }
  t.true((await ledger.update('web', '1')).ok);
  // the cut is real: the majority elects another leader while it lasts
  await c.until(`a leader other than ${leader}`, async () => (await leaderHost(c)) !== leader, 60);
  t.true((await ledger.scale('web', 5)).ok, 'a scale acknowledged by the new leader');
  await heal();
  const ms = await converge(c, ledger, BOUND_S);
  t.log(`converged ${ms} ms after the partition healed`);
  t.deepEqual(await problems(c, ledger), []);
});

// Reads go through ReadIndex (controlapi/control.ts). The old leader is paused and cut off while the
// others elect a leader and acknowledge a write, then resumed, still cut off: it still believes it
// leads, with the state from before the write. Without ReadIndex it answers that stale state at
// once; with it, it cannot confirm its leadership, steps down (CheckQuorum, about an election
// timeout: 0.5-1 s) and refuses. A fresh answer would pass too, but cannot happen while it is cut off.
clusterTest('a leader paused, replaced and resumed cut off from the others answers no read from its old state: refused within about an election timeout', async (t) => {
  const { c, ledger } = await withService(t, 'r', 100, 3, 0, 1);
  const leader = await leaderHost(c);
  // A client of the old leader's own control socket, connected before the pause: one attempt, no retry elsewhere.
  const client = new ControlClient(`unix://${join(c.dir, leader, 'control.sock')}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const replicasOfWeb = () =>
    new Promise<number>((resolve, reject) =>
      client.listServices(ListServicesRequest.fromPartial({}), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, r) => {
        if (err) return reject(err);
        const web = r.services.find((x) => x.spec?.annotations?.name === 'web');
        resolve(web?.spec?.mode?.$case === 'replicated' ? web.spec.mode.replicated.replicas : -1);
      }),
    );
  t.is(await replicasOfWeb(), 1);
  const f = new Faults(t, c);
  // Cut off while paused, before the others elect: no message of the new term waits in its sockets.
  const resume = await f.pause(leader);
  const heal = await f.partition([leader]);
  const r = await ledger.scale('web', 2);
  t.true(r.ok, `scale with ${leader} paused: ${r.message}`);
  await c.until(`a leader other than ${leader}`, async () => (await leaderHost(c)) !== leader, 60);
  await resume();
  const started = Date.now();
  const answer = await replicasOfWeb().then(
    (n) => ({ n }),
    (e: grpc.ServiceError) => ({ e }),
  );
  const ms = Date.now() - started;
  if ('n' in answer) {
    t.is(answer.n, 2, `${leader}, resumed and cut off, answered ${answer.n} replicas after ${ms} ms, the state before the acknowledged scale to 2`);
  } else {
    t.log(`${leader}, resumed and cut off, refused the read after ${ms} ms: ${grpc.status[answer.e.code]} ${answer.e.details}`);
    t.is(answer.e.code, grpc.status.UNAVAILABLE);
    t.true(ms < 5_000, `refused after ${ms} ms`);
  }
  await heal();
  const conv = await converge(c, ledger, BOUND_S);
  t.log(`converged ${conv} ms after the partition healed`);
  t.is(await replicasOfWeb(), 2, 'the old leader, now a follower, forwards the read and answers the new state');
  t.deepEqual(await problems(c, ledger), []);
});

// The manager's only Raft member cannot write its WAL: it must stay up, refuse writes at once with
// a message naming the full disk (not after swarmctl's 60 s deadline), acknowledge nothing it did
// not write, and take writes again without a restart once space returns.
clusterTest('a manager with a full state disk refuses writes clearly and recovers when space returns', async (t) => {
  const { c, ledger } = await withService(t, 'd', 1, 1, 1, 1, { tmpfsStateDirs: ['m1'] });
  const free = await new Faults(t, c).fillDisk('m1');
  // A write may still fit in the last, partly used page of the Raft log's file; writes go on
  // until one is refused (each acknowledged one must survive).
  let refused: Awaited<ReturnType<Ledger['scale']>> | undefined;
  let accepted = 0;
  for (let i = 0; i < 40 && !refused; i++) {
    const r = await ledger.scale('web', 2 + (i % 2));
    if (r.ok) accepted++;
    else refused = r;
  }
  t.log(`with m1's disk full: ${accepted} writes accepted (they fit in pages already allocated), then refused in ${refused?.ms} ms: ${refused?.message}`);
  if (!refused) return t.fail('40 writes to a manager whose disk is full were all acknowledged');
  t.regex(refused.message, /state disk is full.*ENOSPC/i);
  t.true(refused.ms < 10_000, `the refusal took ${refused.ms} ms`);
  const again = await ledger.scale('web', 2);
  t.false(again.ok, 'a write acknowledged while the disk is still full');
  t.log(`the next write refused in ${again.ms} ms`);
  t.true(again.ms < 5_000, `the next refusal took ${again.ms} ms`);
  t.true((await c.host('m1')).pid !== undefined && process.kill((await c.host('m1')).pid!, 0), 'swarmd on m1 still runs');
  await free();
  const healed = Date.now();
  await c.until('a write accepted once space returned', async () => (await ledger.scale('web', 3)).ok, BOUND_S);
  t.log(`writes accepted ${Date.now() - healed} ms after the disk had space again`);
  const ms = await converge(c, ledger, BOUND_S);
  t.log(`converged ${ms} ms later`);
  t.deepEqual(await problems(c, ledger), []);
});

// A follower whose state disk fills goes silent to its Raft peers, which cannot tell why: its own
// swarmd says it, through its agent's heartbeats, and `node ls` on the others shows it; the
// manager's metrics say it too. Once space returns it is cleared, with no restart.
clusterTest('a manager whose state disk is full shows "(state disk full)" in node ls and its metrics, cleared once space returns', async (t) => {
  const { c, ledger } = await withService(t, 'n', 5, 3, 0, 1, { tmpfsStateDirs: ['m2', 'm3'] });
  const leader = await leaderHost(c);
  const full = leader === 'm2' ? 'm3' : 'm2';
  const metric = async (): Promise<string> => {
    const r = await fetch(`http://${(await c.host(full)).addr}:9323/metrics`);
    return (await r.text()).split('\n').find((l) => l.startsWith('swarmd_raft_state_disk_unwritable ')) ?? '(no swarmd_raft_state_disk_unwritable)';
  };
  t.is(await metric(), 'swarmd_raft_state_disk_unwritable 0');
  const free = await new Faults(t, c).fillDisk(full);
  const filled = Date.now();
  // Writes through the others replicate to it: one of them, past the pages its log file already
  // holds, is refused by its disk.
  let row = '';
  for (let i = 0; !row.includes('state disk full'); i++) {
    if (Date.now() - filled > BOUND_S * 1000) return t.fail(`node ls never showed ${full}'s full disk; its row: ${row}`);
    await ledger.scale('web', 1 + (i % 2));
    row = (await c.ok('node', 'ls')).split('\n').find((l) => l.includes(`${c.name}-${full} `)) ?? '';
  }
  t.log(`node ls showed it ${Date.now() - filled} ms after the disk filled: ${row.replace(/\s+/g, ' ')}`);
  t.regex(row, /(Reachable|Unreachable) \(state disk full\)/);
  t.is((await c.byHost(full))?.managerStatus?.problem, 'state disk full');
  t.is(await metric(), 'swarmd_raft_state_disk_unwritable 1');
  // the others go on: a write is acknowledged while it is full
  t.true((await ledger.scale('web', 2)).ok, 'a write with one of three managers full');
  await free();
  const freed = Date.now();
  await c.until(`${full}'s problem cleared in node ls`, async () => !(await c.byHost(full))?.managerStatus?.problem, BOUND_S);
  t.log(`cleared ${Date.now() - freed} ms after the disk had space again`);
  t.is(await metric(), 'swarmd_raft_state_disk_unwritable 0');
  const ms = await converge(c, ledger, BOUND_S);
  t.log(`converged ${ms} ms later`);
  t.deepEqual(await problems(c, ledger), []);
});

clusterTest('5% underlay loss still converges a 10-replica service', async (t) => {
  const c = await startLocalCluster(t, name('l'), net(2), 3, 2);
  const ledger = new Ledger(c);
  const heal = await new Faults(t, c).loss(5);
  const started = Date.now();
  const r = await ledger.create('web', 'replicated', 10, c.image);
  t.true(r.ok, r.message);
  const ms = await converge(c, ledger, BOUND_S, { faultsOn: true });
  t.log(`10 replicas converged under 5% loss in ${Date.now() - started} ms (create ${r.ms} ms, checks ${ms} ms)`);
  await heal();
  t.deepEqual(await problems(c, ledger), []);
});

clusterTest('a SIGSTOPped leader: the others take over the writes, and once resumed it follows with nothing lost', async (t) => {
  const { c, ledger } = await withService(t, 's', 3, 3, 1, 2);
  const leader = await leaderHost(c);
  const resume = await new Faults(t, c).pause(leader);
  const r = await ledger.scale('web', 4);
  t.true(r.ok, `scale with ${leader} paused: ${r.message}`);
  t.log(`scale with the leader ${leader} paused: ${r.ms} ms`);
  await sleep(10_000);
  await resume();
  const ms = await converge(c, ledger, BOUND_S);
  t.log(`converged ${ms} ms after SIGCONT`);
  // the resumed manager answers from its own socket, knowing the new leader
  await c.until(`${leader} answering node ls on its own socket`, async () => (await swarmctl(['node', 'ls', '--host', `unix://${join(c.dir, leader, 'control.sock')}`])).code === 0, 60);
  t.not(await leaderHost(c), '', 'a leader exists');
  t.deepEqual(await problems(c, ledger), []);
});

clusterTest('kill -9 of a worker host: its slots run elsewhere, and once back it holds nothing the store does not explain', async (t) => {
  const { c, ledger } = await withService(t, 'k', 4, 1, 2, 4);
  const f = new Faults(t, c);
  const back = await f.killHost('w1');
  const scaled = await ledger.scale('web', 5);
  t.true(scaled.ok, scaled.message);
  await back();
  const ms = await converge(c, ledger, BOUND_S);
  t.log(`converged ${ms} ms after w1 came back`);
  // swarmd alone killed (containers keep running), then restarted: the same holds
  const restart = await f.killSwarmd('w2');
  await restart();
  const ms2 = await converge(c, ledger, BOUND_S);
  t.log(`converged ${ms2} ms after w2's swarmd was killed and restarted`);
  t.deepEqual(await problems(c, ledger), []);
});
