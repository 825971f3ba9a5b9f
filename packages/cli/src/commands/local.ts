import type { Argv } from 'yargs';
import type { CommandEnv, GlobalArgs } from '../cli.js';

export function localCommands(y: Argv<GlobalArgs>, _env: CommandEnv): Argv<GlobalArgs> {
  return y;
}
