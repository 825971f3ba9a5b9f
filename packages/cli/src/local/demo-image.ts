/**
 * The local cluster's demo image, `<registry>/demo/web:latest`: a root filesystem with the host's
 * busybox-static whose default command serves "hello from <hostname>" over HTTP on port 8080 and
 * stops at once on SIGTERM.
 * Built with Debian's umoci (an OCI image layout) and pushed with skopeo, so the cluster runs an
 * image made by third-party tools from its first minute, and needs no outside registry.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '@swarmd/common/exec';
import { wrapError, ErrorCode } from '@swarmd/common/errors';

export const DEMO_IMAGE_PATH = 'demo/web:latest';
export const DEMO_PORT = 8080;

const BUSYBOX = '/bin/busybox';

export async function seedDemoImage(registryAddr: string): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'swarmctl-demo-image-'));
  try {
    const layout = join(work, 'layout');
    const bundle = join(work, 'bundle');
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:latest`]);
    await run('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    for (const d of ['bin', 'etc', 'tmp', 'www', 'root']) await mkdir(join(rootfs, d), { recursive: true });
    await chmod(join(rootfs, 'tmp'), 0o1777);
    await copyFile(BUSYBOX, join(rootfs, 'bin', 'busybox'));
    await chmod(join(rootfs, 'bin', 'busybox'), 0o755);
    const applets = (await run(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => a && a !== 'busybox');
    for (const a of applets) await symlink('busybox', join(rootfs, 'bin', a));
    await writeFile(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    await writeFile(join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
    await run('umoci', ['repack', '--image', `${layout}:latest`, bundle]);
    await run('umoci', [
      'config',
      '--image', `${layout}:latest`,
      '--config.env', 'PATH=/bin',
      '--config.workingdir', '/',
      '--config.exposedports', `${DEMO_PORT}/tcp`,
      '--config.cmd', 'sh',
      '--config.cmd', '-c',
      // sh stays PID 1 with a TERM trap: a PID 1 without a handler ignores SIGTERM, so httpd
      // alone would sit out every stop grace period (10 s per replica in a rolling update).
      '--config.cmd', `echo "hello from $(hostname)" > /www/index.html; httpd -f -p ${DEMO_PORT} -h /www & pid=$!; trap 'kill $pid; exit 0' TERM INT; wait $pid`,
    ]);
    const ref = `${registryAddr}/${DEMO_IMAGE_PATH}`;
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${ref}`]);
    return ref;
  } catch (err) {
    throw wrapError(ErrorCode.UNAVAILABLE, `cannot build the demo image (needs umoci, skopeo and busybox-static)`, err);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
