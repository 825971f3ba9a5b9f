/** Promise queues for networking's changes: one at a time, or one at a time per key. */

/** Runs the functions given one after another (a failure does not stop the queue). */
export function serialQueue(): <T>(fn: () => Promise<T>) => Promise<T> {
  let lock: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const p = lock.then(fn, fn);
    lock = p.catch(() => undefined);
    return p;
  };
}

/** Runs the functions given for one key one after another; different keys run side by side. */
export function keyedQueue(): <T>(key: string, fn: () => Promise<T>) => Promise<T> {
  const chains = new Map<string, Promise<void>>();
  return <T>(key: string, fn: () => Promise<T>) => {
    const p = (chains.get(key) ?? Promise.resolve()).then(fn);
    const tail = p.then(
      () => undefined,
      () => undefined,
    );
    chains.set(key, tail);
    void tail.then(() => {
      if (chains.get(key) === tail) chains.delete(key);
    });
    return p;
  };
}

let firstNetns: Promise<void> | undefined;

/**
 * Runs a task's link setup. The first one in this process runs alone: its `ip netns add` may have
 * to set up /run/netns (a shared mount), which two at once would both do.
 */
export async function afterFirstNetns(fn: () => Promise<unknown>): Promise<void> {
  if (!firstNetns) {
    const first = fn().then(() => undefined);
    firstNetns = first.catch(() => {
      firstNetns = undefined;
    });
    return first;
  }
  await firstNetns;
  await fn();
}
