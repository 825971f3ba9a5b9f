#!/usr/bin/env node
/**
 * npm run mutants:raft -- [--seeds N] [--first-seed S] [--only a,b] [--no-unit] [--no-sim] [--sim-timeout-s T] [--list]
 *
 * Mutation testing of the Raft core with the planted faults of mutants.ts. For each mutant:
 * 1. copy the built package (dist/src, dist/test) to dist/mutant/ — the real sources and build
 *    are never touched, and dist/mutant/ is deleted at the end;
 * 2. apply the mutant to the TypeScript source and transpile that one file (typescript's
 *    transpileModule) over its copy in dist/mutant/ (the copy of every other file stays as
 *    built; before the first mutant, the unmutated sources are transpiled and compared with the
 *    build, so the JavaScript under test is what tsc would emit);
 * 3. run the core's unit tests (test/core-*.test.ts) from the copy: killed when one fails;
 * 4. run the simulation (sim-cli) from the copy for N seeds (default 300, CI's sweep), stopping
 *    at the first violating seed: killed at that seed, with the kind of violation; a run that
 *    exceeds the timeout counts as killed (hang);
 * 5. put the pristine file back.
 * One process at a time (the unit tests run with ava's concurrency 2). Ends with a Markdown
 * table; exit code 0 (the table is a report, not a verdict).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ts from 'typescript';
import { applyMutant, type Mutant, MUTANTS } from './mutants.js';

/** packages/raft-ts (this file runs as dist/src/testing/mutants-cli.js). */
const PKG = fileURLToPath(new URL('../../../', import.meta.url));
const ROOT = join(PKG, '..', '..');
const WORK = join(PKG, 'dist', 'mutant');

export interface MutantResult {
  mutant: Mutant;
  unit: { killed: boolean; by: string; ms: number } | undefined;
  sim: { killed: boolean; seed?: number; members?: number; kind?: string; seedsRun: number; ms: number } | undefined;
}

/** What tsc emits for one file, without the source map comment (transpileModule emits none). */
export function transpile(source: string, fileName: string): string {
  const out = ts.transpileModule(source, {
    fileName,
    reportDiagnostics: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ES2022, esModuleInterop: true },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (errors.length > 0) throw new Error(`${fileName}: ${ts.flattenDiagnosticMessageText(errors[0].messageText, '\n')}`);
  return out.outputText;
}

export function stripSourceMap(js: string): string {
  return js.replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n');
}

function jsPath(base: string, tsFile: string): string {
  return join(base, tsFile.replace(/\.ts$/, '.js'));
}

function runUnit(): { killed: boolean; by: string; ms: number } {
  const began = Date.now();
  const avaCli = join(dirname(createRequire(import.meta.url).resolve('ava')), 'cli.mjs');
  const config = join(WORK, 'ava.config.mjs');
  const glob = relative(ROOT, join(WORK, 'test')).split('\\').join('/') + '/core-*.test.js';
  writeFileSync(config, `export default { files: [${JSON.stringify(glob)}], timeout: '60s', concurrency: 2, workerThreads: false };\n`);
  const r = spawnSync(process.execPath, [avaCli, '--config', config, '--fail-fast'], { cwd: ROOT, encoding: 'utf8', timeout: 600_000, env: { ...process.env, FORCE_COLOR: '0' } });
  const ms = Date.now() - began;
  if (r.status === 0) return { killed: false, by: '', ms };
  const out = `${r.stdout}\n${r.stderr}`;
  const failed = /✘ (?:\[fail\]: )?(.+)/.exec(out)?.[1]?.replace(/\s+Error thrown in test$/, '').trim();
  const timedOut = /Timed out|timed out/.test(out) || r.signal !== null;
  return { killed: true, by: failed ?? (timedOut ? 'timeout' : `exit ${r.status ?? r.signal}`), ms };
}

function runSim(first: number, seeds: number, timeoutS: number): NonNullable<MutantResult['sim']> {
  const began = Date.now();
  const cli = join(WORK, 'src', 'testing', 'sim-cli.js');
  const r = spawnSync(process.execPath, [cli, '--seed', String(first), '--seeds', String(seeds), '--stop-on-violation', '--quiet'], {
    encoding: 'utf8',
    timeout: timeoutS * 1000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const ms = Date.now() - began;
  const out = r.stdout ?? '';
  const v = /^seed (\d+) \((\d) members\): ([a-z-]+) at/m.exec(out);
  const summary = /^raft sim: (\d+) seeds, (\d+) violations$/m.exec(out);
  const seedsRun = summary ? Number(summary[1]) : 0;
  if (v) return { killed: true, seed: Number(v[1]), members: Number(v[2]), kind: v[3], seedsRun, ms };
  if (r.error || r.signal) return { killed: true, kind: `hang (no end within ${timeoutS} s)`, seedsRun, ms };
  if (r.status !== 0) return { killed: true, kind: `crash (exit ${r.status}): ${(r.stderr ?? '').split('\n').find((l) => /Error/.test(l)) ?? ''}`, seedsRun, ms };
  return { killed: false, seedsRun, ms };
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function formatTable(results: MutantResult[], seeds: number): string[] {
  const lines = ['| mutant | file | what it breaks | effect | unit tests | simulation |', '|---|---|---|---|---|---|'];
  for (const r of results) {
    const unit = r.unit === undefined ? '–' : r.unit.killed ? `killed (${cell(r.unit.by)})` : 'survived';
    const sim = r.sim === undefined ? '–' : r.sim.killed ? (r.sim.seed !== undefined ? `killed, seed ${r.sim.seed} (${r.sim.members}): ${r.sim.kind}` : `killed: ${cell(r.sim.kind ?? '')}`) : `survived ${r.sim.seedsRun} seeds`;
    lines.push(`| \`${r.mutant.name}\` | ${r.mutant.file.replace(/^src\//, '')} | ${cell(r.mutant.breaks)} | ${r.mutant.effect} | ${unit} | ${sim} |`);
  }
  const unitKilled = results.filter((r) => r.unit?.killed).length;
  const simKilled = results.filter((r) => r.sim?.killed).length;
  const simOnly = results.filter((r) => r.sim?.killed && r.unit && !r.unit.killed).map((r) => r.mutant.name);
  const missed = results.filter((r) => r.mutant.effect === 'safety' && r.sim && !r.sim.killed).map((r) => r.mutant.name);
  lines.push('');
  lines.push(`${results.length} mutants: the unit tests kill ${unitKilled}, the simulation (≤ ${seeds} seeds) kills ${simKilled}; only the simulation: ${simOnly.join(', ') || 'none'}; safety mutants the simulation misses: ${missed.join(', ') || 'none'}.`);
  return lines;
}

function prepare(): void {
  if (!existsSync(join(PKG, 'dist', 'src', 'testing', 'sim-cli.js'))) throw new Error(`raft-ts is not built (no ${join(PKG, 'dist')}): run npx tsc -b packages/raft-ts`);
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  cpSync(join(PKG, 'dist', 'src'), join(WORK, 'src'), { recursive: true });
  cpSync(join(PKG, 'dist', 'test'), join(WORK, 'test'), { recursive: true });
  // The transpiled sources must be what tsc built, or the mutants would test something else.
  for (const file of new Set(MUTANTS.map((m) => m.file))) {
    const built = stripSourceMap(readFileSync(jsPath(join(PKG, 'dist'), file), 'utf8'));
    if (transpile(readFileSync(join(PKG, file), 'utf8'), file) !== built) {
      throw new Error(`${file}: transpiling the source does not give the built ${file.replace(/\.ts$/, '.js')}: rebuild (npx tsc -b packages/raft-ts)`);
    }
  }
}

function main(): number {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '300' },
      'first-seed': { type: 'string', default: '1' },
      only: { type: 'string' },
      'no-unit': { type: 'boolean', default: false },
      'no-sim': { type: 'boolean', default: false },
      'sim-timeout-s': { type: 'string', default: '900' },
      list: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const seeds = Number(values.seeds);
  const first = Number(values['first-seed']);
  const timeoutS = Number(values['sim-timeout-s']);
  if (!Number.isInteger(seeds) || seeds < 1 || !Number.isInteger(first) || !(timeoutS > 0)) throw new Error('--seeds and --first-seed take integers (--seeds ≥ 1), --sim-timeout-s a positive number');
  const names = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = names?.filter((n) => !MUTANTS.some((m) => m.name === n)) ?? [];
  if (unknown.length > 0) throw new Error(`--only: no mutant named ${unknown.join(', ')} (see --list)`);
  const chosen = names ? MUTANTS.filter((m) => names.includes(m.name)) : [...MUTANTS];
  if (values.list) {
    for (const m of chosen) console.log(`${m.name.padEnd(34)} ${m.file.padEnd(34)} ${m.effect.padEnd(9)} ${m.breaks}`);
    return 0;
  }
  const began = Date.now();
  const results: MutantResult[] = [];
  prepare();
  try {
    for (const [i, m] of chosen.entries()) {
      const target = jsPath(WORK, m.file);
      const pristine = readFileSync(target, 'utf8');
      writeFileSync(target, transpile(applyMutant(readFileSync(join(PKG, m.file), 'utf8'), m), m.file));
      try {
        const unit = values['no-unit'] ? undefined : runUnit();
        const sim = values['no-sim'] ? undefined : runSim(first, seeds, timeoutS);
        results.push({ mutant: m, unit, sim });
        const u = unit ? (unit.killed ? `unit: killed (${unit.by}) ${(unit.ms / 1000).toFixed(0)}s` : `unit: survived ${(unit.ms / 1000).toFixed(0)}s`) : '';
        const s = sim ? (sim.killed ? `sim: killed ${sim.seed !== undefined ? `seed ${sim.seed} ` : ''}${sim.kind} ${(sim.ms / 1000).toFixed(0)}s` : `sim: survived ${sim.seedsRun} seeds ${(sim.ms / 1000).toFixed(0)}s`) : '';
        console.log(`[${i + 1}/${chosen.length}] ${m.name}: ${[u, s].filter(Boolean).join('; ')}`);
      } finally {
        writeFileSync(target, pristine);
      }
    }
  } finally {
    rmSync(WORK, { recursive: true, force: true });
  }
  console.log('');
  for (const l of formatTable(results, seeds)) console.log(l);
  console.log(`(${((Date.now() - began) / 60000).toFixed(1)} minutes)`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main();
