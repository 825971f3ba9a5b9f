export interface OrchestratorOptions {
  /** Task ids (default: random SwarmKit-style ids). */
  newId?: () => string;
  /** Task writes per tick at most (default 2,000); the rest follows in the next ticks. */
  maxWritesPerTick?: number;
}
