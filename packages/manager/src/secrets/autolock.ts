/**
 * Autolock in the store and on each manager's disk. The cluster object holds the unlock key
 * sealed with the secrets key (Cluster.unlock_key_sealed: the Raft log never carries it in the
 * clear, and it opens only with the key it protects); every manager keeps DIR/secrets.key and
 * its TLS key (DIR/certs/node-key.pem) in the form the cluster asks for: wrapped with the current
 * unlock key, or plain once autolock is off (SwarmKit's manager does the same when the cluster's
 * unlock key changes: it re-encrypts its TLS key with the new KEK).
 */
import type { Cluster } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
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
  /** The node's TLS key file, kept encrypted with the same unlock key (none: secrets.key only). */
  nodeKey?: {
    /** The unlock key it is encrypted with now ('' when plain). */
    current: string;
    /** Writes it encrypted with this unlock key (undefined: plain). */
    write: (unlockKey: string | undefined) => Promise<void>;
  };
  logger: Logger;
  intervalMs?: number;
}

/**
 * Keeps DIR/secrets.key (and the TLS key, `nodeKey`) wrapped with the cluster's current unlock
 * key (or plain): checks the store's cluster object every `intervalMs` (default 500 ms) and
 * rewrites the files on a change. Every manager runs one, leader or not.
 */
export class KeyFileKeeper {
  private current: string;
  private nodeKeyCurrent: string;
  private timer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();

  constructor(private readonly o: KeyFileKeeperOptions) {
    this.current = o.current;
    this.nodeKeyCurrent = o.nodeKey?.current ?? '';
  }

  /**
   * Runs `f` between checks with the unlock key the TLS key file is encrypted with now ('' when
   * plain): a renewed certificate's key is written in the same form, never racing a rewrap.
   */
  run<T>(f: (unlockKey: string) => Promise<T>): Promise<T> {
    const r = this.busy.then(() => f(this.nodeKeyCurrent));
    this.busy = r.then(
      () => undefined,
      () => undefined,
    );
    return r;
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
      if (want !== this.current) {
        try {
          await writeSecretsKey(this.o.stateDir, key, want || undefined);
          this.current = want;
          this.o.logger.info(want ? 'secrets key on disk wrapped with the cluster unlock key (autolock)' : 'secrets key on disk unwrapped (autolock off)');
        } catch (err) {
          this.o.logger.error('cannot rewrite the secrets key file', { err: describeError(err) });
        }
      }
      if (this.o.nodeKey && want !== this.nodeKeyCurrent) {
        try {
          await this.o.nodeKey.write(want || undefined);
          this.nodeKeyCurrent = want;
          this.o.logger.info(want ? 'TLS key on disk encrypted with the cluster unlock key (autolock)' : 'TLS key on disk decrypted (autolock off)');
        } catch (err) {
          this.o.logger.error('cannot rewrite the TLS key file', { err: describeError(err) });
        }
      }
    });
    return this.busy;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.busy;
  }
}
