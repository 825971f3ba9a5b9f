// The seeded chaos run (src/chaos) for about 2 minutes with a fixed seed, as CI runs it: random
// faults from the harness on a 3+2 cluster under a steady stream of writes, every invariant
// checked after each heal. `npm run chaos -- --seed S --minutes M` runs it longer (README).
import { clusterTest } from './helpers/local-cluster.js';
import { runChaos } from '../src/chaos/chaos.js';

const SEED = Number(process.env.CHAOS_SEED ?? 15);
const MINUTES = Number(process.env.CHAOS_MINUTES ?? 2);

clusterTest(`a 2-minute seeded chaos run (seed ${SEED}) keeps every invariant after each fault`, async (t) => {
  t.timeout((MINUTES + 8) * 60_000);
  const r = await runChaos(t, { seed: SEED, minutes: MINUTES, net: '10.252.30', name: `chaos-ci${process.pid % 1000}`, log: (l) => t.log(l) });
  t.log(`${r.steps.length} faults, ${r.writes} writes (${r.failedWrites} failed, their outcome checked)`);
  t.true(r.steps.length >= 2, `only ${r.steps.length} faults in ${MINUTES} min`);
});
