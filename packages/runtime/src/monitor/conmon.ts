/**
 * conmon as each container's monitor (DESIGN.md's "shim"): it runs `runc create`, holds the
 * container's stdio and writes it to a k8s-file log, reaps the container and writes its exit
 * code, and records an OOM kill. It double-forks and calls setsid, so it is reparented to init
 * and never dies with the agent: a later agent finds everything it needs in files.
 *
 * Handshake: conmon waits for a byte on _OCI_STARTPIPE before it does anything, then writes
 * `{"pid": N}` (or `{"pid": -1, "message": "..."}`) to the fd named by _OCI_SYNCPIPE once
 * `runc create` is done; the container then waits for `runc start`.
 *
 * Created and started by one runc process: conmon (2.1) always runs `<runtime> [runtime args]
 * create --bundle B --pid-file P ... ID`. Given the runtime wrapper below as its runtime, that
 * becomes `runc ... run --detach --bundle B ...` when B holds the START_NOW_MARKER file: runc
 * creates and starts the container and exits, the container is reparented to conmon (a
 * subreaper), which reads the pid file, reaps it and records its exit as after a create; its
 * stdio is conmon's pipes either way (no terminal). The wrapper leaves STARTED_BY_RUN in the
 * bundle when it did so. Without the marker it execs runc with the arguments unchanged.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { SwarmError, ErrorCode, internal, unavailable } from '@swarmd/common/errors';

export interface MonitorFiles {
  /** Bundle dir (config.json); conmon also puts its ctl/winsz fifos here. */
  bundle: string;
  /** k8s-file log: `<RFC3339Nano> stdout|stderr F|P <text>` lines. */
  logPath: string;
  /** conmon writes `<exitDir>/<id>` with the exit code (128+n for a signal). */
  exitDir: string;
  /** conmon's persist dir: `exit` and, after an OOM kill, `oom`. */
  persistDir: string;
  socketDir: string;
  conmonPidFile: string;
  containerPidFile: string;
  /** conmon's own stdout/stderr. */
  conmonLog: string;
}

export interface StartMonitorOptions {
  id: string;
  files: MonitorFiles;
  conmon: string;
  runc: string;
  runcRoot: string;
  timeoutMs?: number;
}

export interface MonitorStarted {
  conmonPid: number;
  containerPid: number;
}

export interface PendingMonitor {
  /** Lets conmon go on: it runs `runc create`; resolves once the container is created. */
  go(): Promise<MonitorStarted>;
  /** Kills the waiting conmon (before go(): it has not forked nor run anything yet). */
  abort(): void;
}

/** Starts conmon, which runs `runc create`; resolves once the container is created. */
export async function startMonitor(o: StartMonitorOptions): Promise<MonitorStarted> {
  return spawnMonitor(o).go();
}

/**
 * Spawns conmon held at its start pipe (`_OCI_STARTPIPE`): it loads and sets itself up while
 * the caller still prepares the bundle, and runs `runc create` only on go(). This hides
 * conmon's own start-up (~20 ms here) behind the rootfs mount and the bundle files.
 */
export function spawnMonitor(o: StartMonitorOptions): PendingMonitor {
  const f = o.files;
  const args = [
    '--api-version', '1',
    '-c', o.id,
    '-u', o.id,
    '-n', o.id,
    '-r', o.runc,
    '--runtime-arg', `--root=${o.runcRoot}`,
    '-b', f.bundle,
    '-P', f.conmonPidFile,
    '-p', f.containerPidFile,
    '-l', `k8s-file:${f.logPath}`,
    '--exit-dir', f.exitDir,
    '-0', f.persistDir,
    '--socket-dir-path', f.socketDir,
    '--log-level', 'warning',
  ];
  const logFd = openSync(f.conmonLog, 'a');
  let child;
  try {
    child = spawn(o.conmon, args, {
      detached: true,
      stdio: ['ignore', logFd, logFd, 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        _OCI_SYNCPIPE: '3',
        _OCI_STARTPIPE: '4',
      },
      cwd: f.bundle,
    });
  } finally {
    closeSync(logFd);
  }
  child.unref();
  const sync = child.stdio[3] as Readable;
  const startPipe = child.stdio[4] as Writable;
  startPipe.on('error', () => undefined); // conmon gone: the sync pipe tells
  let spawnErr: Error | undefined;
  const spawnError = new Promise<never>((_r, reject) =>
    child.once('error', (e) => {
      spawnErr = internal(`cannot run ${o.conmon}: ${e.message}`, { cause: e });
      reject(spawnErr);
    }),
  );
  spawnError.catch(() => undefined);

  let text = '';
  const reply = new Promise<string>((resolve) => {
    sync.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) resolve(text);
    });
    sync.once('close', () => resolve(text));
    sync.once('error', () => resolve(text));
  });

  return {
    abort: () => {
      sync.destroy();
      startPipe.destroy();
      child.kill('SIGKILL');
    },
    go: async () => {
      if (spawnErr) throw spawnErr;
      startPipe.end(Buffer.from([0]));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_r, reject) => {
        timer = setTimeout(() => reject(unavailable(`conmon for ${o.id}: no answer from runc create in ${o.timeoutMs ?? 30_000} ms`)), o.timeoutMs ?? 30_000);
      });
      let line: string;
      try {
        line = await Promise.race([reply, timeout, spawnError]);
      } finally {
        clearTimeout(timer);
        sync.destroy();
        startPipe.destroy(); // else the socket (held open by conmon) keeps this process alive
      }
      let msg: { pid?: number; data?: number; message?: string } = {};
      try {
        msg = JSON.parse(line.split('\n')[0] || '{}') as typeof msg;
      } catch {
        /* handled below */
      }
      const pid = msg.pid ?? msg.data ?? -1;
      if (pid <= 0) {
        const own = await readFile(f.conmonLog, 'utf8').catch(() => '');
        const why = (msg.message ?? own.trim().split('\n').slice(-3).join(' | ')) || 'conmon exited without a word';
        throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `create ${o.id}: ${cleanRuncMessage(why)}`, { details: { conmonLog: own } });
      }
      const conmonPid = Number((await readFile(f.conmonPidFile, 'utf8').catch(() => '0')).trim());
      return { conmonPid, containerPid: pid };
    },
  };
}

/** In a bundle: conmon's `create` is to be `run --detach` (written by the caller before go()). */
export const START_NOW_MARKER = 'start-now';
/** In a bundle: written by the runtime wrapper when it turned `create` into `run --detach`. */
export const STARTED_BY_RUN = 'started-by-run';

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The runtime wrapper given to conmon as `-r`: `exec`s runc (so no process stays), with
 * conmon's `create` subcommand replaced by `run --detach` when the bundle (from `--bundle`,
 * not the cwd) holds START_NOW_MARKER. Only the subcommand is looked at: the first argument
 * that is no option and no value of runc's global options. Shell builtins only (no fork).
 */
export function runtimeWrapperScript(runc: string): string {
  return `#!/bin/sh
# Written by swarmd's container runtime: conmon's runtime (-r). Runs runc; turns conmon's
# \`create\` into \`run --detach\` when the bundle holds the ${START_NOW_MARKER} file, so that one
# runc process creates and starts the container. Rewritten when runc's path changes.
runc=${shellQuote(runc)}
bundle=
prev=
for a in "$@"; do
  case $prev in --bundle|-b) bundle=$a ;; esac
  case $a in --bundle=*) bundle=\${a#--bundle=} ;; esac
  prev=$a
done
if [ -n "$bundle" ] && [ -e "$bundle/${START_NOW_MARKER}" ]; then
  n=$#
  seen=
  skip=
  for a in "$@"; do
    if [ -n "$skip" ]; then
      skip=
    elif [ -z "$seen" ]; then
      case $a in
        --root|--log|--log-format|--criu|--rootless) skip=1 ;;
        -*) ;;
        create)
          seen=1
          : > "$bundle/${STARTED_BY_RUN}"
          set -- "$@" run --detach
          continue
          ;;
        *) seen=1 ;;
      esac
    fi
    set -- "$@" "$a"
  done
  shift "$n"
fi
exec "$runc" "$@"
`;
}

/** Writes the runtime wrapper at `path` (mode 0755) unless it is there with this content. */
export async function ensureRuntimeWrapper(path: string, runc: string): Promise<string> {
  const text = runtimeWrapperScript(runc);
  const [have, st] = await Promise.all([readFile(path, 'utf8').catch(() => undefined), stat(path).catch(() => undefined)]);
  if (have === text && st && (st.mode & 0o777) === 0o755) return path;
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await writeFile(tmp, text, { mode: 0o755 });
  await chmod(tmp, 0o755); // whatever the umask
  await rename(tmp, path);
  return path;
}

/** runc's `time="..." level=error msg="..."` → the message. */
export function cleanRuncMessage(s: string): string {
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(s);
  return (m ? m[1].replace(/\\(.)/g, '$1') : s).trim();
}

export interface MonitorExit {
  exitCode: number;
  exitedAt: Date;
  /** conmon saw an OOM event in the container's memory cgroup. */
  oom: boolean;
}

/** The exit conmon recorded, or undefined while the container runs. */
export async function readMonitorExit(id: string, f: Pick<MonitorFiles, 'exitDir' | 'persistDir'>): Promise<MonitorExit | undefined> {
  const file = join(f.exitDir, id);
  let text: string;
  let mtime: Date;
  try {
    text = await readFile(file, 'utf8');
    mtime = (await stat(file)).mtime;
  } catch {
    return undefined;
  }
  if (!text.trim()) return undefined; // being written
  const oom = await stat(join(f.persistDir, 'oom')).then(
    () => true,
    () => false,
  );
  return { exitCode: Number(text.trim()), exitedAt: mtime, oom };
}

/** True when `pid` is a live (not zombie) conmon monitoring `id`. */
export async function isMonitorAlive(pid: number, id: string): Promise<boolean> {
  if (!pid) return false;
  try {
    const [cmdline, st] = await Promise.all([readFile(`/proc/${pid}/cmdline`, 'utf8'), readFile(`/proc/${pid}/stat`, 'utf8')]);
    const state = st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3);
    return state !== 'Z' && cmdline.includes('conmon') && cmdline.split('\0').includes(id);
  } catch {
    return false;
  }
}
