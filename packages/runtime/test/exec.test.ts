import { ErrorCode, isSwarmError } from '@swarmd/common';
import { requires } from '@swarmd/testkit';
import { newRuntime } from './container-helpers.js';

const rootTest = requires('root', 'runc', 'conmon', 'busybox');

rootTest('exec runs in a running container with env, user and cwd; stats come from its cgroups', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  await svc.create('e', { image: busybox, spec: { command: ['sh', '-c', 'sleep 1000 & wait'], env: ['FROM_SPEC=1'] } });
  await svc.start('e');
  const r = await svc.exec('e', ['sh', '-c', 'echo "$FROM_SPEC $EXTRA $(pwd)"; echo to-stderr >&2; exit 4'], { env: ['EXTRA=2'], cwd: '/etc' });
  t.deepEqual(r, { exitCode: 4, stdout: '1 2 /etc\n', stderr: 'to-stderr\n' });
  const who = await svc.exec('e', ['id', '-u'], { user: '65534' });
  t.is(who.stdout.trim(), '65534');

  // Stats: some memory and CPU used; two tasks (sh, sleep) or more.
  let s = await svc.stats('e');
  for (let i = 0; i < 50 && s.pids < 2; i++) s = await svc.stats('e');
  t.true(s.memoryBytes > 0, `memory ${s.memoryBytes}`);
  t.true(s.cpuUsageNs > 0);
  t.true(s.pids >= 2, `pids ${s.pids}`);

  const slow = await t.throwsAsync(svc.exec('e', ['sleep', '30'], { timeoutMs: 300 }));
  t.true(isSwarmError(slow, ErrorCode.DEADLINE_EXCEEDED), String(slow));
  const after = await svc.exec('e', ['sh', '-c', 'ps | grep -c "[s]leep 30" || true']);
  t.is(after.stdout.trim(), '0', 'the timed-out process was killed');

  await svc.stop('e', { timeoutMs: 200 });
  const e2 = await t.throwsAsync(svc.exec('e', ['true']));
  t.true(isSwarmError(e2, ErrorCode.FAILED_PRECONDITION));
  await t.throwsAsync(svc.stats('e'), { message: /not running/ });
});
