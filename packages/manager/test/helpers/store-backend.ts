// Which replicated log the shared test harnesses put their store on: a LocalLog (the default) or,
// after useEtcdStore(), an EtcdLog on a real etcd (one etcd per test file, a fresh key prefix per
// store). The *-etcd.test.ts files run whole suites this way, so the same tests pass on both.
import { randomUUID } from 'node:crypto';
import { startEtcd, type LocalEtcd } from '@swarmd/testkit';
import { EtcdLog, connectEtcd, createStore, type MemoryStore, type StoreOptions } from '../../src/index.js';

let etcd: Promise<LocalEtcd> | undefined;
let useEtcd = false;
const opened: { log: EtcdLog; close(): void; store: MemoryStore }[] = [];

/** Makes every later testStore() use an etcd (started on first use); returns what stops it all. */
export function useEtcdStore(): () => Promise<void> {
  useEtcd = true;
  return async () => {
    for (const o of opened.splice(0)) {
      await o.log.stop();
      o.store.close();
      o.close();
    }
    await (await etcd)?.stop();
  };
}

/** A store on the backend in use, leading (the harnesses act as the leader manager). */
export async function testStore(opts: Omit<StoreOptions, 'log'> = {}): Promise<MemoryStore> {
  if (!useEtcd) return createStore(opts);
  etcd ??= startEtcd();
  const client = connectEtcd({ endpoints: (await etcd).endpoints });
  const log = new EtcdLog({ client, prefix: `/swarmd-test/${randomUUID()}`, leaseTtl: 5 });
  const store = createStore({ ...opts, log });
  opened.push({ log, store, close: () => client.close() });
  await log.start();
  const deadline = Date.now() + 15_000;
  while (!log.isLeader()) {
    if (Date.now() > deadline) throw new Error('test store: the etcd log was not elected within 15 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  return store;
}
