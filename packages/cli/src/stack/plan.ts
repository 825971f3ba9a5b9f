/**
 * What `stack deploy` does (pure): the stack from the files against what the cluster holds →
 * one step per object (create, update with the fields that changed, remove with --prune,
 * unchanged). A service counts as changed only when its spec differs once both sides are in
 * the same form: the stored image's pinned digest is left out when the file names a tag,
 * network ids become names and the routing mesh's network (added by the manager) is left out,
 * resolved secret/config ids are left out.
 */
import { type RegistryAuth } from '@swarmd/proto/gen/swarm/types';
import { ServiceSpec } from '@swarmd/proto/gen/swarm/specs';
import { type Config, type Network, type Secret, type Service } from '@swarmd/proto/gen/swarm/objects';
import { createHash } from 'node:crypto';
import { STACK_LABEL, type Stack } from './translate.js';

export type StepKind = 'network' | 'service' | 'secret' | 'config';
export type StepAction = 'create' | 'update' | 'remove' | 'unchanged';

export interface Step {
  kind: StepKind;
  action: StepAction;
  name: string;
  /** update: the spec fields that differ (dotted proto JSON paths, e.g. task.container.image). */
  fields: string[];
  /** update/remove: the object's id and the version read. */
  id?: string;
  version?: number;
  /** create/update of a service: the spec to send. */
  spec?: ServiceSpec;
}

export interface Current {
  services: readonly Service[];
  networks: readonly Network[];
  secrets: readonly Secret[];
  configs: readonly Config[];
}

export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
  }
}

type J = null | boolean | number | string | J[] | { [k: string]: J };

/** Proto JSON without empty objects and lists (unset and empty mean the same to a spec). */
function compact(v: J): J | undefined {
  if (Array.isArray(v)) {
    const a = v.map((x) => compact(x) ?? {});
    return a.length ? a : undefined;
  }
  if (v !== null && typeof v === 'object') {
    const o: Record<string, J> = {};
    for (const [k, x] of Object.entries(v)) {
      const c = compact(x);
      if (c !== undefined) o[k] = c;
    }
    return Object.keys(o).length ? o : undefined;
  }
  return v;
}

/** Paths where `a` and `b` differ; a list that differs is one path. */
export function diffPaths(a: J | undefined, b: J | undefined, path = ''): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const isObj = (x: J | undefined): x is Record<string, J> => x !== null && x !== undefined && typeof x === 'object' && !Array.isArray(x);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffPaths(a[k], b[k], path ? `${path}.${k}` : k));
  }
  if (isObj(a) && b === undefined) return Object.keys(a).flatMap((k) => diffPaths(a[k], undefined, path ? `${path}.${k}` : k));
  if (isObj(b) && a === undefined) return Object.keys(b).flatMap((k) => diffPaths(undefined, b[k], path ? `${path}.${k}` : k));
  return [path || '(spec)'];
}

const withoutDigest = (image: string) => image.replace(/@sha256:[0-9a-f]{64}$/, '');

/** A stored spec in the form the file gives: see the module comment. */
export function comparable(stored: ServiceSpec, desired: ServiceSpec, networks: readonly Network[]): J | undefined {
  const s = ServiceSpec.fromPartial(stored);
  const c = s.task?.container;
  const want = desired.task?.container?.image ?? '';
  if (c) {
    if (!/@sha256:/.test(want)) c.image = withoutDigest(c.image);
    c.pullAuth = undefined;
    for (const r of c.secrets) r.secretId = '';
    for (const r of c.configs) r.configId = '';
  }
  if (s.task) {
    const byId = new Map(networks.map((n) => [n.id, n]));
    s.task.networks = s.task.networks
      .filter((a) => !byId.get(a.target)?.spec?.ingress)
      .map((a) => ({ ...a, target: byId.get(a.target)?.spec?.annotations?.name ?? a.target }));
  }
  return compact(ServiceSpec.toJSON(s) as J);
}

const digestOf = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const inStack = (stack: string, labels: Record<string, string> | undefined) => labels?.[STACK_LABEL] === stack;

/**
 * `--with-registry-auth` (as `docker stack deploy`): each service created or kept gets the
 * credentials the docker config holds for its image's registry, sent with the spec even when
 * nothing else changed (an update that replaces no task: a running task's credentials are not part
 * of what makes it out of date). Images with no credentials are named in `missing`.
 */
export function withRegistryAuth(steps: readonly Step[], authOf: (image: string) => RegistryAuth | undefined): { steps: Step[]; missing: string[] } {
  const missing: string[] = [];
  const out = steps.map((s) => {
    if (s.kind !== 'service' || s.action === 'remove' || !s.spec?.task?.container) return s;
    const image = s.spec.task.container.image;
    const auth = authOf(image);
    if (!auth) {
      missing.push(image);
      return s;
    }
    const spec = ServiceSpec.fromPartial(s.spec);
    spec.task!.container!.pullAuth = auth;
    return s.action === 'unchanged' ? { ...s, action: 'update' as const, fields: ['task.container.pullAuth'], spec } : { ...s, spec };
  });
  return { steps: out, missing: [...new Set(missing)] };
}

/** The steps of a deploy: networks, secrets and configs first, then services, then removals. */
export function planDeploy(stack: Stack, cur: Current, o: { prune: boolean }): Step[] {
  const steps: Step[] = [];
  for (const n of stack.networks) {
    const have = cur.networks.find((x) => x.spec?.annotations?.name === n.name);
    if (n.external) {
      if (!have) throw new PlanError(`network "${n.name}" is declared as external, but could not be found (create it with swarmctl network create)`);
      continue;
    }
    steps.push(have ? { kind: 'network', action: 'unchanged', name: n.name, fields: [], id: have.id } : { kind: 'network', action: 'create', name: n.name, fields: [] });
  }
  for (const kind of ['secret', 'config'] as const) {
    const decls = kind === 'secret' ? stack.secrets : stack.configs;
    const have = kind === 'secret' ? cur.secrets : cur.configs;
    for (const d of decls) {
      const h = have.find((x) => x.spec?.annotations?.name === d.name);
      if (d.external) {
        if (!h) throw new PlanError(`${kind} "${d.name}" is declared as external, but could not be found (create it with swarmctl ${kind} create)`);
        continue;
      }
      if (!h) {
        steps.push({ kind, action: 'create', name: d.name, fields: [] });
        continue;
      }
      const same = kind === 'secret' ? (h as Secret).digest === digestOf(d.data!) : Buffer.from(h.spec?.data ?? []).equals(d.data!);
      if (!same) throw new PlanError(`${kind} "${d.name}" exists with other data: ${kind}s cannot change; give the new data a new name (e.g. ${d.name.replace(/^[^_]*_/, '')}_v2) and point the services at it`);
      steps.push({ kind, action: 'unchanged', name: d.name, fields: [], id: h.id });
    }
  }
  const mine = cur.services.filter((s) => inStack(stack.name, s.spec?.annotations?.labels));
  for (const spec of stack.services) {
    const name = spec.annotations!.name;
    const have = cur.services.find((s) => s.spec?.annotations?.name === name);
    if (!have) {
      steps.push({ kind: 'service', action: 'create', name, fields: [], spec });
      continue;
    }
    if (!inStack(stack.name, have.spec?.annotations?.labels)) throw new PlanError(`service "${name}" exists and is not part of stack ${stack.name}: remove or rename it first`);
    if (have.spec?.mode?.$case !== spec.mode?.$case) throw new PlanError(`service "${name}": deploy.mode cannot change between replicated and global (remove the service first)`);
    const fields = diffPaths(comparable(have.spec ?? ServiceSpec.fromPartial({}), spec, cur.networks), compact(ServiceSpec.toJSON(spec) as J));
    steps.push({ kind: 'service', action: fields.length ? 'update' : 'unchanged', name, fields, id: have.id, version: have.meta?.version ?? 0, spec });
  }
  for (const s of mine) {
    const name = s.spec?.annotations?.name ?? s.id;
    if (stack.services.some((x) => x.annotations?.name === name)) continue;
    if (o.prune) steps.push({ kind: 'service', action: 'remove', name, fields: [], id: s.id, version: s.meta?.version ?? 0 });
  }
  return steps;
}

/** The objects `stack rm` removes, services first (a network in use cannot go). */
export function planRemove(stack: string, cur: Current): Step[] {
  const of = <T extends { id: string; spec?: { annotations?: { name: string; labels: Record<string, string> } } }>(kind: StepKind, xs: readonly T[]): Step[] =>
    xs.filter((x) => inStack(stack, x.spec?.annotations?.labels)).map((x) => ({ kind, action: 'remove' as const, name: x.spec?.annotations?.name ?? x.id, fields: [], id: x.id }));
  return [...of('service', cur.services), ...of('secret', cur.secrets), ...of('config', cur.configs), ...of('network', cur.networks)];
}

/** `create service web_api`, `update service web_web (task.container.image)`, … one line each. */
export function planText(steps: readonly Step[]): string {
  return steps.map((s) => `${s.action} ${s.kind} ${s.name}${s.fields.length ? ` (${s.fields.join(', ')})` : ''}`).join('\n');
}
