import { join } from 'node:path';
import { requires } from '@swarmd/testkit';
import { newRuntime, logLines } from './container-helpers.js';

const rootTest = requires('root', 'runc', 'conmon', 'busybox');

rootTest('runs a container with the image config overridden by env, args, workdir and user', async (t) => {
  const { svc, busybox } = await newRuntime(t);
  const image = { ...busybox, config: { ...busybox.config, Env: ['PATH=/bin', 'FROM_IMAGE=img', 'OVERRIDE=img'], WorkingDir: '/etc' } };
  await svc.create('c1', {
    image,
    spec: {
      command: ['sh', '-c'],
      args: ['echo "uid=$(id -u) gid=$(id -g) pwd=$(pwd) a=$FROM_IMAGE b=$OVERRIDE c=$SPEC host=$(hostname) home=$HOME"; echo oops >&2; exit 7'],
      env: ['OVERRIDE=spec', 'SPEC=yes'],
      dir: '/tmp',
      user: 'nobody',
      hostname: 'web-1',
    },
  });
  const pid = await svc.start('c1');
  t.true(pid > 0);
  const exit = await svc.wait('c1');
  t.is(exit.exitCode, 7);
  t.false(exit.oomKilled);
  const lines = await logLines(svc, 'c1');
  t.deepEqual(lines, ['stdout: uid=65534 gid=65534 pwd=/tmp a=img b=spec c=yes host=web-1 home=/home', 'stderr: oops']);
  t.is((await svc.inspect('c1')).status, 'exited');
  await svc.remove('c1');
  t.is(join('a', 'b'), 'a/b');
});
