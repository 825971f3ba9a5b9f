/**
 * Progress on a terminal as `docker service create` shows it: one line per key (a task slot,
 * the update count, verify) that is rewritten in place, instead of a new line for every state of
 * every task. Not a terminal (a pipe, a file, a test): each line is written as it comes.
 */
export interface ProgressPrinter {
  /** Shows `line`; a later line with the same key replaces it on a terminal. */
  print(line: string, key?: string): void;
}

/** What a stream must be for lines to be rewritten in place. */
export function isTerminal(s: NodeJS.WritableStream): boolean {
  return (s as { isTTY?: boolean }).isTTY === true && process.env.TERM !== 'dumb';
}

const CLEAR_LINE = '\x1b[2K';
const up = (n: number) => (n > 0 ? `\x1b[${n}A` : '');

/** Plain lines, or (on a terminal) a block of keyed lines redrawn in place. */
export function progressPrinter(out: NodeJS.WritableStream, live = isTerminal(out)): ProgressPrinter {
  if (!live) return { print: (line) => void out.write(line + '\n') };
  const lines = new Map<string, string>();
  let drawn = 0;
  let n = 0;
  return {
    print(line, key) {
      lines.set(key ?? `#${n++}`, line);
      const width = (out as { columns?: number }).columns ?? 0;
      const fit = (l: string) => (width > 1 && l.length >= width ? l.slice(0, width - 2) + '…' : l);
      out.write(up(drawn) + [...lines.values()].map((l) => `${CLEAR_LINE}${fit(l)}\n`).join(''));
      drawn = lines.size;
    },
  };
}
