import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { requires } from '@swarmd/testkit';
import { alive, logLines, newRuntime } from './container-helpers.js';

const rootTest = requires('root', 'runc', 'conmon', 'busybox');

const indexJs = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** An "agent" in a separate node process: creates and starts a container, prints its pid, exits. */
function agentRun(root: string, instance: string, layer: string): Promise<number> {
  const script = `
    import { ContainerService } from ${JSON.stringify(indexJs)};
    const svc = new ContainerService({ root: ${JSON.stringify(root)}, instance: ${JSON.stringify(instance)} });
    await svc.create('long', { image: { layers: [${JSON.stringify(layer)}], config: { Env: ['PATH=/bin'] } },
      spec: { command: ['sh', '-c', 'echo up; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo bye; exit 42'] } });
    console.log(await svc.start('long'));
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`agent exited ${code}: ${out}`))));
  });
}

rootTest('a new service on the same root re-attaches to a container an exited agent started, and gets its exit code', async (t) => {
  const { svc, busybox, root } = await newRuntime(t);
  const pid = await agentRun(root, svc.instance, busybox.layers[0]);
  t.true(await alive(pid), 'the container outlives the agent process that started it');

  const info = await svc.inspect('long');
  t.is(info.status, 'running');
  t.is(info.pid, pid);
  const conmonStat = await readFile(`/proc/${info.conmonPid}/stat`, 'utf8');
  const ppid = Number(conmonStat.slice(conmonStat.lastIndexOf(')') + 2).split(' ')[1]);
  t.not(ppid, process.pid, 'conmon is not our child');
  t.deepEqual((await svc.list()).map((c) => [c.id, c.status]), [['long', 'running']]);

  await svc.exec('long', ['touch', '/tmp/go']);
  const exit = await svc.wait('long');
  t.is(exit.exitCode, 42);
  t.deepEqual(await logLines(svc, 'long'), ['stdout: up', 'stdout: bye']);

  // And yet another instance (a second restart) still reads the recorded exit.
  const again = await svc.inspect('long');
  t.is(again.status, 'exited');
  t.is(again.exit?.exitCode, 42);
  await svc.remove('long');
});

rootTest('an exit that happens while no agent runs is found by the next one', async (t) => {
  const { svc, busybox, reopen } = await newRuntime(t);
  await svc.create('short', { image: busybox, spec: { command: ['sh', '-c', 'exit 9'] } });
  await svc.start('short');
  // Nobody waits; the monitor records the exit on disk.
  const later = reopen();
  t.is((await later.wait('short')).exitCode, 9);
  t.is((await reopen().inspect('short')).exit?.exitCode, 9);
});
