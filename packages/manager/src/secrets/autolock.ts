/**
 * Autolock in the store and on each manager's disk. The cluster object holds the unlock key
 * sealed with the secrets key (Cluster.unlock_key_sealed: the Raft log never carries it in the
 * clear, and it opens only with the key it protects); every manager keeps DIR/secrets.key in the
 * form the cluster asks for: wrapped with the current unlock key, or plain once autolock is off
 * (SwarmKit's manager does the same when the cluster's unlock key changes: it re-encrypts its
 * TLS key with the new KEK).
 */
import type { Cluster } from '@swarmd/proto';
import { describeError, type Logger } from '@swarmd/common';
import type { SecretsKeyring } from './sealed.js';
import { writeSecretsKey } from './key-file.js';

/** The cluster's unlock key in the clear (undefined: autolock is off). */
export function unlockKeyOf(c: Readonly<Cluster> | undefined, keyring: SecretsKeyring): string | undefined {
  if (!c?.unlockKeySealed?.length) return undefined;
  return keyring.open(c.unlockKeySealed).toString('utf8');
}

export interface KeyFileKeeperOptions {
  stateDir: string;
  keyring: SecretsKeyring;
  /** The cluster object as this manager's store holds it (undefined until replicated). */
  cluster: () => Readonly<Cluster> | undefined;
  /** The unlock key the file is wrapped with now ('' when plain). */
  current: string;
  logger: Logger;
  intervalMs?: number;
}

/**
 * Keeps DIR/secrets.key wrapped with the cluster's current unlock key (or plain): checks the
 * store's cluster object every `intervalMs` (default 500 ms) and rewrites the file on a change.
 * Every manager runs one, leader or not.
 */
export class KeyFileKeeper {
  private current: string;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();

  constructor(private readonly o: KeyFileKeeperOptions) {
    this.current = o.current;
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), this.o.intervalMs ?? 500);
    this.timer.unref();
  }

  /** One check (serialised); resolves when the file matches the cluster (or nothing to do). */
  check(): Promise<void> {
    this.busy = this.busy.then(async () => {
      const key = this.o.keyring.key();
      const c = this.o.cluster();
      if (!key || !c) return;
      let want: string;
      try {
        want = unlockKeyOf(c, this.o.keyring) ?? '';
      } catch (err) {
        this.o.logger.error('the cluster unlock key does not open with this manager\'s secrets key', { err: describeError(err) });
        return;
      }
      if (want === this.current) return;
      try {
        await writeSecretsKey(this.o.stateDir, key, want || undefined);
        this.current = want;
        this.o.logger.info(want ? 'secrets key on disk wrapped with the cluster unlock key (autolock)' : 'secrets key on disk unwrapped (autolock off)');
      } catch (err) {
        this.o.logger.error('cannot rewrite the secrets key file', { err: describeError(err) });
      }
    });
    return this.busy;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.busy;
  }
}
