// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';
import { managerBoundaries } from './eslint.boundaries.js';

/** Files of pure decision cores: no I/O, no timers, no clocks, no ambient randomness. */
const PURE = [
  'packages/raft-ts/src/core/**/*.ts',
  'packages/raft-ts/src/log/**/*.ts',
  'packages/raft-ts/src/progress/**/*.ts',
  'packages/raft-ts/src/quorum/**/*.ts',
  'packages/raft-ts/src/membership/**/*.ts',
  'packages/raft-ts/src/raw-node.ts',
  'packages/manager/src/orchestrator/*/reconcile.ts',
  'packages/manager/src/orchestrator/restart/**/*.ts',
  'packages/manager/src/controller-kit/{task,dirty,heap}.ts',
  'packages/manager/src/scheduler/filters/**/*.ts',
  'packages/manager/src/scheduler/{filter,node-info,pipeline,placement}.ts',
  'packages/manager/src/specs/**/*.ts',
  'packages/manager/src/update/plan.ts',
  'packages/manager/src/rollout/plan.ts',
  'packages/manager/src/allocator/plan.ts',
  'packages/manager/src/ipam/**/*.ts',
  'packages/registry/src/{reference,media-types}.ts',
  'packages/node-agent/src/networking/overlay/{model,plan,dns-records,vip-rules}.ts',
];

const boundaries = managerBoundaries;

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'proto/src/gen/**', 'packages/raft-ts/src/pb/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'smart'],
    },
  },
  {
    files: ['**/test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  ...boundaries,
  {
    files: PURE,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['node:*', 'fs', 'net', 'child_process', 'timers', 'dgram', 'http', 'https', 'crypto'], message: 'pure core: no I/O, timers or ambient randomness' },
            { group: ['@grpc/*'], message: 'pure core: no transport' },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'setImmediate', 'fetch', 'performance'],
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'pure core: time comes in as ticks' },
        { selector: "NewExpression[callee.name='Date']", message: 'pure core: time comes in as ticks' },
        { selector: "CallExpression[callee.object.name='Math'][callee.property.name='random']", message: 'pure core: randomness comes from the seeded rng in the config' },
      ],
    },
  },
);
