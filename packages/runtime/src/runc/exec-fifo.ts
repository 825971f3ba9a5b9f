/**
 * `runc start` without a runc process. A container runc created waits in `runc init`, blocked
 * opening `<root>/<id>/exec.fifo` for writing; `runc start` opens it for reading, reads the byte
 * the init then writes, and removes the fifo (runc tells "created" from "running" by whether
 * the fifo exists); the init goes on to exec the container's process. Doing those three steps
 * here saves a runc process per start (its fork from this large process, Go's start-up and
 * ~10-20 ms of CPU). runc 1.x keeps the fifo there; when it is not (another runc), the caller
 * runs `runc start`.
 */
import { constants } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { failedPrecondition, unavailable } from '@swarmd/common/errors';

/** True while `pid` runs (not a zombie). */
async function running(pid: number): Promise<boolean> {
  const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return st !== '' && st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
}

/**
 * Starts the created container `id` of runc root `root` whose init is `initPid` through its exec
 * fifo. False when there is no fifo (not a runc that keeps one there, or already started): the
 * caller falls back to `runc start`. FAILED_PRECONDITION when the init died before it could run.
 */
export async function startThroughExecFifo(root: string, id: string, initPid: number, o: { timeoutMs?: number } = {}): Promise<boolean> {
  const path = join(root, id, 'exec.fifo');
  let fh;
  try {
    // Non-blocking: never parks a thread of the pool on a fifo whose writer is gone.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    const buf = Buffer.alloc(16);
    const deadline = performance.now() + (o.timeoutMs ?? 10_000);
    for (;;) {
      let n = 0;
      try {
        n = (await fh.read(buf, 0, buf.length, null)).bytesRead;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      }
      if (n > 0) break; // the init wrote its byte: it goes on to exec the process
      // 0: its writer has not opened yet (or is gone); EAGAIN: opened, not yet written.
      if (!(await running(initPid))) {
        // It may have written its byte, exec'd and exited since the read above (as runc checks).
        const last = await fh.read(buf, 0, buf.length, null).then(
          (r) => r.bytesRead,
          () => 0,
        );
        if (last > 0) break;
        throw failedPrecondition(`start ${id}: the container's init (pid ${initPid}) is gone`);
      }
      if (performance.now() > deadline) throw unavailable(`start ${id}: the container's init (pid ${initPid}) did not answer on its exec fifo in ${o.timeoutMs ?? 10_000} ms`);
      await sleep(2);
    }
  } finally {
    await fh.close();
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  return true;
}
