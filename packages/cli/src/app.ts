import { runCli } from './cli.js';

/**
 * Runs swarmctl on this process's command line and exits with its code once stdout is flushed,
 * whatever handles (a gRPC channel in its back-off) linger. The entry of both `main.js` (the
 * build as modules) and the bundle that `swarmctl.cjs` loads.
 */
export async function main(): Promise<void> {
  const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
  process.stdout.write('', () => process.exit(code));
}
