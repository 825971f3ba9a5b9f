// The real thing: `swarmctl local up --managers 3 --workers 2` with real swarmd processes, then
// node commands through the context file, then `local down` leaving nothing behind.
// Skipped while packages/swarmd is not built (or SWARMD_BIN is not set); never under CI.
import { existsSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '@swarmd/common';
import { kernelNames } from '@swarmd/cli/local/state';
import { clusterProcesses } from '@swarmd/cli/local/processes';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

clusterTest('local up with real swarmd: 5 nodes READY, node update/demote/promote/rm, local down leaves nothing', async (t) => {
  const name = `r${process.pid % 100000}`;
  const c = await startLocalCluster(t, name, '10.251.91', 3, 2);
  const { ctl, nodes, byHost, until, dir } = c;
  const names = kernelNames(name);
  t.log(c.upOutput);

  // The registry on the gateway holds the demo image that local up built (umoci) and pushed (skopeo).
  t.regex(c.upOutput, /image: 10\.251\.91\.1:5000\/demo\/web:latest/);
  const manifest = await fetch('http://10.251.91.1:5000/v2/demo/web/manifests/latest', {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  t.is(manifest.status, 200);
  t.truthy(manifest.headers.get('docker-content-digest'));

  const all = await nodes();
  t.is(all.length, 5);
  t.true(all.every((n) => n.status?.state === 'NODE_STATE_READY'), JSON.stringify(all.map((n) => n.status)));
  t.is(all.filter((n) => n.role === 'NODE_ROLE_MANAGER').length, 3);
  t.is(all.filter((n) => n.managerStatus?.leader).length, 1);
  const table = await ctl('node', 'ls');
  t.regex(table.stdout, /^ID\s+HOSTNAME\s+STATUS\s+AVAILABILITY\s+MANAGER STATUS\s+ENGINE VERSION/);
  t.regex(table.stdout, / \*\s+\S+-m1\s+Ready\s+Active\s+Leader/);

  // availability and labels, by hostname
  t.is((await ctl('node', 'update', `${name}-w1`, '--availability', 'drain')).code, 0);
  t.is((await byHost('w1'))?.spec?.availability, 'NODE_AVAILABILITY_DRAIN');
  t.is((await ctl('node', 'update', `${name}-w1`, '--label-add', 'zone=b', '--label-add', 'disk=ssd')).code, 0);
  t.deepEqual((await byHost('w1'))?.spec?.annotations?.labels, { zone: 'b', disk: 'ssd' });

  // demote a manager, then promote it back
  // (each change is complete once the node's role and its renewed certificate agree)
  const settled = async (role: string, ou: string) => {
    const n = await byHost('m3');
    return n?.role === role && !!n.certificatePem && new X509Certificate(n.certificatePem).subject.includes(`OU=${ou}`);
  };
  const demote = await ctl('node', 'demote', `${name}-m3`);
  t.is(demote.code, 0, demote.stderr);
  await until('m3 to become a worker', () => settled('NODE_ROLE_WORKER', 'swarm-worker'), 150);
  t.false((await ctl('node', 'ls')).stdout.split('\n').some((l) => l.includes(`${name}-m3`) && /Leader|Reachable/.test(l)));
  const promote = await ctl('node', 'promote', `${name}-m3`);
  t.is(promote.code, 0, promote.stderr);
  await until('m3 to become a manager again', () => settled('NODE_ROLE_MANAGER', 'swarm-manager'), 150);

  // rm: refused while the node is up, done with --force
  const w2 = (await byHost('w2'))!;
  const refused = await ctl('node', 'rm', w2.id);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /^swarmctl: /);
  const forced = await ctl('node', 'rm', '--force', w2.id);
  t.is(forced.code, 0, forced.stderr);
  await until('w2 to be gone', async () => !(await nodes()).some((n) => n.id === w2.id), 150);

  // the cluster's join tokens and settings through the control socket
  t.regex((await ctl('cluster', 'join-token', 'worker', '-q')).stdout, /^SWMTKN-1-/);

  const down = await ctl('local', 'down', '--name', name);
  t.is(down.code, 0, down.stderr);
  t.false(existsSync(dir));
  t.false((await run('ip', ['netns', 'list'])).stdout.includes(names.netnsPrefix));
  t.false(await run('ip', ['link', 'show', names.bridge]).then(() => true, () => false));
  t.false((await run('iptables', ['-S', 'FORWARD']).catch(() => ({ stdout: '' }))).stdout.includes(names.bridge));
  t.deepEqual(await clusterProcesses(dir, []), []);
});

clusterTest('local cluster failover with real swarmd: the first manager dies, agents and swarmctl move on', async (t) => {
  const name = `f${process.pid % 100000}`;
  const { ctl, nodes, byHost, until, dir } = await startLocalCluster(t, name, '10.251.92', 3, 1);
  // the first manager dies: the agents go to the new leader, swarmctl (through the context's
  // fallback sockets) to another manager
  const m1 = (await byHost('m1'))!;
  const state = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as { hosts: { name: string; pid: number }[] };
  process.kill(state.hosts.find((h) => h.name === 'm1')!.pid, 'SIGKILL');
  let seen = '';
  await until('a new leader, m1 down, the others READY', async () => {
    const ns = await nodes();
    seen = ns.map((n) => `${n.description?.hostname}:${n.status?.state}:${n.role}:${n.managerStatus?.leader ? 'leader' : ''}`).join(' ');
    const others = ns.filter((n) => n.id !== m1.id);
    return (
      ns.find((n) => n.id === m1.id)?.status?.state === 'NODE_STATE_DOWN' &&
      others.every((n) => n.status?.state === 'NODE_STATE_READY') &&
      others.some((n) => n.managerStatus?.leader)
    );
  }, 150).catch((e: Error) => {
    throw new Error(`${e.message}; last seen: ${seen}`);
  });

  const table = await ctl('node', 'ls');
  t.regex(table.stdout, new RegExp(`${name}-m1\\s+Down`));
  t.regex(table.stdout, / \*\s+\S+-m[23]\s+Ready/); // * on the manager now answering
});
