// The seeded chaos run (src/chaos) for about 2 minutes with a fixed seed, as CI runs it: random
// faults from the harness on a 3+2 cluster under 4 concurrent clients (src/jepsen), every
// invariant checked after each heal, and the Jepsen checker over the whole history at the end.
// `npm run chaos -- --seed S --minutes M` runs it longer (README).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clusterTest } from './helpers/local-cluster.js';
import { runChaos } from '../src/chaos/chaos.js';

const SEED = Number(process.env.CHAOS_SEED ?? 15);
const MINUTES = Number(process.env.CHAOS_MINUTES ?? 2);
/** Where the history goes (JSON lines): $TEST_OUTPUT_DIR, else e2e/test-output/. */
const OUT = process.env.TEST_OUTPUT_DIR ?? fileURLToPath(new URL('../../test-output/', import.meta.url));

clusterTest(`a 2-minute seeded chaos run (seed ${SEED}) under concurrent clients keeps every invariant after each fault, and the checker finds no violation in the history`, async (t) => {
  t.timeout((MINUTES + 8) * 60_000);
  await mkdir(OUT, { recursive: true });
  const historyFile = join(OUT, `chaos-history-${SEED}.jsonl`);
  const r = await runChaos(t, { seed: SEED, minutes: MINUTES, net: '10.252.30', name: `chaos-ci${process.pid % 1000}`, historyFile, log: (l) => t.log(l) });
  t.log(`history: ${historyFile}`);
  const c = r.check.counts;
  t.log(`${r.steps.length} faults; ${c.ops} ops: ${c.ok} ok, ${c.fail} fail, ${c.unknown} unknown; ${r.check.readsChecked} reads checked, ${r.check.staleReads} stale`);
  t.true(r.steps.length >= 2, `only ${r.steps.length} faults in ${MINUTES} min`);
  t.deepEqual(r.check.violations, [], 'the Jepsen checker found violations');
  t.true(c.ok > 0 && c.byKind.create?.ok > 0, 'no operation was acknowledged: the clients never reached the cluster');
});
