// What a worker's swarmd loads (issue 16): on a real 1+1 local cluster whose swarmd processes
// (run from the modules) record every module they load (NODE_OPTIONS=--import e2e's module-trace), the worker has
// loaded none of the manager (the @swarmd/manager package beyond its node-side certificate
// helpers, raft-ts) after joining; `node promote` makes it load them and serve as a manager.
// Root, netns, runc; skipped while swarmd is not built (never under CI).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadedModules } from '../src/module-trace/register.js';
import { clusterTest, startLocalCluster } from './helpers/local-cluster.js';

const NAME = `wmod${process.pid % 10000}`;
const NET = '10.252.102';
const TRACER = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'module-trace', 'register.js');
/** swarmd from its modules (dist/src/main.js), not its bundle: the trace names each module's package. */
const MODULES = fileURLToPath(import.meta.resolve('@swarmd/swarmd/main'));

/** The @swarmd/manager files a node that runs no manager may load: its certificates and state files. */
const NODE_SIDE = new Set(['ca/files.js', 'ca/renewal.js', 'ca/csr.js', 'ca/x509.js', 'ca/tokens.js', 'manager/tls.js', 'manager/node-certs.js', 'secrets/tls-key.js', 'secrets/unlock-key.js', 'events/derive.js']);

/** What of the manager a process loaded: @swarmd/manager files beyond NODE_SIDE, and raft-ts. */
function managerCode(urls: readonly string[]): string[] {
  return urls.filter((u) => {
    const m = /\/packages\/manager\/dist\/src\/(.*)$/.exec(u);
    return (m && !NODE_SIDE.has(m[1])) || /\/raft-ts\//.test(u);
  });
}

clusterTest('a worker loads no manager code (the manager package, raft-ts) until it is promoted; promoted, it loads them and serves as a manager', async (t) => {
  const traces = await mkdtemp(join(tmpdir(), 'swarmd-modules-'));
  t.teardown(() => rm(traces, { recursive: true, force: true }));
  const c = await startLocalCluster(t, NAME, NET, 1, 1, { env: { NODE_OPTIONS: `--import ${TRACER}`, SWARMD_MODULE_TRACE_DIR: traces, SWARMD_BIN: MODULES } });
  const w1 = await c.host('w1');
  const m1 = await c.host('m1');

  // The trace sees what a manager loads (the check below could fail).
  t.true(managerCode(await loadedModules(traces, m1.pid!)).some((u) => u.endsWith('/packages/manager/dist/src/index.js')), "the manager's trace holds @swarmd/manager");
  const before = await loadedModules(traces, w1.pid!);
  t.true(before.some((u) => u.includes('/packages/node-agent/dist/src/')), "the worker's trace holds its agent");
  t.deepEqual(managerCode(before), [], 'a worker that joined has loaded no manager code');

  // An idle worker stays so: nothing loads the manager on a heartbeat or a renewal check.
  await c.ok('service', 'create', '--name', 'web', '--replicas', '2', '--constraint', 'node.role==worker', c.image);
  t.deepEqual(managerCode(await loadedModules(traces, w1.pid!)), [], 'running tasks loads no manager code either');

  await c.ok('node', 'promote', `${NAME}-w1`);
  await c.until(
    'w1 to be a manager with a Raft member file',
    async () => (await c.byHost('w1'))?.role === 'NODE_ROLE_MANAGER' && (await readFile(join(w1.stateDir, 'raft', 'member.json')).then(() => true, () => false)),
    150,
  );
  const after = managerCode(await loadedModules(traces, w1.pid!));
  t.true(after.some((u) => u.endsWith('/packages/manager/dist/src/index.js')), 'promoted, the same process loaded @swarmd/manager');
  t.true(after.some((u) => /\/raft-ts\//.test(u)), 'and raft-ts');
  t.is((await c.host('w1')).pid, w1.pid, 'without a restart');
});
