import test from 'ava';
import { verifyPeerCertificate } from '../src/index.js';
import { freePort, issueCert, startTestManager, updateRetry, voters, waitFor } from './helpers/managers.js';
import { cloneObject } from '../src/index.js';

test('force-new-cluster: 3 managers, 2 lost, the survivor restarts as the only voter with its data; new managers join', async (t) => {
  const a = await startTestManager(t, { bootstrap: 'init' });
  const others = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const tls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${port}`);
    others.push(await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls, port }));
  }
  await waitFor('three voters', () => voters(a.m).length === 3);
  await updateRetry(a.m, (tx) => {
    const c = cloneObject('cluster', tx.get('cluster', a.m.clusterId)!);
    c.spec!.annotations!.labels = { before: 'yes' };
    tx.update('cluster', c);
  });
  const versionBefore = a.m.store.version();
  // Lose two managers: the survivor has no quorum.
  for (const o of others) await o.m.stop();
  await a.m.stop();
  const port = Number(a.addr.split(':')[1]);
  const s = await startTestManager(t, { bootstrap: 'resume', tls: a.tls, dir: a.dir, port, forceNewCluster: true });
  await waitFor('the survivor leads alone', () => s.m.isLeader() && voters(s.m).length === 1);
  t.deepEqual(voters(s.m), [a.m.raftId]);
  t.is(s.m.cluster()?.spec?.annotations?.labels.before, 'yes', 'state kept');
  await updateRetry(s.m, (tx) => {
    const c = cloneObject('cluster', tx.get('cluster', s.m.clusterId)!);
    c.spec!.annotations!.labels = { after: 'force' };
    tx.update('cluster', c);
  });
  t.true(s.m.store.version() > versionBefore, 'indexes keep growing');
  // Old members' certificates are still valid.
  for (const o of others) await t.notThrowsAsync(verifyPeerCertificate(o.tls.certPem, { caCertPem: s.tls.caCertPem, now: Date.now(), clusterId: s.m.clusterId }));
  // A new manager joins the new cluster.
  const np = await freePort();
  const ntls = await issueCert(s.m, 'swarm-manager', `127.0.0.1:${np}`);
  const n = await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: s.addr }, tls: ntls, port: np });
  await waitFor('two voters', () => voters(s.m).length === 2 && voters(s.m).includes(n.m.raftId));
  await waitFor('the new manager has the data', () => n.m.cluster()?.spec?.annotations?.labels.after === 'force');
  // Restarting the survivor without the flag keeps the new membership.
  await s.m.stop();
  const s2 = await startTestManager(t, { bootstrap: 'resume', tls: a.tls, dir: a.dir, port });
  await waitFor('a leader again', () => s2.m.isLeader() || n.m.isLeader());
  t.deepEqual(voters(s2.m).sort(), [a.m.raftId, n.m.raftId].sort());
});
