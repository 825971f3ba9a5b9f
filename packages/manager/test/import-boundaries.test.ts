/**
 * The lint rule that keeps the manager's controller folders from importing each other
 * (eslint.boundaries.js, part of `npm run lint`), run through ESLint on probe sources.
 */
import test from 'ava';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';

const root = fileURLToPath(new URL('../../../../', import.meta.url));

async function lint(file: string, source: string): Promise<string[]> {
  const { managerBoundaries } = (await import(join(root, 'eslint.boundaries.js'))) as { managerBoundaries: object[] };
  const eslint = new ESLint({
    cwd: root,
    overrideConfigFile: true,
    overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser }, plugins: { '@typescript-eslint': tseslint.plugin } }, ...managerBoundaries] as never,
  });
  const [r] = await eslint.lintText(source, { filePath: join(root, file) });
  return r.messages.map((m) => m.message);
}

test('lint refuses a controller folder importing another controller folder', async (t) => {
  const msgs = await lint('packages/manager/src/scheduler/probe.ts', "import { updaterController } from '../update/updater.js';\nexport const u = updaterController;\n");
  t.is(msgs.length, 1);
  t.regex(msgs[0], /scheduler\/ may not import update\//);
});

test('lint refuses a nested controller file reaching into another controller folder', async (t) => {
  const msgs = await lint('packages/manager/src/orchestrator/replicated/probe.ts', "import { Scheduler } from '../../scheduler/scheduler.js';\nexport const s = Scheduler;\n");
  t.is(msgs.length, 1);
  t.regex(msgs[0], /orchestrator\/ may not import scheduler\//);
});

test('lint lets controller folders import the store, specs and the kits', async (t) => {
  const src = [
    "import { onKind } from '../store/events.js';",
    "import { ServiceLoop } from '../controller-kit/index.js';",
    "import { reply } from '../rpc-kit/index.js';",
    "import { validateServiceSpec } from '../specs/index.js';",
    'export const all = [onKind, ServiceLoop, reply, validateServiceSpec];',
  ].join('\n');
  t.deepEqual(await lint('packages/manager/src/update/probe.ts', src), []);
});

test('lint lets the composition root wire controller folders together', async (t) => {
  const msgs = await lint('packages/manager/src/manager/probe.ts', "import { schedulerController } from '../scheduler/scheduler.js';\nexport const s = schedulerController;\n");
  t.deepEqual(msgs, []);
});
