// `swarmctl local up/ls/down` end to end with the fake swarmd (helpers/fake-swarmd.ts): real
// namespaces, bridge, veths, registry, nsenter-started processes, context file and clean-up.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '@swarmd/common';
import { requires } from '@swarmd/testkit';
import { swarmctl } from '../src/testing.js';
import { kernelNames } from '../src/local/state.js';
import { clusterProcesses } from '../src/local/processes.js';

const rootTest = requires('root', 'netns', 'registry');
const fakeSwarmd = fileURLToPath(new URL('./helpers/fake-swarmd.js', import.meta.url));

rootTest('local up/ls/down with a fake swarmd: hosts reach each other, down leaves nothing', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swl-'));
  const name = `t${process.pid % 100000}`;
  const env = { SWARMD_LOCAL_ROOT: root, SWARMD_BIN: fakeSwarmd, PATH: process.env.PATH, SWARMCTL_CONTEXT: join(root, 'ctx.json') };
  const names = kernelNames(name);
  t.teardown(async () => {
    await swarmctl(['local', 'down', '--name', name], env);
    await rm(root, { recursive: true, force: true });
  });
  const up = await swarmctl(['local', 'up', '--name', name, '--managers', '2', '--workers', '2', '--subnet', '10.251.77.0/24', '--timeout', '60'], env);
  t.is(up.code, 0, up.stderr + up.stdout);
  t.regex(up.stdout, /nodes ready: 4\/4/);
  t.regex(up.stdout, /registry: http:\/\/10\.251\.77\.1:5000/);
  t.regex(up.stdout, new RegExp(`${name}-w2`));
  const ctx = JSON.parse(await readFile(env.SWARMCTL_CONTEXT, 'utf8')) as { host: string };
  t.is(ctx.host, `unix://${join(root, name, 'm1', 'control.sock')}`);
  // swarmctl reaches the cluster through the context file
  const ls = await swarmctl(['node', 'ls', '--format', 'json'], env);
  t.is(ls.code, 0, ls.stderr);
  t.is((JSON.parse(ls.stdout) as unknown[]).length, 4);
  // the registry answers on the gateway, from inside a host too
  const v2 = await run('nsenter', [`--net=/run/netns/${names.netns('w1')}`, '--', 'curl', '-sf', 'http://10.251.77.1:5000/v2/']).catch((e: Error) => e);
  t.false(v2 instanceof Error, v2 instanceof Error ? v2.message : '');
  const lsLocal = await swarmctl(['local', 'ls'], env);
  t.regex(lsLocal.stdout, new RegExp(`${name}\\s+m1\\s+${name}-m1\\s+manager\\s+10\\.251\\.77\\.2\\s+\\d+\\s+running`));
  t.regex(lsLocal.stdout, /registry\s+10\.251\.77\.1:5000\s+\d+\s+running/);
  // a second up with the same name is refused
  const again = await swarmctl(['local', 'up', '--name', name, '--subnet', '10.251.78.0/24'], env);
  t.is(again.code, 1);
  t.regex(again.stderr, /exists/);

  const dir = join(root, name);
  const netnsPaths = ['m1', 'm2', 'w1', 'w2'].map((h) => `/run/netns/${names.netns(h)}`);
  t.true((await clusterProcesses(dir, netnsPaths)).length >= 9); // 4 swarmd + 4 sleeps + registry
  const down = await swarmctl(['local', 'down', '--name', name], env);
  t.is(down.code, 0, down.stderr);
  t.regex(down.stdout, /removed/);
  t.false(existsSync(dir));
  t.false(existsSync(env.SWARMCTL_CONTEXT));
  const { stdout: nsList } = await run('ip', ['netns', 'list']);
  t.false(nsList.includes(names.netnsPrefix));
  t.false((await run('ip', ['link', 'show', names.bridge]).then(() => true, () => false)));
  const fw = await run('iptables', ['-S', 'FORWARD']).catch(() => ({ stdout: '' }));
  t.false(fw.stdout.includes(names.bridge));
  t.deepEqual(await clusterProcesses(dir, []), []);
  // down again: nothing to do, still success
  const down2 = await swarmctl(['local', 'down', '--name', name], env);
  t.is(down2.code, 0);
  t.regex(down2.stdout, /nothing to do/);
});

rootTest('local down after a crash: no state file, processes still running, it still removes everything', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swl-'));
  const name = `c${process.pid % 100000}`;
  const env = { SWARMD_LOCAL_ROOT: root, SWARMD_BIN: fakeSwarmd, PATH: process.env.PATH, SWARMCTL_CONTEXT: join(root, 'ctx.json') };
  const names = kernelNames(name);
  const dir = join(root, name);
  t.teardown(async () => {
    await swarmctl(['local', 'down', '--name', name], env);
    await rm(root, { recursive: true, force: true });
  });
  const up = await swarmctl(['local', 'up', '--name', name, '--managers', '1', '--workers', '1', '--subnet', '10.251.79.0/24', '--timeout', '60'], env);
  t.is(up.code, 0, up.stderr + up.stdout);
  await rm(join(dir, 'cluster.json')); // as if `up` had died before writing it
  t.is((await swarmctl(['local', 'ls'], env)).stdout.trim(), 'no local clusters');
  const down = await swarmctl(['local', 'down', '--name', name], env);
  t.is(down.code, 0, down.stderr);
  t.regex(down.stdout, /removed/);
  t.false(existsSync(dir));
  t.false((await run('ip', ['netns', 'list'])).stdout.includes(names.netnsPrefix));
  t.false(await run('ip', ['link', 'show', names.bridge]).then(() => true, () => false));
  t.false((await run('iptables', ['-S', 'FORWARD']).catch(() => ({ stdout: '' }))).stdout.includes(names.bridge));
  t.deepEqual(await clusterProcesses(dir, []), []);
});
