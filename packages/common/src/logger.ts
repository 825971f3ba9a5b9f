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

export function createLogger(opts: LoggerOptions): Logger {
  const human = winston.format.printf((info) => {
    const { level, message, timestamp: _t, component, ...rest } = info as Record<string, unknown>;
    const extra = Object.keys(rest).length ? ' ' + Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
    const lvl = level === 'info' ? '' : `${String(level).toUpperCase()} `;
    return `${lvl}${typeof component === "string" ? `[${component}] ` : ''}${String(message)}${extra}`;
  });
  const format =
    opts.format === 'json'
      ? winston.format.combine(errorsToFields(), winston.format.timestamp(), winston.format.json())
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
