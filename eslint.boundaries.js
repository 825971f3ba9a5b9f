// @ts-check
/**
 * The manager's controller and API folders meet only through the store: each may import store/,
 * specs/, the neutral kits (controller-kit/, rpc-kit/, logs/, ca/...), never another of these.
 * Wiring them together is the composition root's job (src/manager/).
 */
export const CONTROLLER_FOLDERS = ['orchestrator', 'scheduler', 'update', 'rollout', 'allocator', 'controlapi', 'dispatcher', 'caserver', 'membership'];
export const managerBoundaries = CONTROLLER_FOLDERS.map((folder) => ({
  files: [`packages/manager/src/${folder}/**/*.ts`],
  rules: {
    '@typescript-eslint/no-restricted-imports': [
      'error',
      {
        patterns: CONTROLLER_FOLDERS.filter((other) => other !== folder).map((other) => ({
          regex: `(^|/)${other}/`,
          message: `${folder}/ may not import ${other}/: controllers meet only through the store; shared code goes to a kit (controller-kit/, rpc-kit/), wiring to src/manager/`,
        })),
      },
    ],
  },
}));
