/**
 * Where one operation's time went, for a debug log line: `phase(name)` records the milliseconds
 * since the previous mark (or the start) under `name`, rounded to 0.1 ms.
 */
export function phaseTimer(now: () => number = () => performance.now()): { phase: (name: string) => void; phases: Record<string, number> } {
  const phases: Record<string, number> = {};
  let t0 = now();
  return {
    phases,
    phase: (name) => {
      const t1 = now();
      phases[name] = Math.round((t1 - t0) * 10) / 10;
      t0 = t1;
    },
  };
}
