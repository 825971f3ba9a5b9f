import test from 'ava';
import { nullLogger, systemClock } from '@swarmd/common';
import { ControllerHost, LocalLog, checkRemoveManager, createStore, policyOf, type Controller, type RaftGroupView } from '../src/index.js';

const view = (voters: number[], down: number[] = [], learners: number[] = []): RaftGroupView => ({
  voters,
  learners,
  reachable: (id) => !down.includes(id),
});

test('checkRemoveManager: quorum of the remaining voters must stay reachable', (t) => {
  t.deepEqual(checkRemoveManager(view([1, 2, 3]), 3), { ok: true });
  t.deepEqual(checkRemoveManager(view([1, 2, 3], [3]), 3), { ok: true }, 'removing the unreachable one is fine');
  t.false(checkRemoveManager(view([1, 2, 3], [3]), 2).ok, '{1,3} with 3 down has no majority');
  t.deepEqual(checkRemoveManager(view([1, 2]), 2), { ok: true });
  t.false(checkRemoveManager(view([1]), 1).ok, 'never the last manager');
  t.deepEqual(checkRemoveManager(view([1, 2, 3], [], [4]), 4), { ok: true }, 'learners do not count');
  t.deepEqual(checkRemoveManager(view([1, 2, 3, 4, 5], [5]), 4), { ok: true });
  t.false(checkRemoveManager(view([1, 2, 3, 4, 5], [4, 5]), 3).ok);
  const r = checkRemoveManager(view([1, 2, 3], [3]), 2);
  t.regex(r.ok ? '' : r.reason, /lose quorum: 1 of the remaining 2 managers are reachable, 2 are needed/);
});

test('method policy: open CA bootstrap, manager-only raft, nodes on the dispatcher, admins on control, unknown refused', (t) => {
  t.is(policyOf('/swarm.v1.Ca/GetRootCaCertificate'), 'open');
  t.is(policyOf('/swarm.v1.NodeCa/IssueNodeCertificate'), 'open');
  t.deepEqual(policyOf('/raftpb.RaftTransport/Stream'), ['swarm-manager']);
  t.deepEqual(policyOf('/swarm.v1.RaftMembership/Join'), ['swarm-manager']);
  t.deepEqual(policyOf('/swarm.v1.Dispatcher/Session'), ['swarm-worker', 'swarm-manager']);
  t.deepEqual(policyOf('/swarm.v1.Control/UpdateNode'), ['swarm-admin', 'swarm-manager']);
  t.is(policyOf('/other.Service/Method'), undefined);
});

test('controller host: starts controllers on leadership, aborts them on losing it, restarts a failed one', async (t) => {
  const log = new LocalLog();
  log.setLeader(false);
  const store = createStore({ log });
  const events: string[] = [];
  let failOnce = true;
  const ctl = (name: string, fail = false): Controller => ({
    name,
    async run(_deps, signal) {
      events.push(`start ${name}`);
      if (fail && failOnce) {
        failOnce = false;
        throw new Error('boom');
      }
      await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      events.push(`stop ${name}`);
    },
  });
  const host = new ControllerHost({ log, deps: { store, clock: systemClock, logger: nullLogger }, restartDelayMs: 10 });
  host.register(ctl('a'));
  host.register(ctl('b', true));
  host.start();
  t.deepEqual(host.runningControllers(), []);
  log.setLeader(true);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(host.runningControllers().sort(), ['a', 'b']);
  t.deepEqual(events.filter((e) => e === 'start b').length, 2, 'b failed once and was restarted');
  log.setLeader(false);
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(host.runningControllers(), []);
  t.true(events.includes('stop a') && events.includes('stop b'));
  log.setLeader(true);
  host.register(ctl('c'));
  await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(host.runningControllers().sort(), ['a', 'b', 'c']);
  await host.stop();
  t.deepEqual(host.runningControllers(), []);
});
