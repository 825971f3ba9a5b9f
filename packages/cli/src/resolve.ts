/**
 * Nodes and services named on the command line, resolved client-side over ListNodes and
 * ListServices: an exact id, else an exact name, else a unique id prefix.
 */
import { invalidArgument, notFound } from '@swarmd/common/errors';
import type { Node, Service } from '@swarmd/proto/gen/swarm/objects';
import type { Control } from './client/control-client.js';
import { nodeName } from './format.js';
import { serviceName } from './service-format.js';

/**
 * A node: an exact id, else an exact hostname (or spec name), else a unique id prefix. More than
 * one match is an error that lists them.
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

/** A service: exact id, exact name, else a unique id prefix. */
export function pickService(services: readonly Service[], ref: string): Service {
  if (!ref) throw invalidArgument('empty service name');
  const byId = services.find((s) => s.id === ref);
  if (byId) return byId;
  const byName = services.find((s) => serviceName(s) === ref);
  if (byName) return byName;
  const byPrefix = services.filter((s) => s.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) {
    throw invalidArgument(`service ${ref} is ambiguous (id prefix of ${byPrefix.length} services: ${byPrefix.map((s) => `${s.id} (${serviceName(s)})`).join(', ')}); use more of the id`);
  }
  throw notFound(`service ${ref} not found`);
}

export async function resolveService(c: Control, ref: string): Promise<Service> {
  return pickService(await c.listServices(), ref);
}
