import { invalidArgument, notFound } from '@swarmd/common';
import type { Node } from '@swarmd/proto';
import type { Control } from './control.js';
import { nodeName } from './format.js';

/**
 * A node named on the command line, resolved client-side over ListNodes: an exact id, else an
 * exact hostname (or spec name), else a unique id prefix. More than one match is an error that
 * lists them.
 */
export function pickNode(nodes: readonly Node[], ref: string): Node {
  if (!ref) throw invalidArgument('empty node id');
  const byId = nodes.find((n) => n.id === ref);
  if (byId) return byId;
  const byName = nodes.filter((n) => nodeName(n) === ref || n.description?.hostname === ref);
  if (byName.length === 1) return byName[0];
  if (byName.length > 1) throw ambiguous(ref, byName, 'hostname');
  const byPrefix = nodes.filter((n) => n.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw ambiguous(ref, byPrefix, 'id prefix');
  throw notFound(`node ${ref} not found`);
}

function ambiguous(ref: string, nodes: readonly Node[], what: string) {
  const list = [...nodes].sort((a, b) => a.id.localeCompare(b.id)).map((n) => `${n.id} (${nodeName(n)})`).join(', ');
  return invalidArgument(`node ${ref} is ambiguous (${what} of ${nodes.length} nodes: ${list}); use more of the id`);
}

export async function resolveNode(c: Control, ref: string): Promise<Node> {
  return pickNode(await c.listNodes(), ref);
}
