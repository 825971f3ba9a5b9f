/** For tests (this package's and e2e/): swarmctl in-process with its output captured. */
import { PassThrough } from 'node:stream';
import { runCli } from './cli.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs swarmctl in-process with captured output and an environment without a context file; `input` is its stdin. */
export async function swarmctl(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  const o = new PassThrough();
  const e = new PassThrough();
  const outChunks: Buffer[] = [];
  const errChunks: Buffer[] = [];
  o.on('data', (d: Buffer) => outChunks.push(d));
  e.on('data', (d: Buffer) => errChunks.push(d));
  const stdin = input === undefined ? undefined : new PassThrough();
  stdin?.end(input);
  const code = await runCli(args, { stdout: o, stderr: e, env: { HOME: '/nonexistent', ...env }, ...(stdin ? { stdin } : {}) });
  return { code, stdout: Buffer.concat(outChunks).toString(), stderr: Buffer.concat(errChunks).toString() };
}
