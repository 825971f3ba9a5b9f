/** Where a command writes, and what it reads of its environment (tests pass their own). */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** What a command reads from (default process.stdin): `secret create NAME -`, `swarm unlock`. */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

export function out(io: CliIo, text: string): void {
  io.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function err(io: CliIo, text: string): void {
  io.stderr.write(text.endsWith('\n') ? text : text + '\n');
}
