#!/usr/bin/env node
import { runCli } from './cli.js';

const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
// Exit once stdout is flushed, whatever handles (a gRPC channel in its back-off) linger.
process.stdout.write('', () => process.exit(code));
