/**
 * The targeted scenarios of the simulation (sim.ts SCENARIOS) find the planted faults they aim
 * at, from a seed, and pass on the real core at that same seed. Each test builds one mutant of
 * the core (as `npm run mutants:raft` does: the mutated file transpiled over a copy of the built
 * sources, under dist/, deleted at the end) and runs one seed of the simulation on it, with the
 * seed's own choice of scenario ('auto'), as
 * `npm run mutants:raft -- --only NAME --no-unit --first-seed SEED --seeds 1` does.
 */
import test from 'ava';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { transpile } from '../src/testing/mutants-cli.js';
import { applyMutant, MUTANTS } from '../src/testing/mutants.js';
import { realCore } from '../src/testing/sim-core.js';
import { formatViolation, runSim, SCENARIOS, type SimCore, type SimOptions, type SimResult } from '../src/testing/sim.js';

/** packages/raft-ts/dist/ (this file runs as dist/test/sim-scenarios.test.js). */
const DIST = fileURLToPath(new URL('../', import.meta.url));
const PKG = join(DIST, '..');

/** Runs of the simulation on the core with the named mutant applied. */
async function runMutant(name: string, runs: SimOptions[]): Promise<SimResult[]> {
  const m = MUTANTS.find((x) => x.name === name);
  if (!m) throw new Error(`no mutant ${name}`);
  // Under dist/, so that the copy resolves the package's dependencies as the build does.
  const dir = mkdtempSync(join(DIST, 'mutant-scenario-'));
  try {
    cpSync(join(DIST, 'src'), join(dir, 'src'), { recursive: true });
    writeFileSync(join(dir, m.file.replace(/\.ts$/, '.js')), transpile(applyMutant(readFileSync(join(PKG, m.file), 'utf8'), m), m.file));
    const sim = (await import(pathToFileURL(join(dir, 'src', 'testing', 'sim.js')).href)) as { runSim: typeof runSim };
    const core = (await import(pathToFileURL(join(dir, 'src', 'testing', 'sim-core.js')).href)) as { realCore: SimCore };
    return runs.map((opts) => sim.runSim(core.realCore, opts));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cases: { mutant: string; scenario: string; seed: number; title: string }[] = [
  { mutant: 'commit-entry-of-older-term', scenario: 'figure-8', seed: 9, title: 'a leader that commits an entry of an older term by counting replicas (Figure 8)' },
  { mutant: 'truncate-keeps-in-progress', scenario: 'truncate-in-progress', seed: 3, title: 'a follower that never persists the entries replacing a tail it is persisting' },
  { mutant: 'conf-changes-overlap', scenario: 'conf-overlap', seed: 11, title: 'a leader that takes a second membership change before the first is applied' },
];

for (const c of cases) {
  test(`the ${c.scenario} scenario catches ${c.title} (mutant ${c.mutant}, seed ${c.seed}), which the real core passes`, async (t) => {
    const ok = runSim(realCore, { seed: c.seed });
    t.deepEqual(ok.violations, [], formatViolation(ok).join('\n'));
    // The seed chooses this scenario, and runs it to its last step on the real core.
    t.deepEqual(ok.scenarios, [c.scenario]);
    t.true(ok.stats.scenariosCompleted > 0, `seed ${c.seed} completed no scenario`);
    const [bad, without] = await runMutant(c.mutant, [{ seed: c.seed }, { seed: c.seed, scenario: 'none' }]);
    t.true(bad.violations.length > 0, `mutant ${c.mutant} passed seed ${c.seed}`);
    t.is(bad.violations[0].kind, 'state-machine-safety', formatViolation(bad).join('\n'));
    t.true(bad.stats.scenarios > 0, `no scenario had started when mutant ${c.mutant} failed seed ${c.seed}`);
    // The scenario is what finds it: the same seed without it passes the mutant.
    t.deepEqual(without.violations, [], formatViolation(without).join('\n'));
  });
}

test('each scenario runs to its last step on the real core, with no violation, in most of a few seeds', (t) => {
  for (const scenario of SCENARIOS) {
    let completed = 0;
    for (let seed = 1; seed <= 4; seed++) {
      const r = runSim(realCore, { seed, members: 5, scenario });
      t.deepEqual(r.violations, [], formatViolation(r, `--scenario ${scenario}`).join('\n'));
      if (r.stats.scenariosCompleted > 0) completed++;
    }
    t.true(completed >= 3, `${scenario}: only ${completed} of 4 seeds completed it`);
  }
});
