/** What test helpers need of ava's ExecutionContext to clean up even when a test fails. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}
