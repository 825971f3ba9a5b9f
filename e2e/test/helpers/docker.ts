// Docker beside a local cluster: a private dockerd (testkit's startPrivateDockerd: its own
// sockets, dirs and bridge, no change to the host's firewall) driven through testcontainers:
// images built from real Dockerfiles, pushed to the cluster's registry, and run by Docker itself,
// to compare what Docker runs with what swarmd runs. Processes are looked at from the host
// (/proc/PID), the same way for both.
import { mkdir, mkdtemp, readFile, readlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import { GenericContainer, getContainerRuntimeClient } from 'testcontainers';
import { busyboxRootfsEntries, startPrivateDockerd, tarLayer, type PrivateDockerd } from '@swarmd/testkit';

/** dockerode, as testcontainers' runtime client holds it. */
type Dockerode = Awaited<ReturnType<typeof getContainerRuntimeClient>>['container']['dockerode'];

/** The base image every Dockerfile here starts FROM: busybox-static's rootfs, `docker import`ed (no outside registry). */
export const BASE_IMAGE = 'busybox:local';

export interface DockerSide {
  pd: PrivateDockerd;
  docker: Dockerode;
  /** Builds `dockerfile` (with `files` beside it) through testcontainers, tags it REGISTRY/interop/NAME:1 and pushes it; the reference. */
  buildAndPush(name: string, dockerfile: string, files?: Record<string, string>): Promise<string>;
  /** Runs `image` in Docker (Entrypoint/Cmd of `o` replacing the image's, as `docker run` does): its id and host pid. Removed at the test's end. */
  run(t: ExecutionContext, image: string, o?: { entrypoint?: string[]; cmd?: string[] }): Promise<{ id: string; pid: number }>;
  /** Stops dockerd; the firewall changes it made (none expected), undone. */
  stop(): Promise<string[]>;
}

/** Follows a Docker progress stream to its end; fails on an error in it. */
async function follow(docker: Dockerode, stream: NodeJS.ReadableStream, what: string): Promise<unknown[]> {
  return new Promise((res, rej) =>
    docker.modem.followProgress(stream, (err: Error | null, out: unknown[]) => {
      if (err) return rej(new Error(`${what}: ${err.message}`, { cause: err }));
      const bad = out.find((x): x is { error: string } => typeof (x as { error?: unknown }).error === 'string');
      return bad ? rej(new Error(`${what}: ${bad.error}`)) : res(out);
    }),
  );
}

/**
 * One dockerd for the serial tests of a file, started by the first test that asks (after.always
 * stops it): pushes to and pulls from `registry` over plain HTTP; its bridge `bridge` (name, cidr).
 */
export function sharedDockerd(o: { registry: string; bridge: { name: string; cidr: string }; cgroupParent: string }): (t: ExecutionContext) => Promise<DockerSide> {
  let side: Promise<DockerSide> | undefined;
  test.after.always(async (t) => {
    const s = await side?.catch(() => undefined);
    const changes = await s?.stop();
    if (changes?.length) t.log(`dockerd changed the firewall (undone): ${changes.join('; ')}`);
  });
  const start = async (): Promise<DockerSide> => {
    const dir = await mkdtemp(join(tmpdir(), 'swarmd-dockerd-'));
    const pd = await startPrivateDockerd({ dir, cgroupParent: o.cgroupParent, bridge: o.bridge, insecureRegistries: [o.registry] });
    try {
      // testcontainers finds the daemon through DOCKER_HOST; Ryuk (its reaper) is an image from
      // Docker Hub, which cannot be reached: the tests remove what they start themselves.
      process.env.DOCKER_HOST = pd.host;
      process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
      const docker = (await getContainerRuntimeClient()).container.dockerode;
      const rootfs = Readable.from(await tarLayer(await busyboxRootfsEntries()));
      const [repo, tag] = BASE_IMAGE.split(':');
      const changes = ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["sh"]'];
      await follow(docker, await docker.importImage(rootfs, { repo, tag, changes }), `docker import ${BASE_IMAGE}`);
      const contexts = join(dir, 'contexts');
      return {
        pd,
        docker,
        stop: () => pd.stop(),
        buildAndPush: async (name, dockerfile, files = {}) => {
          const ctx = join(contexts, name);
          await mkdir(ctx, { recursive: true });
          await writeFile(join(ctx, 'Dockerfile'), dockerfile);
          for (const [f, text] of Object.entries(files)) {
            await mkdir(dirname(join(ctx, f)), { recursive: true });
            await writeFile(join(ctx, f), text);
          }
          const ref = `${o.registry}/interop/${name}:1`;
          try {
            await GenericContainer.fromDockerfile(ctx).build(ref, { deleteOnExit: false });
          } catch (err) {
            // testcontainers says only "Failed to build image" (the build's output goes to its
            // debug log): the same build through dockerode names the step that failed.
            const src = ['Dockerfile', ...Object.keys(files)];
            const why = await follow(docker, await docker.buildImage({ context: ctx, src }, { t: ref }), `docker build ${name}`).then(() => 'passed the second time', (e: Error) => e.message);
            throw new Error(`building ${name} (${ref}): ${why}`, { cause: err });
          }
          await follow(docker, await docker.getImage(ref).push({ authconfig: {} }), `docker push ${ref}`);
          return ref;
        },
        run: async (t, image, r = {}) => {
          let c = new GenericContainer(image);
          if (r.entrypoint) c = c.withEntrypoint(r.entrypoint);
          if (r.cmd) c = c.withCommand(r.cmd);
          const started = await c.start();
          t.teardown(async () => {
            await started.stop({ timeout: 0, remove: true }).catch(() => undefined);
          });
          const info = await docker.getContainer(started.getId()).inspect();
          return { id: info.Id, pid: info.State.Pid };
        },
      };
    } catch (err) {
      await pd.stop();
      throw err;
    }
  };
  return async () => (side ??= start());
}

/** A process as the host sees it: what Docker and swarmd must agree on. */
export interface ProcessView {
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  /** Real, effective, saved, fs (from /proc/PID/status). */
  uid: string;
  gid: string;
  groups: string;
}

export async function viewProcess(pid: number): Promise<ProcessView> {
  const nul = (s: string) => s.split('\0').filter(Boolean);
  const env: Record<string, string> = {};
  for (const kv of nul(await readFile(`/proc/${pid}/environ`, 'utf8'))) {
    const i = kv.indexOf('=');
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim().replace(/\s+/g, ' ') ?? '';
  return {
    argv: nul(await readFile(`/proc/${pid}/cmdline`, 'utf8')),
    env,
    cwd: await readlink(`/proc/${pid}/cwd`),
    uid: field('Uid'),
    gid: field('Gid'),
    groups: field('Groups'),
  };
}
