#!/usr/bin/env node
/**
 * npm run sim:raft -- --seeds N [--seed S] [--members 3|5] [--fault F] [--scenario K] [--chaos-ms MS] [--stop-on-violation] [--verbose]
 *
 * F, a deliberate bug to show the checks catch it: stale-reads (reads served locally without
 * ReadIndex), lossy-disk (crashes lose synced writes), no-sync (mustSync ignored),
 * unconfirmed-read-index (a leader answers ReadIndex without a heartbeat round), early-acks
 * (append and vote replies sent before the fsync).
 *
 * K, the targeted scenario mixed into the chaos (sim.ts SCENARIOS): figure-8,
 * truncate-in-progress, conf-overlap, none, or auto (the default: the seed chooses).
 *
 * Runs seeds S, S+1, ... S+N-1 of the Raft simulation (3 or 5 members by seed unless forced) and
 * ends with `raft sim: N seeds, K violations` (exit 1 when K > 0). A violating seed prints its
 * trace; `--seed S` replays it exactly (add --verbose for every event). `--stop-on-violation` ends
 * the sweep at the first violating seed (the summary then counts the seeds run).
 */
import { parseArgs } from 'node:util';
import { realCore } from './sim-core.js';
import { noSyncCore, unconfirmedReadIndexCore } from './faulty-cores.js';
import { formatViolation, runSim, SCENARIOS, type SimCore, type SimFault, type SimOptions } from './sim.js';

function main(): number {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      seed: { type: 'string' },
      members: { type: 'string' },
      fault: { type: 'string' },
      scenario: { type: 'string' },
      'chaos-ms': { type: 'string' },
      verbose: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      'stop-on-violation': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const start = values.seed !== undefined ? Number(values.seed) : 1;
  const count = values.seeds !== undefined ? Number(values.seeds) : values.seed !== undefined ? 1 : 100;
  const members = values.members !== undefined ? Number(values.members) : undefined;
  const faultName = values.fault ?? 'none';
  const chaosMs = values['chaos-ms'] !== undefined ? Number(values['chaos-ms']) : undefined;
  if (chaosMs !== undefined && !(chaosMs > 0)) throw new Error('--chaos-ms takes a positive number');
  if (!Number.isInteger(start) || !Number.isInteger(count) || count < 1) throw new Error('--seed and --seeds take integers (--seeds ≥ 1)');
  if (members !== undefined && members !== 3 && members !== 5) throw new Error('--members is 3 or 5');
  const faults: Record<string, { core: SimCore; fault: SimFault; syncProbability?: number }> = {
    none: { core: realCore, fault: 'none' },
    'stale-reads': { core: realCore, fault: 'stale-reads' },
    'lossy-disk': { core: realCore, fault: 'lossy-disk' },
    'early-acks': { core: realCore, fault: 'early-acks', syncProbability: 0 },
    'no-sync': { core: noSyncCore(realCore), fault: 'none', syncProbability: 0 },
    'unconfirmed-read-index': { core: unconfirmedReadIndexCore(realCore), fault: 'none' },
  };
  const scenario = (values.scenario ?? 'auto') as SimOptions['scenario'];
  if (!['auto', 'none', ...SCENARIOS].includes(scenario as string)) throw new Error(`--scenario is one of auto, none, ${SCENARIOS.join(', ')}`);
  const chosen = faults[faultName];
  if (!chosen) throw new Error(`--fault is one of ${Object.keys(faults).join(', ')}`);
  const { core, fault, syncProbability } = chosen;
  const began = process.hrtime.bigint();
  const elapsed = (): string => `${(Number(process.hrtime.bigint() - began) / 1e9).toFixed(1)}s`;
  const every = Math.max(1, Math.round(count / 10));
  let bad = 0;
  let unknown = 0;
  let ran = 0;
  for (let i = 0; i < count; i++) {
    ran++;
    const seed = start + i;
    const r = runSim(core, { seed, members, fault, syncProbability, chaosMs, scenario, verbose: values.verbose, log: (l) => console.log(l) });
    if (r.stats.linearizability === 'unknown') unknown++;
    if (r.violations.length > 0) {
      bad++;
      const extra = [faultName === 'none' ? '' : `--fault ${faultName}`, scenario === 'auto' ? '' : `--scenario ${scenario}`, chaosMs === undefined ? '' : `--chaos-ms ${chaosMs}`].filter(Boolean).join(' ');
      for (const line of formatViolation(r, extra)) console.log(line);
      if (values['stop-on-violation']) break;
    } else if (values.verbose || count === 1) {
      console.log(`seed ${seed} (${r.members} members): ok, ${JSON.stringify(r.stats)} trace ${r.traceHash}`);
    }
    if (!values.quiet && count > 1 && ((i + 1) % every === 0 || i + 1 === count)) console.log(`raft sim: ${i + 1}/${count} seeds, ${bad} violations (${elapsed()})`);
  }
  if (unknown > 0) console.log(`raft sim: ${unknown} histories too large to check fully`);
  console.log(`raft sim: ${ran} seeds, ${bad} violations`);
  return bad > 0 ? 1 : 0;
}

process.exitCode = main();
