/**
 * Container start latency: our runtime (overlay snapshot + OCI bundle + conmon + runc create +
 * runc start), our runtime in one runc process (create with startNow: conmon runs `runc run
 * --detach`), beside bare `runc run -d` of an equivalent, prepared bundle and `docker run -d` of
 * the same busybox image, each 50 sequential starts from a warm image, measured from the call
 * to the container's process running. Ends with `runtime/runc start ratio: R` (p50 / p50) and
 * the same ratio for the one-process path.
 *
 *   npm run bench:runtime            (root; BENCH_RUNS=N to change the count, BENCH_DOCKER=0 to skip docker)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, describeError } from '@swarmd/common';
import { buildBusyboxImage, busyboxRootfsEntries, tarLayer } from '@swarmd/testkit/images';
import { ContainerService, mountsUnder, removeCgroup, type ContainerSpec, type ImageInput } from '@swarmd/runtime';
import { Dockerd, findDocker } from '@swarmd/testkit/dockerd';

const RUNS = Number(process.env.BENCH_RUNS ?? 50);
const SPEC: ContainerSpec = { command: ['sleep', '100000'] };

interface Figures {
  p50: number;
  p99: number;
  mean: number;
}

function figures(ms: number[]): Figures {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  return { p50: q(50), p99: q(99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

const fmt = (f: Figures) => `p50 ${f.p50.toFixed(1)} ms  p99 ${f.p99.toFixed(1)} ms  mean ${f.mean.toFixed(1)} ms`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

// ---- ours and bare runc, interleaved (both see the same machine noise) ----------------------

interface Pair {
  ours: number[];
  /** create({ startNow: () => true }): created and started by one `runc run --detach`. */
  oursNow: number[];
  bare: number[];
  conmonRssKb: number[];
}

function runcRunDetached(runcRoot: string, id: string, bundle: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    // The container inherits runc's stdio: /dev/null, so nothing waits on a pipe.
    const child = spawn('runc', ['--root', runcRoot, 'run', '-d', '--bundle', bundle, id], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`runc run ${id}: ${err}`))));
  });
}

async function benchOursAndRunc(dir: string, image: ImageInput): Promise<Pair> {
  const svc = new ContainerService({ root: join(dir, 'runtime'), instance: `bench${randomBytes(3).toString('hex')}` });
  const runcRoot = join(dir, 'runc-bare');
  const bareParent = `/swarmd-bench-bare-${randomBytes(3).toString('hex')}`;
  const ids: string[] = [];
  const bareIds: string[] = [];
  try {
    // Warm-up, and the spec our runtime writes: the bare bundles use it as it is, with the
    // unpacked layer as a read-only rootfs (no overlay mount, no generated /etc files).
    await svc.create('warm', { image, spec: SPEC });
    ids.push('warm');
    await svc.start('warm');
    await svc.create('warm-now', { image, spec: SPEC, startNow: () => true }); // writes the runtime wrapper
    ids.push('warm-now');
    const ours = JSON.parse(await readFile(join(svc.dir('warm'), 'config.json'), 'utf8')) as Record<string, unknown>;
    const bareBundle = async (id: string) => {
      const bundle = join(dir, 'bundles', id);
      await mkdir(bundle, { recursive: true });
      const linux = ours.linux as Record<string, unknown>;
      const cfg = {
        ...ours,
        root: { path: image.layers[0], readonly: true },
        mounts: (ours.mounts as { destination: string }[]).filter((m) => !m.destination.startsWith('/etc/')),
        linux: { ...linux, cgroupsPath: `${bareParent}/${id}` },
      };
      await writeFile(join(bundle, 'config.json'), JSON.stringify(cfg));
      bareIds.push(id);
      return bundle;
    };
    await runcRunDetached(runcRoot, 'warm', await bareBundle('warm'));

    const pair: Pair = { ours: [], oursNow: [], bare: [], conmonRssKb: [] };
    for (let i = 0; i < RUNS; i++) {
      const id = `c${i}`;
      ids.push(id);
      pair.ours.push(
        await timed(async () => {
          await svc.create(id, { image, spec: SPEC });
          await svc.start(id);
        }),
      );
      ids.push(`n${i}`);
      pair.oursNow.push(await timed(() => svc.create(`n${i}`, { image, spec: SPEC, startNow: () => true })));
      const bundle = await bareBundle(`b${i}`);
      pair.bare.push(await timed(() => runcRunDetached(runcRoot, `b${i}`, bundle)));
    }
    for (const c of await svc.list()) if (c.status === 'running' && c.conmonPid) pair.conmonRssKb.push(await rssKb(c.conmonPid));
    return pair;
  } finally {
    for (const id of ids) await svc.remove(id, { force: true }).catch((e: unknown) => console.error(`remove ${id}: ${describeError(e)}`));
    await svc.removeCgroupParent();
    for (const id of bareIds) await run('runc', ['--root', runcRoot, 'delete', '--force', id], { okCodes: [0, 1] }).catch(() => undefined);
    await removeCgroup(bareParent);
  }
}

// ---- docker ----------------------------------------------------------------------------------

/** A `docker save` archive of testkit's busybox image. */
async function dockerArchive(dir: string, tag: string): Promise<string> {
  const img = await buildBusyboxImage({ format: 'docker', config: { Cmd: ['sh'] } });
  const staging = join(dir, 'archive');
  await mkdir(staging, { recursive: true });
  const configName = `${img.configDigest.slice(7)}.json`;
  await writeFile(join(staging, configName), img.config);
  const layerNames: string[] = [];
  for (const l of img.layers) {
    const name = `${l.digest.slice(7)}/layer.tar`;
    await mkdir(join(staging, l.digest.slice(7)), { recursive: true });
    await writeFile(join(staging, name), l.data); // gzip: docker load takes it
    layerNames.push(name);
  }
  await writeFile(join(staging, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: layerNames }]));
  const out = join(dir, 'busybox.tar');
  await run('tar', ['-cf', out, '-C', staging, '.']);
  return out;
}

async function benchDocker(dir: string): Promise<{ times: number[] } | { skipped: string }> {
  if (process.env.BENCH_DOCKER === '0') return { skipped: 'BENCH_DOCKER=0' };
  const bin = findDocker();
  if (!bin) return { skipped: 'dockerd not installed (apt-get install docker.io)' };
  // No iptables, no bridge: dockerd leaves the host's firewall (FORWARD policy) alone, and the
  // containers get an empty network namespace, as ours do.
  const daemon = await Dockerd.start(bin, {
    dir: join(dir, 'docker'),
    cgroupParent: '/swarmd-bench-docker',
    args: ['--iptables=false', '--ip6tables=false', '--ip-masq=false', '--bridge=none'],
  });
  const ids: string[] = [];
  try {
    const tag = 'swarmd-bench/busybox:latest';
    await daemon.cli(['load', '-i', await dockerArchive(dir, tag)]);
    const runOne = async () => {
      const r = await daemon.cli(['run', '-d', '--network', 'none', tag, 'sleep', '100000']);
      ids.push(r.stdout.trim());
    };
    await runOne(); // warm-up
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(await timed(runOne));
    return { times };
  } finally {
    if (ids.length) await daemon.cli(['rm', '-f', ...ids]).catch(() => undefined);
    await daemon.stop();
  }
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:runtime needs root (runc, overlayfs, cgroups)');
  const dir = await mkdtemp(join(tmpdir(), 'swarmd-bench-rt-'));
  try {
    const layer = join(dir, 'runtime', 'snapshots', 'busybox', 'fs');
    await mkdir(layer, { recursive: true });
    await run('tar', ['-x', '-C', layer], { input: await tarLayer(await busyboxRootfsEntries()) });
    const image: ImageInput = { layers: [layer], config: { Env: ['PATH=/bin'], Cmd: ['sh'] } };
    console.log(`container starts: ${RUNS} sequential, busybox "sleep", warm image, ${process.arch}`);

    const pair = await benchOursAndRunc(dir, image);
    const docker = await benchDocker(dir).catch((e: unknown) => ({ skipped: describeError(e) }));

    const o = figures(pair.ours);
    const n = figures(pair.oursNow);
    const b = figures(pair.bare);
    console.log(`swarmd runtime (create+start) ${fmt(o)}`);
    console.log(`swarmd runtime (startNow)     ${fmt(n)}`);
    console.log(`bare runc run -d              ${fmt(b)}`);
    if ('times' in docker) console.log(`docker run -d                 ${fmt(figures(docker.times))}`);
    else console.log(`docker run -d                 skipped: ${docker.skipped}`);
    const rss = pair.conmonRssKb;
    if (rss.length) {
      const avg = rss.reduce((a, x) => a + x, 0) / rss.length;
      console.log(`conmon RSS per running container: ${(avg / 1024).toFixed(2)} MiB avg, ${(Math.max(...rss) / 1024).toFixed(2)} MiB max (${rss.length} running)`);
    }
    console.log(`runtime/runc start ratio: ${(o.p50 / b.p50).toFixed(2)}`);
    console.log(`runtime (startNow)/runc start ratio: ${(n.p50 / b.p50).toFixed(2)}`);
  } finally {
    for (const m of await mountsUnder(dir)) await run('umount', ['-l', m]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(describeError(err));
  process.exitCode = 1;
});
