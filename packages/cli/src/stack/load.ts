/**
 * Loading Compose files (pure: file texts and the environment come in as values): YAML through
 * js-yaml (anchors and merge keys `<<:` included), variable interpolation in every value, and
 * several files merged in order as the Compose Specification says (mappings key by key;
 * `ports` appended; `volumes`, `secrets`, `configs` by target; other lists replaced). A problem
 * is a ComposeError naming the file, the line and the key.
 */
import yaml from 'js-yaml';
import { interpolate, InterpolationError, type Env } from './interpolate.js';

export interface ComposeFile {
  path: string;
  text: string;
}

export type Path = readonly (string | number)[];

export const pathText = (p: Path): string => p.map((x, i) => (typeof x === 'number' ? `[${x}]` : i === 0 ? x : `.${x}`)).join('');

/** A file that cannot be used: `FILE:LINE: KEY: what is wrong`. */
export class ComposeError extends Error {
  constructor(
    readonly detail: string,
    readonly file: string | undefined,
    readonly line: number | undefined,
    readonly key: string | undefined,
  ) {
    super(`${file ? `${file}${line ? `:${line}` : ''}: ` : ''}${key ? `${key}: ` : ''}${detail}`);
    this.name = 'ComposeError';
  }
}

export type Yaml = null | boolean | number | string | Yaml[] | { [k: string]: Yaml };

export const isMap = (v: unknown): v is Record<string, Yaml> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/**
 * The 1-based line of the key at `path` in a block-style YAML text, or undefined (flow style,
 * keys from an anchor). List indices narrow the search to the n-th item.
 */
export function lineOf(text: string, path: Path): number | undefined {
  const lines = text.split(/\r?\n/);
  let start = -1; // the parent's line (-1: the document)
  let indent = -1; // the column of the parent's key (or of its list dash)
  let sameLine = false; // a list item: its first key is on its own line
  let found: number | undefined;
  for (const seg of path) {
    let hit = -1;
    let hitIndent = -1;
    let count = 0;
    let itemLead = -1;
    let childCol = -1;
    for (let i = Math.max(0, sameLine ? start : start + 1); i < lines.length; i++) {
      const l = lines[i];
      if (!l.trim() || l.trim().startsWith('#')) continue;
      const m = /^(\s*)((?:-\s+)*)(.*)$/.exec(l)!;
      const lead = m[1].length;
      if (i > start && lead <= indent) break;
      if (typeof seg === 'number') {
        if (!m[2] || i === start) continue;
        if (itemLead < 0) itemLead = lead;
        if (lead !== itemLead) continue;
        if (count++ === seg) {
          hit = i;
          hitIndent = lead;
          break;
        }
      } else {
        const col = lead + m[2].length;
        if (childCol < 0) childCol = col;
        if (col !== childCol) continue;
        const km = /^(["']?)([^"':#]+?)\1\s*:(\s|$)/.exec(m[3]);
        if (km && km[2] === seg) {
          hit = i;
          hitIndent = col;
          break;
        }
      }
    }
    if (hit < 0) return found;
    found = hit + 1;
    sameLine = typeof seg === 'number';
    start = hit;
    indent = hitIndent;
  }
  return found;
}

/** Parses one file; a YAML syntax error names its line. */
export function parseFile(f: ComposeFile): Record<string, Yaml> {
  let doc: unknown;
  try {
    doc = yaml.load(f.text, { filename: f.path });
  } catch (e) {
    if (e instanceof yaml.YAMLException) throw new ComposeError(e.reason, f.path, e.mark ? e.mark.line + 1 : undefined, undefined);
    throw e;
  }
  if (doc === undefined || doc === null) throw new ComposeError('the file is empty', f.path, undefined, undefined);
  if (!isMap(doc)) throw new ComposeError('the top level must be a mapping (services:, networks:, ...)', f.path, 1, undefined);
  return doc;
}

/** Interpolates every string value (not keys) of a parsed file, in place; `x-` sections too. */
export function interpolateAll(v: Yaml, env: Env, f: ComposeFile, path: (string | number)[] = []): Yaml {
  if (typeof v === 'string') {
    try {
      return interpolate(v, env);
    } catch (e) {
      if (e instanceof InterpolationError) throw new ComposeError(e.message, f.path, lineOf(f.text, path), pathText(path));
      throw e;
    }
  }
  if (Array.isArray(v)) return v.map((x, i) => interpolateAll(x, env, f, [...path, i]));
  if (isMap(v)) {
    const o: Record<string, Yaml> = {};
    for (const [k, x] of Object.entries(v)) o[k] = interpolateAll(x, env, f, [...path, k]);
    return o;
  }
  return v;
}

const MERGE_BY_TARGET = new Set(['volumes', 'secrets', 'configs']);
const APPEND = new Set(['ports', 'expose', 'dns', 'dns_search', 'tmpfs', 'extra_hosts']);

function targetOf(x: Yaml): string {
  if (isMap(x)) {
    const k = x.target ?? x.source;
    return typeof k === 'string' ? k : JSON.stringify(x);
  }
  if (typeof x === 'string') {
    const parts = x.split(':');
    return parts.length >= 2 ? parts[1] : parts[0];
  }
  return JSON.stringify(x);
}

/** `environment`/`labels` in list form (`- K=V`) as a mapping, so that files merge key by key. */
function asMapping(v: Yaml): Yaml {
  if (!Array.isArray(v)) return v;
  const o: Record<string, Yaml> = {};
  for (const x of v) {
    if (typeof x !== 'string') return v;
    const i = x.indexOf('=');
    o[i < 0 ? x : x.slice(0, i)] = i < 0 ? null : x.slice(i + 1);
  }
  return o;
}

/** `over` onto `base` (a service's keys are merged with the rules above; mappings recursively). */
export function mergeYaml(base: Yaml, over: Yaml, key = ''): Yaml {
  if (key === 'environment' || key === 'labels') {
    base = asMapping(base);
    over = asMapping(over);
  }
  if (isMap(base) && isMap(over)) {
    const o: Record<string, Yaml> = { ...base };
    for (const [k, v] of Object.entries(over)) o[k] = k in base ? mergeYaml(base[k], v, k) : v;
    return o;
  }
  if (Array.isArray(base) && Array.isArray(over)) {
    if (APPEND.has(key)) return [...base, ...over.filter((x) => !base.some((b) => JSON.stringify(b) === JSON.stringify(x)))];
    if (MERGE_BY_TARGET.has(key)) {
      const byTarget = new Map(base.map((x) => [targetOf(x), x] as const));
      for (const x of over) byTarget.set(targetOf(x), x);
      return [...byTarget.values()];
    }
  }
  return over;
}

/** The files parsed, interpolated and merged in order; `origin` tells which file holds a path. */
export function loadCompose(files: readonly ComposeFile[], env: Env): { model: Record<string, Yaml>; locate: (path: Path) => { file?: string; line?: number } } {
  if (files.length === 0) throw new ComposeError('no Compose file given (-c FILE)', undefined, undefined, undefined);
  let model: Yaml = {};
  for (const f of files) model = mergeYaml(model, interpolateAll(parseFile(f), env, f));
  return {
    model: model as Record<string, Yaml>,
    locate: (path) => {
      for (let i = files.length - 1; i >= 0; i--) {
        const line = lineOf(files[i].text, path);
        if (line !== undefined && lineOf(files[i].text, path.slice(0, -1)) !== line) return { file: files[i].path, line };
      }
      for (let i = files.length - 1; i >= 0; i--) {
        const line = lineOf(files[i].text, path);
        if (line !== undefined) return { file: files[i].path, line };
      }
      return { file: files[files.length - 1].path };
    },
  };
}
