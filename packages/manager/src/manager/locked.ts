/**
 * A manager that restarts with autolock on: its TLS key and secrets key on disk are wrapped with
 * the cluster's unlock key (secrets/tls-key.ts, secrets/unlock-key.ts), so before Raft or the
 * store opens it waits, serving only the Control service on its control socket (as Docker, whose
 * locked node is unlocked on that host: without its TLS key it has no identity to serve TLS
 * with). A manager whose TLS key is plain (state written before its key was wrapped) serves the
 * Control service on its port too (admin and manager certificates). `Unlock` with the right key
 * ends the wait; every other call is refused with UNAVAILABLE, reason LOCKED ("this manager is
 * locked: run swarmctl swarm unlock"), which swarmctl takes as "ask another manager". A wrong
 * key is refused and changes nothing.
 */
import { chmod, rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { bindServer, RAFT_GRPC_OPTIONS } from 'raft-ts';
import { ControlService, type UnlockRequest, type UnlockResponse } from '@swarmd/proto';
import { SwarmError, ErrorCode, ErrorReason, describeError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { admitControlCaller } from '../rpc-kit/callers.js';
import { reply, streamError } from '../rpc-kit/replies.js';
import type { VerifyOptionsSource } from '../ca/grpc-auth.js';
import { strictService } from '../rpc-kit/wire.js';
import { authInterceptor } from './auth.js';

export interface LockedWaitOptions<T> {
  /** Opens what the unlock key locks (the keys on disk); throws on a wrong key, changing nothing. */
  open: (unlockKey: string) => T;
  /** Also serve the locked Control service on the port (none: the control socket only). */
  tcp?: { listenAddr: string; serverCredentials: grpc.ServerCredentials; verify: VerifyOptionsSource };
  /** The control socket's path (none: only the port). */
  controlSocket?: string;
  logger: Logger;
  /** Aborting gives up the wait (the daemon stops): the promise rejects. */
  signal?: AbortSignal;
}

export const LOCKED_MESSAGE = 'this manager is locked (autolock): run `swarmctl swarm unlock` (or `swarmd unlock`) with the unlock key';

export const lockedError = (): SwarmError => new SwarmError(ErrorCode.UNAVAILABLE, LOCKED_MESSAGE, { details: { reason: ErrorReason.LOCKED } });

/** The Control service of a locked manager: every method refused but Unlock. */
function lockedControl<T>(local: boolean, o: LockedWaitOptions<T>, unlock: (key: string) => Promise<void>): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  for (const [name, m] of Object.entries(ControlService)) {
    if (name === 'unlock') continue;
    impl[name] = m.responseStream
      ? (call: grpc.ServerWritableStream<unknown, unknown>) => call.destroy(streamError(lockedError()))
      : (_call: unknown, cb: grpc.sendUnaryData<unknown>) => reply(Promise.reject(lockedError()), cb);
  }
  impl.unlock = (call: grpc.ServerUnaryCall<UnlockRequest, UnlockResponse>, cb: grpc.sendUnaryData<UnlockResponse>) =>
    reply(
      (async () => {
        await admitControlCaller(call, local, o.tcp?.verify ?? (() => { throw new SwarmError(ErrorCode.INTERNAL, 'no TLS verification while locked'); }));
        await unlock(call.request.unlockKey);
        return {};
      })(),
      cb,
      o.logger,
      'Unlock',
    );
  return impl;
}

/** Serves the locked Control service until the right unlock key arrives; resolves with what it opened and that unlock key. */
export async function waitForUnlock<T>(o: LockedWaitOptions<T>): Promise<{ opened: T; unlockKey: string }> {
  const log = o.logger.child({ component: 'manager/locked' });
  if (!o.tcp && !o.controlSocket) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, 'this manager is locked (autolock) and has no control socket to be unlocked through');
  let done!: (r: { opened: T; unlockKey: string }) => void;
  let fail!: (e: unknown) => void;
  const unlocked = new Promise<{ opened: T; unlockKey: string }>((res, rej) => ((done = res), (fail = rej)));
  const unlock = async (unlockKey: string): Promise<void> => {
    try {
      const opened = o.open(unlockKey); // a wrong key throws: still locked
      log.info('unlocked: the unlock key opens the keys on disk');
      done({ opened, unlockKey: unlockKey.trim() });
    } catch (err) {
      log.warn('unlock refused', { error: describeError(err) });
      throw err;
    }
  };
  let tcp: grpc.Server | undefined;
  let sock: grpc.Server | undefined;
  const stopAll = async (): Promise<void> => {
    tcp?.forceShutdown();
    if (sock) {
      sock.forceShutdown();
      await rm(o.controlSocket!, { force: true });
    }
  };
  try {
    if (o.tcp) {
      tcp = new grpc.Server({ ...RAFT_GRPC_OPTIONS, interceptors: [authInterceptor(o.tcp.verify, log)] });
      tcp.addService(...strictService(ControlService, lockedControl(false, o, unlock)));
      await bindServer(tcp, o.tcp.listenAddr, o.tcp.serverCredentials);
    }
    if (o.controlSocket) {
      await rm(o.controlSocket, { force: true });
      sock = new grpc.Server();
      sock.addService(ControlService, lockedControl(true, o, unlock));
      await bindServer(sock, `unix://${o.controlSocket}`, grpc.ServerCredentials.createInsecure());
      await chmod(o.controlSocket, 0o600);
    }
  } catch (err) {
    await stopAll();
    throw new SwarmError(ErrorCode.UNAVAILABLE, `locked manager: cannot listen on ${o.tcp?.listenAddr ?? o.controlSocket}: ${describeError(err)}`, { cause: err });
  }
  log.warn(LOCKED_MESSAGE, { addr: o.tcp?.listenAddr ?? 'none (the TLS key is locked too)', socket: o.controlSocket });
  const onAbort = () => fail(new SwarmError(ErrorCode.CANCELLED, 'stopped while locked (waiting for the unlock key)'));
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await unlocked;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    // Let the Unlock answer leave before the servers close.
    await new Promise((r) => setTimeout(r, 100));
    await stopAll();
  }
}
