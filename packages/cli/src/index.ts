export { runCli, type GlobalArgs, type CommandEnv } from './cli.js';
export { resolveConnection, unixPath, DEFAULT_HOST, type Connection, type ConnectionFlags } from './connection.js';
export { connectControl, theCluster, type Control } from './control.js';
export { readContext, writeContext, defaultContextPath, type CliContext } from './context.js';
export { pickNode, resolveNode } from './resolve.js';
export { nodesTable, parseDuration, durationText } from './format.js';
export { errorLine, reasonOfCode } from './errors.js';
