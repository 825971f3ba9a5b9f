#!/usr/bin/env node
/**
 * `npm run chaos -- --seed S --minutes M [--net 10.252.40] [--bound 120] [--clients 4] [--history FILE]
 * [--with-known-defects]`: a seeded chaos run on a 3+2 local cluster (root) under concurrent clients. Prints each step and
 * the Jepsen checker's result; on a failure (an invariant, or a checker violation) the seed and the schedule, and exits 1.
 */
import { parseArgs } from 'node:util';
import { RunScope, runChaos } from './chaos.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    minutes: { type: 'string', default: '10' },
    net: { type: 'string', default: '10.252.40' },
    bound: { type: 'string', default: '120' },
    clients: { type: 'string', default: '4' },
    history: { type: 'string' },
    'with-known-defects': { type: 'boolean', default: false },
  },
});
const num = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`chaos: --${name} ${v}: a positive number\n`);
    process.exit(2);
  }
  return n;
};
if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(values.net ?? '')) {
  process.stderr.write(`chaos: --net ${values.net}: the first three octets of a /24, e.g. 10.252.40\n`);
  process.exit(2);
}
const out = (l: string) => process.stdout.write(`${l}\n`);
const scope = new RunScope(out);
const stop = () => void scope.close().then(() => process.exit(130));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
try {
  const r = await runChaos(scope, {
    seed: num('seed', values.seed),
    minutes: num('minutes', values.minutes),
    net: values.net,
    boundS: num('bound', values.bound),
    clients: num('clients', values.clients),
    ...(values.history ? { historyFile: values.history } : {}),
    withKnownDefects: values['with-known-defects'],
    log: out,
  });
  const c = r.check.counts;
  out(`chaos: seed ${r.seed}: ${r.steps.length} faults, every invariant held after each; ${c.ops} ops (${c.ok} ok, ${c.fail} fail, ${c.unknown} unknown)`);
  if (!r.check.valid) throw new Error(`the checker found ${r.check.violations.length} violations (above); replay: npm run chaos -- --seed ${r.seed} --minutes ${values.minutes}`);
  out(`chaos: checker: no violation (${r.check.readsChecked} reads checked, ${r.check.staleReads} stale)`);
  scope.passed = true;
} catch (e) {
  process.stderr.write(`chaos: FAILED: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  await scope.close();
}
