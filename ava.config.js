// Tests run from the compiled output (npm test builds first). Root tests tag their titles
// (see @swarmd/testkit requires()) and clean up after themselves.
export default {
  files: ['packages/*/dist/test/**/*.test.js', 'proto/dist/test/**/*.test.js', 'e2e/dist/test/**/*.test.js'],
  watchMode: { ignoreChanges: ['**/*.ts', '!**/dist/**'] },
  timeout: '5m',
  concurrency: 2,
  workerThreads: false,
  environmentVariables: { SWARM_LOG_LEVEL: 'warn' },
};
