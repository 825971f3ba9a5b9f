// What a follower answers when it cannot forward a call to the leader: each refusal with the
// reason clients act on, in words that name no Raft number, and never after the whole deadline.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ErrorReason, reasonOf } from '@swarmd/common';
import { LeaderForwarder, noLeaderRefusal } from '../src/rpc-kit/leader-forwarding.js';

const incoming = () => ({ metadata: new grpc.Metadata(), getDeadline: () => Date.now() + 30_000 });
const echo = { path: '/test.Hang/Call', requestSerialize: (v: Buffer) => v, responseDeserialize: (b: Buffer) => b };

test('no leader known: NO_LEADER during an election, NO_QUORUM (a minority) past two election timeouts', (t) => {
  const election = noLeaderRefusal({ leaderlessForMs: () => 800, minorityAfterMs: 2_000 });
  t.is(reasonOf(election), ErrorReason.NO_LEADER);
  t.regex(election.message, /knows no leader yet \(an election is under way\); nothing was done/);
  const minority = noLeaderRefusal({ leaderlessForMs: () => 3_400, minorityAfterMs: 2_000 });
  t.is(reasonOf(minority), ErrorReason.NO_QUORUM);
  t.is(
    minority.message,
    'this manager is in a minority: it has known no leader for 3.4 s, so it cannot reach a majority of the managers (cut off, or the cluster lost its quorum); nothing was done: ask another manager',
  );
  const f = new LeaderForwarder({ leaderAddr: () => undefined, leaderlessForMs: () => 5_000 });
  const err = t.throws(() => f.client());
  t.is(reasonOf(err), ErrorReason.NO_QUORUM);
});

test('a forwarded call is cut short when the leader it went to is replaced: OUTCOME_UNKNOWN naming the old leader', async (t) => {
  // A "leader" that takes calls and never answers (a leader cut off after the call reached it).
  const server = new grpc.Server();
  server.register(echo.path, () => undefined, (b: Buffer) => b, (b: Buffer) => b, 'unary');
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  t.teardown(() => {
    client.close();
    server.forceShutdown();
  });
  let leader = '10.0.0.2:4242';
  const f = new LeaderForwarder({ leaderAddr: () => leader }, () => client);
  const started = Date.now();
  const call = f.unary(echo, Buffer.from('x'), incoming());
  setTimeout(() => (leader = '10.0.0.3:4242'), 300);
  const err = await t.throwsAsync(call);
  t.true(Date.now() - started < 5_000, 'not after the caller’s deadline');
  t.is(reasonOf(err), ErrorReason.OUTCOME_UNKNOWN);
  t.regex(err.message, /^the leader changed \(from 10\.0\.0\.2:4242\) while this call was forwarded to it: it may or may not have been applied/);
});

test('a call forwarded twice (the leader is changing) is refused with NO_LEADER', (t) => {
  const f = new LeaderForwarder({ leaderAddr: () => '10.0.0.2:4242' });
  const call = incoming();
  call.metadata.set('swarm-forwarded-by', '1');
  const err = t.throws(() => f.metadata(call));
  t.is(reasonOf(err), ErrorReason.NO_LEADER);
  t.regex(err.message, /not the leader either \(the leader is changing\); nothing was done/);
});
