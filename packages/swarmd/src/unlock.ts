/**
 * `swarmd unlock`: hands the unlock key (stdin) to the locked manager of this state dir, over
 * its root-only control socket (Control.Unlock), as `swarmctl swarm unlock --host
 * unix://DIR/control.sock` would.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlClient } from '@swarmd/proto';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';

export async function unlockLocalManager(stateDir: string, unlockKey: string, timeoutMs = 10_000): Promise<void> {
  if (!unlockKey) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'no unlock key on stdin (it reads SWMKEY-1-...)');
  const sock = join(stateDir, 'control.sock');
  const client = new ControlClient(`unix://${sock}`, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) =>
      client.unlock({ unlockKey }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e) => {
        if (!e) return resolve();
        reject(new SwarmError(e.code === grpc.status.INVALID_ARGUMENT ? ErrorCode.INVALID_ARGUMENT : ErrorCode.UNAVAILABLE, `${sock}: ${e.details || e.message}`, { cause: e }));
      }),
    );
  } finally {
    client.close();
  }
}
