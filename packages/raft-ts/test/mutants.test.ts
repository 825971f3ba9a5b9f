import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { stripSourceMap, transpile } from '../src/testing/mutants-cli.js';
import { applyMutant, MUTANTS, MutantError } from '../src/testing/mutants.js';

const pkg = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));

test('every planted fault of mutants.ts still applies to the current sources, once, and transpiles', (t) => {
  t.is(new Set(MUTANTS.map((m) => m.name)).size, MUTANTS.length, 'mutant names are unique');
  for (const m of MUTANTS) {
    t.regex(m.file, /^src\/(core|log|progress|quorum)\//, m.name);
    const source = readFileSync(pkg(m.file), 'utf8');
    const mutated = applyMutant(source, m);
    t.not(mutated, source, m.name);
    t.notThrows(() => transpile(mutated, m.file), m.name);
  }
});

test('a mutant whose text is gone from the source is refused with its name', (t) => {
  const m = { ...MUTANTS[0], find: 'no such code' };
  const err = t.throws(() => applyMutant('const x = 1;\n', m), { instanceOf: MutantError });
  t.regex(err.message, new RegExp(`mutant ${m.name}: .* no longer contains "no such code"`));
});

test('transpiling a core file alone gives the JavaScript tsc built (what the mutant runner relies on)', (t) => {
  for (const file of new Set(MUTANTS.map((m) => m.file))) {
    const built = readFileSync(fileURLToPath(new URL(`../${file.replace(/\.ts$/, '.js')}`, import.meta.url)), 'utf8');
    t.is(transpile(readFileSync(pkg(file), 'utf8'), file), stripSourceMap(built), file);
  }
});
