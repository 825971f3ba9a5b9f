export { runCli, type GlobalArgs, type CommandEnv } from './cli.js';
export { resolveConnection, unixPath, DEFAULT_HOST, type Connection, type ConnectionFlags } from './client/connection.js';
export { connectControl, theCluster, type Control } from './client/control-client.js';
export { readContext, writeContext, defaultContextPath, type CliContext } from './client/context.js';
export { pickNode, resolveNode } from './resolve.js';
export { nodesTable, parseDuration, durationText } from './format.js';
export { errorLine, reasonOfCode } from './errors.js';
