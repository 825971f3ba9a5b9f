import type { Node } from '@swarmd/proto';
import { NodeRole } from '@swarmd/proto';

/** One placement constraint, e.g. `node.labels.zone==a` (SwarmKit's constraint syntax). */
export interface Constraint {
  key: string;
  op: '==' | '!=';
  value: string;
}

const FIXED_KEYS = new Set(['node.id', 'node.hostname', 'node.role', 'node.platform.os', 'node.platform.arch']);
const LABEL_PREFIXES = ['node.labels.', 'engine.labels.'] as const;
const KEY_RE = /^[a-zA-Z0-9_.-]+$/;

/** Parses one constraint; returns an error message instead of throwing. */
export function parseConstraint(expr: string): Constraint | string {
  const m = /^(.*?)(==|!=)(.*)$/.exec(expr);
  if (!m) return `"${expr}": expected KEY==VALUE or KEY!=VALUE`;
  const key = m[1].trim();
  const op = m[2] as '==' | '!=';
  const value = m[3].trim();
  if (key === '') return `"${expr}": empty key`;
  if (!KEY_RE.test(key)) return `"${expr}": key "${key}" has invalid characters`;
  if (value === '') return `"${expr}": empty value`;
  if (/[=!]=/.test(value)) return `"${expr}": more than one operator`;
  const lower = key.toLowerCase();
  if (FIXED_KEYS.has(lower)) {
    if (lower === 'node.role' && !['manager', 'worker'].includes(value.toLowerCase())) return `"${expr}": node.role is manager or worker`;
    return { key: lower, op, value };
  }
  for (const p of LABEL_PREFIXES) {
    if (lower.startsWith(p)) {
      if (key.length === p.length) return `"${expr}": empty label name`;
      return { key: p + key.slice(p.length), op, value };
    }
  }
  return `"${expr}": unknown key "${key}" (node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.<name>, engine.labels.<name>)`;
}

/** Parses every constraint; throws a plain Error naming the first bad one. */
export function parseConstraints(exprs: readonly string[]): Constraint[] {
  return exprs.map((e) => {
    const c = parseConstraint(e);
    if (typeof c === 'string') throw new Error(c);
    return c;
  });
}

/** Parses every constraint; undefined when one is bad (a stored spec has been validated). */
export function tryParseConstraints(exprs: readonly string[]): Constraint[] | undefined {
  const out: Constraint[] = [];
  for (const e of exprs) {
    const c = parseConstraint(e);
    if (typeof c === 'string') return undefined;
    out.push(c);
  }
  return out;
}

/** The node's value for a constraint key, or undefined when it has none (a missing label). */
export function nodeAttribute(n: Readonly<Node>, key: string): string | undefined {
  switch (key) {
    case 'node.id':
      return n.id;
    case 'node.hostname':
      return n.description?.hostname ?? '';
    case 'node.role':
      return n.role === NodeRole.NODE_ROLE_MANAGER ? 'manager' : 'worker';
    case 'node.platform.os':
      return n.description?.platform?.os ?? '';
    case 'node.platform.arch':
      return n.description?.platform?.architecture ?? '';
  }
  if (key.startsWith('node.labels.')) return n.spec?.annotations?.labels?.[key.slice('node.labels.'.length)];
  if (key.startsWith('engine.labels.')) return n.description?.engineLabels?.[key.slice('engine.labels.'.length)];
  return undefined;
}

/** Whether a node satisfies all constraints. Values compare case-insensitively (as in SwarmKit). */
export function constraintsMatch(constraints: readonly Constraint[], n: Readonly<Node>): boolean {
  for (const c of constraints) {
    const v = nodeAttribute(n, c.key);
    const eq = v !== undefined && v.toLowerCase() === c.value.toLowerCase();
    if (c.op === '==' ? !eq : eq) return false;
  }
  return true;
}
