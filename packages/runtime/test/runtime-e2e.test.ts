import { join } from 'node:path';
import { buildBusyboxImage, requires, startRegistry, tarLayer } from '@swarmd/testkit';
import { ImageService } from '../src/index.js';
import { logLines, newRuntime } from './container-helpers.js';

requires('root', 'runc', 'conmon', 'registry', 'busybox')('pulls a two-layer image from a local registry and runs it (whiteouts, config, StopSignal)', async (t) => {
  const reg = await startRegistry({ t });
  const top = await tarLayer([
    { type: 'dir', path: 'app' },
    { type: 'file', path: 'app/run.sh', content: '#!/bin/sh\necho "hello from $GREETING in $(pwd) as $(id -un)"\nls /etc\n', mode: 0o755 },
    { type: 'whiteout', path: 'etc/group' },
  ]);
  const img = await buildBusyboxImage({
    extraLayers: [{ tar: top }],
    config: { Entrypoint: ['/app/run.sh'], Cmd: [], Env: ['PATH=/bin', 'GREETING=the registry'], WorkingDir: '/app', StopSignal: 'SIGQUIT' },
  });
  const { svc, root } = await newRuntime(t);
  const images = await new ImageService({ root }).init();
  t.teardown(() => images.close());
  await images.pushImage(`${reg.host}/e2e/app:1`, img);
  // An empty image store pulls it back (nothing cached from the push) and unpacks the layers.
  const puller = await new ImageService({ root: join(root, 'pulled') }).init();
  t.teardown(() => puller.close());
  const rec = await puller.pull(`${reg.host}/e2e/app:1`);
  const layers = puller.layerDirs(rec);
  t.is(layers.length, 2);
  const config = (await puller.config(rec)).config ?? {};

  const info = await svc.create('e2e', { image: { layers, config } });
  t.is(info.stopSignal, 'SIGQUIT');
  await svc.start('e2e');
  t.is((await svc.wait('e2e')).exitCode, 0);
  const lines = await logLines(svc, 'e2e');
  t.is(lines[0], 'stdout: hello from the registry in /app as root');
  t.true(lines.includes('stdout: passwd'));
  t.false(lines.includes('stdout: group'), 'the top layer deleted /etc/group');
  t.true((await svc.layerDirsInUse()).has(layers[0]));
  await svc.remove('e2e');
  t.is((await svc.layerDirsInUse()).size, 0);
});
