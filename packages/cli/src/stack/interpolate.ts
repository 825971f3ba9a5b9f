/**
 * Compose variable interpolation (pure), as the Compose Specification has it: `$VAR`, `${VAR}`,
 * `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}` /
 * `${VAR?message}` (required), `${VAR:+alt}` / `${VAR+alt}`, and `$$` for a literal `$`.
 * Defaults may themselves hold variables (`${A:-${B}}`).
 */

export type Env = Readonly<Record<string, string | undefined>>;

export class InterpolationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InterpolationError';
  }
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** Finds the `}` closing the `${` that starts at `open` (nested braces counted). */
function closing(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '$' && s[i + 1] === '{') {
      depth++;
      i++;
    } else if (s[i] === '}') {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

export function interpolate(s: string, env: Env): string {
  let out = '';
  let i = 0;
  while (i < s.length) {
    const c = s[i];
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = s[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next === '{') {
      const end = closing(s, i);
      if (end < 0) throw new InterpolationError(`invalid interpolation format in "${s}": a "\${" is not closed`);
      out += substitute(s.slice(i + 2, end), env, s);
      i = end + 1;
      continue;
    }
    const m = NAME.exec(s.slice(i + 1));
    if (!m) {
      // A lone `$` (e.g. at the end, or before a digit): kept as it is.
      out += '$';
      i++;
      continue;
    }
    out += env[m[0]] ?? '';
    i += 1 + m[0].length;
  }
  return out;
}

function substitute(expr: string, env: Env, whole: string): string {
  const m = NAME.exec(expr);
  if (!m) throw new InterpolationError(`invalid interpolation format in "${whole}": "\${${expr}}" does not start with a variable name`);
  const name = m[0];
  const rest = expr.slice(name.length);
  const value = env[name];
  if (rest === '') return value ?? '';
  const op = /^(:?[-?+])/.exec(rest)?.[1];
  if (!op) throw new InterpolationError(`invalid interpolation format in "${whole}": unknown operator in "\${${expr}}"`);
  const arg = rest.slice(op.length);
  const colon = op.startsWith(':');
  const unset = colon ? value === undefined || value === '' : value === undefined;
  switch (op.slice(-1)) {
    case '-':
      return unset ? interpolate(arg, env) : value!;
    case '+':
      return unset ? '' : interpolate(arg, env);
    default:
      if (unset) throw new InterpolationError(`required variable ${name} is missing a value${arg ? `: ${interpolate(arg, env)}` : ''}`);
      return value!;
  }
}

/** A `.env` / env_file: `KEY=VALUE` lines, `#` comments, optional `export `, quotes removed. */
export function parseEnvFile(text: string): { key: string; value: string | undefined; line: number }[] {
  const out: { key: string; value: string | undefined; line: number }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const l = raw.trim();
    if (!l || l.startsWith('#')) return;
    const body = l.startsWith('export ') ? l.slice(7).trim() : l;
    const eq = body.indexOf('=');
    const key = (eq < 0 ? body : body.slice(0, eq)).trim();
    if (!/^[^\s=]+$/.test(key)) throw new InterpolationError(`line ${i + 1}: "${raw}" is not KEY=VALUE`);
    if (eq < 0) {
      out.push({ key, value: undefined, line: i + 1 });
      return;
    }
    let v = body.slice(eq + 1).trim();
    const q = v[0];
    if ((q === '"' || q === "'") && v.length >= 2 && v.endsWith(q)) {
      v = v.slice(1, -1);
      if (q === '"') v = v.replace(/\\n/g, '\n').replace(/\\"/g, '"');
    } else {
      v = v.replace(/\s+#.*$/, '');
    }
    out.push({ key, value: v, line: i + 1 });
  });
  return out;
}
