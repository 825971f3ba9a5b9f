import winston from 'winston';

/** The small logging surface every package uses; winston underneath. */
export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface LoggerOptions {
  /** `json`: one JSON object per line (daemons). `human`: short text (the CLI). */
  format: 'json' | 'human';
  level?: LogLevel;
  /** Component name put on every line, e.g. "manager/dispatcher". */
  component?: string;
  /** Where lines go; stderr by default so that stdout stays the program's output. */
  stream?: NodeJS.WritableStream;
  /** Drop every line (tests that assert on output). */
  silent?: boolean;
}

const errorsToFields = winston.format((info) => {
  for (const [k, v] of Object.entries(info)) {
    if (v instanceof Error) {
      info[k] = { message: v.message, name: v.name, ...(v.cause !== undefined ? { cause: String((v.cause as Error)?.message ?? v.cause) } : {}) };
    }
  }
  return info;
});

const MS_PER_DAY = 86_400_000;
const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/**
 * `new Date(ms).toISOString()` (UTC, milliseconds, years 0-9999) in integer arithmetic. A log
 * line's timestamp is the one date an idle daemon formats, and V8 formats a Date through ICU's
 * time zone code and data even for UTC: ~1 MB of the node binary's pages that stay in the RSS of a
 * process that formatted one date. Days to a civil date: H. Hinnant's days_from_civil inverse.
 */
export function isoTime(ms: number): string {
  const days = Math.floor(ms / MS_PER_DAY);
  const t = ms - days * MS_PER_DAY;
  const z = days + 719_468; // days since 0000-03-01
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const h = Math.floor(t / 3_600_000);
  const m = Math.floor(t / 60_000) % 60;
  const sec = Math.floor(t / 1000) % 60;
  return `${pad(year, 4)}-${pad(month)}-${pad(day)}T${pad(h)}:${pad(m)}:${pad(sec)}.${pad(t % 1000, 3)}Z`;
}

export function createLogger(opts: LoggerOptions): Logger {
  const human = winston.format.printf((info) => {
    const { level, message, timestamp: _t, component, ...rest } = info as Record<string, unknown>;
    const extra = Object.keys(rest).length ? ' ' + Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
    const lvl = level === 'info' ? '' : `${String(level).toUpperCase()} `;
    return `${lvl}${typeof component === "string" ? `[${component}] ` : ''}${String(message)}${extra}`;
  });
  const format =
    opts.format === 'json'
      ? winston.format.combine(errorsToFields(), winston.format.timestamp({ format: () => isoTime(Date.now()) }), winston.format.json())
      : winston.format.combine(errorsToFields(), human);
  const w = winston.createLogger({
    level: opts.level ?? (process.env.SWARM_LOG_LEVEL) ?? 'info',
    silent: opts.silent ?? false,
    defaultMeta: opts.component ? { component: opts.component } : {},
    format,
    transports: [new winston.transports.Stream({ stream: opts.stream ?? process.stderr })],
  });
  return wrap(w);
}

function wrap(w: winston.Logger): Logger {
  return {
    error: (m, f) => void w.error(m, f),
    warn: (m, f) => void w.warn(m, f),
    info: (m, f) => void w.info(m, f),
    debug: (m, f) => void w.debug(m, f),
    child: (fields) => wrap(w.child(fields)),
  };
}

/** A logger that drops everything. */
export const nullLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return nullLogger;
  },
};
