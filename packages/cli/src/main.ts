#!/usr/bin/env node
// swarmctl from the build as modules (dist/src): what tests and `node dist/src/main.js` run. The
// installed command is dist/src/swarmctl.cjs (swarmctl.cts), which starts in about half the time.
import { main } from './app.js';

await main();
