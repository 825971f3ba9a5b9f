/** `swarmctl web`: the live web view of the cluster (src/web/), until interrupted. */
import type { Argv } from 'yargs';
import { createLogger } from '@swarmd/common/logger';
import type { CommandEnv, GlobalArgs } from '../cli.js';
import { resolveConnection } from '../client/connection.js';
import { connectControl } from '../client/control-client.js';
import { UsageError } from '../errors.js';
import { out } from '../io.js';
import { startWebServer } from '../web/server.js';

export const DEFAULT_WEB_LISTEN = '127.0.0.1:8089';

export function webCommand(y: Argv<GlobalArgs>, env: CommandEnv, describe: string): Argv<GlobalArgs> {
  return y.command(
    'web',
    describe,
    (yy) => yy.option('listen', { type: 'string', default: DEFAULT_WEB_LISTEN, describe: 'HOST:PORT to serve on (loopback unless told otherwise)' }),
    env.action(async (a: GlobalArgs & { listen: string }) => {
      if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(a.listen)) throw new UsageError(`--listen ${a.listen}: expected HOST:PORT, e.g. ${DEFAULT_WEB_LISTEN}`, 'web');
      // The user's own credentials, checked once before serving anything.
      const first = connectControl(await resolveConnection(a, env.io.env));
      try {
        await first.listNodes();
      } finally {
        first.close();
      }
      const logger = createLogger({ format: 'human', component: 'swarmctl web' });
      const web = await startWebServer({ listen: a.listen, connect: async () => connectControl(await resolveConnection(a, env.io.env)), logger });
      out(env.io, `swarmctl web: serving ${web.url} (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await web.close();
    }),
  );
}
