/**
 * `swarmctl swarm unlock-key [--rotate] [-q]` and `swarmctl swarm unlock`, as `docker swarm`:
 * autolock's unlock key, and unlocking a manager that restarted locked (the key read from stdin,
 * or asked for when stdin is a terminal). `swarm unlock` asks every manager of the connection
 * (the context's, or --host's one) and says what each answered. A locked manager's TLS key is
 * locked too, so it serves only its control socket: as `docker swarm unlock`, it is unlocked on
 * its host; a closed port from elsewhere is reported with that hint.
 */
import { createInterface } from 'node:readline/promises';
import type { Argv } from 'yargs';
import { readFirstLine } from '@swarmd/common/input';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { json } from '../format.js';
import { out, err, type CliIo } from '../io.js';
import { unlockKeyText, updateCluster } from './cluster.js';

/**
 * What a manager's closed port may mean: under autolock a restarted manager's TLS key is locked
 * too, so it serves no port until unlocked on its own host (as `docker swarm unlock`).
 */
export const LOCKED_UNREACHABLE =
  'an unreachable manager may be locked (autolock: a restarted manager keeps its port closed until it is unlocked): run `swarmd unlock` (or `swarmctl swarm unlock --host unix://STATE_DIR/control.sock`) on that host';

/** The unlock key: asked for on a terminal, else the first non-blank line of stdin. */
export async function readUnlockKey(io: CliIo): Promise<string> {
  const input = io.stdin ?? process.stdin;
  if (input.isTTY) {
    const rl = createInterface({ input, output: io.stderr, terminal: true });
    try {
      return (await rl.question('Enter unlock key: ')).trim();
    } finally {
      rl.close();
    }
  }
  return readFirstLine(input);
}

export function swarmCommands(y: Argv<GlobalArgs>, env: CommandEnv): Argv<GlobalArgs> {
  const { io } = env;
  return y
    .command(
      'unlock-key',
      'Show the unlock key of an autolocked cluster (--rotate: a new one)',
      (yy) =>
        yy
          .option('rotate', { type: 'boolean', default: false, describe: 'Replace the unlock key (managers rewrap their keys with the new one)' })
          .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only the key' }),
      env.action(async (a: GlobalArgs & { rotate: boolean; quiet: boolean }) => {
        await env.withControl(a, async (c) => {
          if (a.rotate) await updateCluster(c, {}, { unlockKey: true });
          const key = await c.getUnlockKey();
          if (!key) throw new Error('no unlock key is set: autolock is off (turn it on with `swarmctl cluster update --autolock=true`)');
          if (a.format === 'json') out(io, json({ unlockKey: key, rotated: a.rotate }));
          else if (a.quiet) out(io, key);
          else out(io, `${a.rotate ? 'Successfully rotated manager unlock key.\n\n' : ''}${unlockKeyText(key)}`);
        });
      }),
    )
    .command(
      'unlock',
      'Unlock a manager that restarted locked (autolock); the key is read from stdin',
      (yy) => yy,
      env.action(async (a: GlobalArgs) => {
        const key = await readUnlockKey(io);
        if (!key) throw new Error('swarm unlock: no unlock key given (type it, or pipe it on stdin)');
        await env.withControl(a, async (c) => {
          const all = await c.unlockEach(key);
          if (a.format === 'json') out(io, json(all));
          else for (const r of all) if (r.outcome === 'unlocked') out(io, `${r.manager}: unlocked`);
          const refused = all.filter((r) => r.outcome === 'refused');
          if (refused.length) throw new Error(`${refused.map((r) => `${r.manager}: ${r.error ?? 'refused'}`).join('; ')}`);
          const unreachable = all.filter((r) => r.outcome === 'unreachable' && !r.manager.includes('unix://'));
          if (!all.some((r) => r.outcome === 'unlocked')) {
            const said = all.map((r) => `${r.manager}: ${r.outcome === 'not-locked' ? 'not locked' : (r.error ?? r.outcome)}`).join('; ');
            throw new Error(unreachable.length ? `no manager was unlocked (${said}); ${LOCKED_UNREACHABLE}` : `no manager was locked (${said})`);
          }
          for (const r of all) if (r.outcome === 'unreachable') err(io, `${r.manager}: ${r.error ?? 'unreachable'}`);
          if (unreachable.length) err(io, LOCKED_UNREACHABLE);
        });
      }),
    );
}
