// swarmctl during a failover, against in-test Control servers (no root): which refusals it asks
// again, when it moves to another manager of the context, what a retry carries (the same request
// id), and what it says when no manager can take the call. The same on a real cluster: the
// local-failover tests.
import { createServer, type Server, type Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ErrorReason, REASON_METADATA_KEY } from '@swarmd/common';
import { Service, type ServiceSpec } from '@swarmd/proto';
import { startFakeControl, type FakeControl } from './helpers/fake-control.js';
import { swarmctl } from '../src/testing.js';
import { socketConnection } from '../src/client/connection.js';
import { connectControl } from '../src/client/control-client.js';
import { mayHaveBeenApplied } from '../src/client/rpc.js';
import { errorLine } from '../src/errors.js';

/** A refusal as a manager sends it: the status, and the reason in the `swarmd-reason` trailer. */
function refusal(details: string, reason?: ErrorReason, code = grpc.status.UNAVAILABLE) {
  const metadata = new grpc.Metadata();
  if (reason) metadata.set(REASON_METADATA_KEY, reason);
  return Object.assign(new Error(details), { code, details, metadata });
}

const MINORITY = 'this manager is in a minority: it has known no leader for 3.0 s, so it cannot reach a majority of the managers (cut off, or the cluster lost its quorum); nothing was done: ask another manager';

/** A context file listing `first` and then `others` as fallback hosts (as `local up` writes). */
async function contextOf(first: FakeControl, ...others: { host: string }[]): Promise<NodeJS.ProcessEnv> {
  const path = join(first.dir, 'ctx.json');
  await writeFile(path, JSON.stringify({ name: 'test', host: first.host, fallbackHosts: others.map((o) => o.host) }));
  return { SWARMCTL_CONTEXT: path };
}

const web = Service.fromPartial({ id: 'svc1', meta: { version: 3 }, spec: { annotations: { name: 'web' } } });

const calls = (fc: FakeControl, method: string) => fc.calls.filter((c) => c.method === method).length;

test('a manager in a minority: swarmctl asks the next manager of the context at once', async (t) => {
  const m1 = await startFakeControl({
    listNodes: () => {
      throw refusal(MINORITY, ErrorReason.NO_QUORUM);
    },
  });
  const m2 = await startFakeControl();
  t.teardown(() => Promise.all([m1.stop(), m2.stop()]));
  const started = Date.now();
  const r = await swarmctl(['node', 'ls', '-q'], await contextOf(m1, m2));
  t.log(`answered in ${Date.now() - started} ms`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^abc111$/m);
  t.is(calls(m1, 'listNodes'), 1, 'the minority manager is asked once');
  t.is(calls(m2, 'listNodes'), 1);
});

test('with only a minority manager to ask, swarmctl fails at once saying it is in a minority and what to do', async (t) => {
  const m1 = await startFakeControl({
    listNodes: () => {
      throw refusal(MINORITY, ErrorReason.NO_QUORUM);
    },
  });
  t.teardown(() => m1.stop());
  const r = await swarmctl(['node', 'ls', '--host', m1.host]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^swarmctl: manager unavailable: manager \S+ \(unix:\/\/\S+\): this manager is in a minority: it has known no leader for 3\.0 s/);
  t.regex(r.stderr, /give --host another manager, or use a context file listing every manager/);
  t.is(calls(m1, 'listNodes'), 1);
});

test('every manager of the context in a minority: one line naming each manager and what it said', async (t) => {
  const refuse = { listNodes: () => { throw refusal(MINORITY, ErrorReason.NO_QUORUM); } };
  const [m1, m2] = [await startFakeControl(refuse), await startFakeControl(refuse)];
  t.teardown(() => Promise.all([m1.stop(), m2.stop()]));
  const r = await swarmctl(['node', 'ls'], await contextOf(m1, m2));
  t.is(r.code, 1);
  t.regex(r.stderr, /^swarmctl: none of the 2 managers can take the call \(listNodes\): manager \S+ \(\S+\): this manager is in a minority.*; manager \S+ \(\S+\): this manager is in a minority/);
  t.is(r.stderr.split('\n').filter(Boolean).length, 1);
});

test('leadership moving (LEADER_CHANGED, "not the leader either") is asked again until a manager answers', async (t) => {
  let n = 0;
  const m1 = await startFakeControl({
    listNodes: () => {
      n++;
      if (n === 1) throw refusal('this manager is no longer the leader (leadership moved); the write was not applied: ask again', ErrorReason.LEADER_CHANGED);
      if (n === 2) throw refusal('this manager is not the leader either (the leader is changing); nothing was done: retry in a moment', ErrorReason.NO_LEADER);
      return { nodes: m1.nodes };
    },
  });
  t.teardown(() => m1.stop());
  const r = await swarmctl(['node', 'ls', '-q', '--host', m1.host]);
  t.is(r.code, 0, r.stderr);
  t.is(n, 3);
});

test('a paused manager (accepts connections, never answers): swarmctl asks the next one within seconds', async (t) => {
  // A socket that accepts and never answers is what a SIGSTOPped swarmd looks like from outside.
  const m2 = await startFakeControl();
  const pausedSock = join(m2.dir, 'paused.sock');
  const held: Socket[] = [];
  const paused: Server = createServer((c) => held.push(c));
  await new Promise<void>((resolve) => paused.listen(pausedSock, resolve));
  t.teardown(async () => {
    for (const c of held) c.destroy();
    paused.close();
    await m2.stop();
  });
  const path = join(m2.dir, 'ctx-paused.json');
  await writeFile(path, JSON.stringify({ host: `unix://${pausedSock}`, fallbackHosts: [m2.host] }));
  const started = Date.now();
  const r = await swarmctl(['node', 'ls', '-q'], { SWARMCTL_CONTEXT: path });
  const ms = Date.now() - started;
  t.log(`answered by the second manager after ${ms} ms`);
  t.is(r.code, 0, r.stderr);
  t.is(calls(m2, 'listNodes'), 1);
  t.true(ms < 20_000, `took ${ms} ms: the attempt on the paused manager was not cut short`);
});

test('a create whose outcome is unknown is asked again with the same request id', async (t) => {
  const ids: string[] = [];
  const m1 = await startFakeControl({
    createService: (req) => {
      const r = req as { requestId: string; spec: unknown };
      ids.push(r.requestId);
      if (ids.length === 1) throw refusal('this manager lost the leadership while the write was being committed: it may or may not have been applied', ErrorReason.OUTCOME_UNKNOWN);
      return { service: Service.fromPartial({ id: 'svc1', meta: { version: 3 }, spec: r.spec as ServiceSpec }), warnings: [] };
    },
  });
  t.teardown(() => m1.stop());
  const r = await swarmctl(['service', 'create', '--detach', '--name', 'web', '--no-resolve-image', 'busybox', '--host', m1.host]);
  t.is(r.code, 0, r.stderr);
  t.is(ids.length, 2);
  t.regex(ids[0], /^[0-9a-f-]{36}$/);
  t.is(ids[1], ids[0], 'the retry carries the first attempt’s request id');
});

test('an update whose first attempt had an unknown outcome fails as "may have been applied" even when the retry gets a definite answer; a refused one does not', async (t) => {
  let updates = 0;
  const m1 = await startFakeControl({
    updateService: () => {
      updates++;
      if (updates === 1) throw refusal('this manager lost the leadership while the write was being committed: it may or may not have been applied', ErrorReason.OUTCOME_UNKNOWN);
      throw refusal('service svc1 not found', undefined, grpc.status.NOT_FOUND);
    },
    createService: (req) => {
      const r = req as { requestId: string; spec: unknown };
      return { service: Service.fromPartial({ id: r.requestId, meta: { version: 3 }, spec: r.spec as ServiceSpec }), warnings: [] };
    },
  });
  t.teardown(() => m1.stop());
  const c = connectControl(socketConnection(m1.sock, 'test'), 10_000);
  t.teardown(() => c.close());
  const after = await t.throwsAsync(c.updateService({ serviceId: 'svc1', version: 3, spec: web.spec }));
  t.is(updates, 2);
  t.regex(after.message, /not found/);
  t.true(mayHaveBeenApplied(after), 'the first attempt may have been applied');
  const refused = await t.throwsAsync(c.updateService({ serviceId: 'svc1', version: 3, spec: web.spec }));
  t.false(mayHaveBeenApplied(refused), 'a NOT_FOUND with no unknown attempt before it applied nothing');
  // a caller's own request id is sent as given (its own retry after an unknown outcome reuses it)
  const made = await c.createService(web.spec!, true, 'req-1');
  t.is(made.service.id, 'req-1');
});

test('a remove retried after an unknown outcome that finds nothing is done (the first attempt removed it)', async (t) => {
  let removes = 0;
  const m1 = await startFakeControl({
    listServices: () => ({ services: [web] }),
    removeService: () => {
      removes++;
      if (removes === 1) throw refusal('the leader at 10.0.0.2:4242 stopped answering a forwarded call (Connection dropped): it may or may not have been applied', ErrorReason.OUTCOME_UNKNOWN);
      throw refusal('service svc1 not found', undefined, grpc.status.NOT_FOUND);
    },
  });
  t.teardown(() => m1.stop());
  const r = await swarmctl(['service', 'rm', 'web', '--host', m1.host]);
  t.is(r.code, 0, r.stderr);
  t.is(removes, 2);
  // without an unknown outcome before it, NOT_FOUND is an error as always
  const m2 = await startFakeControl({
    listServices: () => ({ services: [web] }),
    removeService: () => {
      throw refusal('service svc1 not found', undefined, grpc.status.NOT_FOUND);
    },
  });
  t.teardown(() => m2.stop());
  const bad = await swarmctl(['service', 'rm', 'web', '--host', m2.host]);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /not found/);
});

test('a network create whose outcome is unknown is not repeated: swarmctl says so and what to check', async (t) => {
  const m1 = await startFakeControl({
    createNetwork: () => {
      throw refusal('this manager lost the leadership while the write was being committed: it may or may not have been applied', ErrorReason.OUTCOME_UNKNOWN);
    },
  });
  t.teardown(() => m1.stop());
  const r = await swarmctl(['network', 'create', 'backend', '--host', m1.host]);
  t.is(r.code, 1);
  t.regex(r.stderr, /may or may not have been applied and is not safe to repeat: check, then run it again if needed/);
  t.is(calls(m1, 'createNetwork'), 1);
});

test('the call deadline: the message says how long and what the manager said, not gRPC internals', async (t) => {
  const m1 = await startFakeControl({
    listNodes: () => {
      throw refusal('this manager knows no leader yet (an election is under way); nothing was done: retry in a moment', ErrorReason.NO_LEADER);
    },
  });
  t.teardown(() => m1.stop());
  const control = connectControl(socketConnection(m1.sock, 'test'), 3_000);
  t.teardown(() => control.close());
  const e = await t.throwsAsync(control.listNodes());
  const line = errorLine(e);
  t.regex(line, /^no manager answered within 3 s \(listNodes\): manager \S+ \(\S+\): this manager knows no leader yet/);
  t.notRegex(line, /LB pick|remote_addr|Deadline exceeded after/);
  t.true(calls(m1, 'listNodes') > 1, 'asked again while no leader was known');
});
