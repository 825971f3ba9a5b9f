import { readFile } from 'node:fs/promises';
import yaml from 'js-yaml';
import { z } from 'zod';
import { SwarmError, ErrorCode, wrapError } from './errors.js';

export { z };

/**
 * Loads configuration from an optional YAML/JSON file, overlaid by explicit values (flags),
 * and validates the result with a schema. Any problem is one INVALID_ARGUMENT error that names
 * the file and every bad field, e.g. `config /etc/swarmd.yaml: heartbeatPeriod: Expected number`.
 */
export async function loadConfig<S extends z.ZodTypeAny>(
  schema: S,
  opts: { file?: string; overrides?: Record<string, unknown> } = {},
): Promise<z.infer<S>> {
  let fromFile: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = await readFile(opts.file, 'utf8');
    } catch (err) {
      throw wrapError(ErrorCode.INVALID_ARGUMENT, `config ${opts.file}: cannot read`, err);
    }
    fromFile = parseConfigText(text, opts.file);
  }
  const merged = { ...fromFile, ...dropUndefined(opts.overrides ?? {}) };
  return validateConfig(schema, merged, opts.file ?? 'flags');
}

export function parseConfigText(text: string, source: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: source });
  } catch (err) {
    throw wrapError(ErrorCode.INVALID_ARGUMENT, `config ${source}: not valid YAML or JSON`, err);
  }
  if (doc === undefined || doc === null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `config ${source}: the top level must be a mapping of settings`);
  }
  return doc as Record<string, unknown>;
}

export function validateConfig<S extends z.ZodTypeAny>(schema: S, value: unknown, source: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    throw new SwarmError(ErrorCode.INVALID_ARGUMENT, `config ${source}: ${problems.join('; ')}`, {
      details: { issues: problems },
    });
  }
  return r.data as z.infer<S>;
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
