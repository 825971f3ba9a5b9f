/**
 * Services of the control API (after SwarmKit's controlapi/service.go): CreateService,
 * GetService, ListServices, UpdateService, RemoveService.
 *
 * - A spec is checked with the specs module's validateServiceSpec (plus the image reference
 *   grammar) before anything else; a refused spec stores nothing and names the field.
 * - Image pinning (as Swarm): the tag is resolved to a digest once, here, and the spec stores
 *   `image:tag@sha256:…`, so every node runs the same bytes. A registry that can't be reached
 *   leaves the tag as it was and adds a warning to the response (as Docker does).
 * - Registry credentials (`pull_auth`) never leave in a response: password and identity token are
 *   emptied (an update that sends the emptied form back keeps the stored credentials).
 */
import { SwarmError, ErrorCode, describeError, failedPrecondition, invalidArgument, notFound, alreadyExists, isSwarmError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { Rollout_State, TaskState, UpdateStatus_State, type CanaryConfig, type ListServicesRequest_Filters, type RegistryAuth, type Service, type ServiceSpec } from '@swarmd/proto';
import { RegistryClient, familiarReference, parseReference, withTarget } from '@swarmd/registry';
import type { ReadTx, Store } from '../store/memory-store.js';
import { cloneObject, nameOf } from '../store/kinds.js';
import { newId } from '../ids.js';
import { applyServiceDefaults, checkCanaryConfig, validateServiceSpec } from '../specs/index.js';
import { abortRollout, atStep, canaryCountFor, isCanaryPhase, isCanaryTask, isRolloutActive, isTaskDirty, newTask, rolloutStateName } from '../controller-kit/index.js';
import { sameLabels } from './labels.js';
import { applyIngress, resolveServiceNetworks } from './networks.js';
import { resolveServiceData } from './secrets.js';

/** Resolves an image reference to a pinned one (`repo:tag@sha256:…`), or says why it could not. */
export interface ImagePinner {
  pin(image: string, auth: RegistryAuth | undefined): Promise<{ image: string; warning?: string }>;
  close?(): void;
}

export interface RegistryPinnerOptions {
  /**
   * Registries spoken to over plain HTTP besides loopback ones: `host`, `host:port` or an IPv4
   * CIDR (e.g. the local cluster's underlay subnet, `10.250.0.0/24`).
   */
  insecureRegistries?: readonly string[];
  /** Time allowed for one resolution (default 10 s); past it, the tag is kept with a warning. */
  timeoutMs?: number;
  ca?: string | Buffer;
  logger?: Logger;
}

/** The default ImagePinner: a HEAD of the manifest through the registry client (@swarmd/registry). */
export function registryPinner(o: RegistryPinnerOptions = {}): ImagePinner {
  let client: RegistryClient | undefined;
  const timeoutMs = o.timeoutMs ?? 10_000;
  return {
    async pin(image, auth) {
      const ref = parseReference(image);
      if (ref.digest) return { image };
      client ??= new RegistryClient({ insecureRegistries: o.insecureRegistries ?? [], retries: 1, timeoutMs, ca: o.ca, logger: o.logger });
      const creds = auth && (auth.username || auth.password) ? { username: auth.username, password: auth.password || auth.identityToken } : undefined;
      try {
        const repo = client.repository(ref, { auth: creds, signal: AbortSignal.timeout(timeoutMs) });
        const d = await repo.resolve(ref.tag ?? 'latest');
        return { image: familiarReference(withTarget(ref, { tag: ref.tag, digest: d.digest })) };
      } catch (err) {
        return {
          image,
          warning:
            `image ${image} could not be accessed on a registry to record its digest (${describeError(err)}). ` +
            `Each node will access ${image} independently, possibly leading to different nodes running different versions of the image.`,
        };
      }
    },
    close() {
      client?.close();
      client = undefined;
    },
  };
}

/** A service by id, exact name (case-insensitive), or unique id prefix. */
export function resolveService(tx: ReadTx, ref: string): Readonly<Service> {
  if (!ref) throw invalidArgument('service_id is required');
  const exact = tx.get('service', ref);
  if (exact) return exact;
  const all = tx.find('service');
  const byName = all.filter((s) => nameOf('service', s).toLowerCase() === ref.toLowerCase());
  if (byName.length === 1) return byName[0];
  const byPrefix = all.filter((s) => s.id.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0];
  if (byPrefix.length > 1) throw invalidArgument(`service "${ref}" is ambiguous: ${byPrefix.map((s) => s.id).join(', ')}`);
  throw notFound(`service ${ref} not found`);
}

export function redactAuth(a: RegistryAuth | undefined): RegistryAuth | undefined {
  return a ? { username: a.username, password: '', identityToken: '' } : undefined;
}

/** A service as it leaves the manager: registry credentials emptied. */
/**
 * The answer to a write of service `id` that was applied: the service as stored now, or, when a
 * later entry (a remove applied right after) already took it away, as this write left it. Never
 * an error: the write was applied, and an error would tell the caller it failed (the e2e
 * Jepsen-style run found an update answered INTERNAL after a concurrent remove).
 */
function answerOf(store: Store, id: string, written: Readonly<Service> | undefined): Service {
  const s = store.view((tx) => tx.get('service', id)) ?? written;
  if (!s) throw new Error(`service ${id}: written, but neither stored nor kept`);
  return publicService(s);
}

export function publicService(s: Readonly<Service>): Service {
  const out = cloneObject('service', s);
  for (const spec of [out.spec, out.previousSpec]) {
    const c = spec?.task?.container;
    if (c?.pullAuth) c.pullAuth = redactAuth(c.pullAuth);
  }
  return out;
}

/** validateServiceSpec plus the image reference grammar; throws INVALID_ARGUMENT naming the field. */
export function checkServiceSpec(spec: Readonly<ServiceSpec> | undefined): ServiceSpec {
  validateServiceSpec(spec);
  const image = spec!.task!.container!.image;
  try {
    parseReference(image);
  } catch (err) {
    throw invalidArgument(`spec.task.container.image: ${err instanceof Error ? err.message : String(err)}`, { details: { fields: ['spec.task.container.image'] } });
  }
  return applyServiceDefaults(spec!);
}

export interface ServicesDeps {
  store: Store;
  logger: Logger;
  pinner(): ImagePinner;
  /** Unix ms, for update_status.started_at (default Date.now). */
  now?(): number;
}

/** UpdateService's request as the handler reads it. */
export interface UpdateServiceReq {
  serviceId: string;
  serviceVersion: number;
  spec?: ServiceSpec;
  rollback: boolean;
  noResolveImage: boolean;
  /** Start a canary rollout of this update. */
  canary?: CanaryConfig;
  /** Replace a rollout in progress. */
  force?: boolean;
}

export interface ServicesImpl {
  getService: (req: { serviceId: string }) => Promise<{ service: Service }>;
  listServices: (req: { filters?: ListServicesRequest_Filters }) => Promise<{ services: Service[] }>;
  createService: (req: { spec?: ServiceSpec; noResolveImage: boolean; requestId?: string }) => Promise<{ service: Service; warnings: string[] }>;
  updateService: (req: UpdateServiceReq) => Promise<{ service: Service; warnings: string[] }>;
  removeService: (req: { serviceId: string }) => Promise<Record<string, never>>;
}

const outOfSequence = (id: string, version: number, against: number) =>
  new SwarmError(
    ErrorCode.CONFLICT,
    `update out of sequence: service ${id} is at version ${version}, the update was made against version ${against}: read the service again and retry`,
  );
const imageOf = (s: Readonly<ServiceSpec> | undefined): string => s?.task?.container?.image ?? '';
const withoutDigest = (image: string): string => image.replace(/@sha256:[0-9a-f]{64}$/, '');

/** Whether a runnable task of the service runs an older spec than `s` (the rolling updater would replace it). */
function needsUpdate(tx: ReadTx, s: Readonly<Service>): boolean {
  return tx.find('task', { serviceId: s.id }).some((t) => !isCanaryTask(t) && t.desiredState <= TaskState.TASK_STATE_RUNNING && isTaskDirty(s, t, tx.get('node', t.nodeId)));
}

/** Where a rollout stands, for errors: `step 2 of 3 (50%), waiting`. */
export function rolloutWhere(s: Readonly<Service>): string {
  const r = s.rollout!;
  return `step ${r.step + 1} of ${r.config?.steps.length ?? 0} (${r.weight}%), ${rolloutStateName(r.state)}`;
}

export function createServicesImpl(deps: ServicesDeps): ServicesImpl {
  const { store, logger: log } = deps;
  const now = (): number => (deps.now ? deps.now() : Date.now());

  async function pin(spec: ServiceSpec, noResolve: boolean, warnings: string[]): Promise<void> {
    const c = spec.task!.container!;
    if (noResolve) return;
    const r = await deps.pinner().pin(c.image, c.pullAuth);
    c.image = r.image;
    if (r.warning) warnings.push(r.warning);
  }

  async function createService(req: { spec?: ServiceSpec; noResolveImage: boolean; requestId?: string }) {
    const spec = checkServiceSpec(req.spec);
    const name = spec.annotations!.name;
    const requestId = req.requestId ?? '';
    // A retry of a create that was applied (its first answer was lost: a leader change, a dropped
    // connection) gets the service that create made, not ALREADY_EXISTS and never a second one.
    const madeByThisRequest = (): Service | undefined => {
      if (!requestId) return undefined;
      const s = store.view((tx) => tx.find('service', { name })[0]);
      return s?.createRequestId === requestId ? publicService(s) : undefined;
    };
    const made = madeByThisRequest();
    if (made) {
      log.info('service create retried: returning the service this request made', { serviceId: made.id, name, requestId });
      return { service: made, warnings: [] };
    }
    const taken = store.view((tx) => tx.find('service', { name })[0]);
    if (taken) throw alreadyExists(`service name "${name}" is already in use by service ${taken.id}`);
    store.view((tx) => {
      resolveServiceNetworks(tx, spec);
      resolveServiceData(tx, spec);
      applyIngress(tx, '', structuredClone(spec));
    });
    const warnings: string[] = [];
    await pin(spec, req.noResolveImage, warnings);
    const id = newId();
    let written: Service | undefined;
    try {
      await store.update((tx) => {
        const holder = tx.find('service', { name })[0];
        if (holder) throw alreadyExists(`service name "${name}" is already in use by service ${holder.id}`);
        resolveServiceNetworks(tx, spec);
        resolveServiceData(tx, spec);
        applyIngress(tx, id, spec);
        written = {
          id,
          meta: undefined,
          spec,
          previousSpec: undefined,
          endpoint: spec.endpoint ? { spec: structuredClone(spec.endpoint), ports: structuredClone(spec.endpoint.ports), virtualIps: [] } : undefined,
          specVersion: 1,
          updateStatus: undefined,
          rollout: undefined,
          createRequestId: requestId,
        };
        tx.create('service', written);
      });
    } catch (err) {
      // The earlier attempt of this request committed first (the name is taken at apply time).
      const first = isSwarmError(err, ErrorCode.ALREADY_EXISTS) ? madeByThisRequest() : undefined;
      if (first) return { service: first, warnings };
      throw err;
    }
    log.info('service created', { serviceId: id, name, image: spec.task!.container!.image, warnings: warnings.length });
    return { service: answerOf(store, id, written), warnings };
  }

  async function updateService(req: UpdateServiceReq) {
    if (!req.serviceVersion) throw invalidArgument('service_version is required (the meta.version of the service you read)');
    const cur = store.view((tx) => resolveService(tx, req.serviceId));
    const id = cur.id;
    // Checked again in the transaction; here it spares a registry round trip for a stale update.
    if ((cur.meta?.version ?? 0) !== req.serviceVersion) throw outOfSequence(id, cur.meta?.version ?? 0, req.serviceVersion);
    const warnings: string[] = [];
    let spec: ServiceSpec;
    let written: Service | undefined;
    if (req.rollback && isCanaryPhase(cur)) {
      // A rollback at a canary step is an abort: the old tasks never left.
      await store.update((tx) => {
        const s = tx.get('service', id);
        if (!s || (s.meta?.version ?? 0) !== req.serviceVersion) throw outOfSequence(id, s?.meta?.version ?? 0, req.serviceVersion);
        written = abortRollout(tx, s, 'rolled back by hand (service rollback)', now());
      });
      log.info('canary rollout aborted by a rollback', { serviceId: id });
      return { service: answerOf(store, id, written), warnings };
    }
    if (req.rollback) {
      if (!cur.previousSpec) throw failedPrecondition(`service ${nameOf('service', cur)} (${id}) has no previous spec to roll back to`);
      spec = structuredClone<ServiceSpec>(cur.previousSpec);
    } else {
      spec = checkServiceSpec(req.spec);
      const curName = cur.spec?.annotations?.name ?? '';
      if (spec.annotations!.name !== curName) throw invalidArgument(`spec.annotations.name: a service cannot be renamed ("${curName}" → "${spec.annotations!.name}")`);
      if (spec.mode?.$case !== cur.spec?.mode?.$case) throw invalidArgument(`spec.mode: a service cannot change between replicated and global mode`);
      // The emptied credentials a response carried, sent back: keep the stored ones.
      const given = spec.task!.container!.pullAuth;
      const stored = cur.spec?.task?.container?.pullAuth;
      if (given && stored && given.username === stored.username && !given.password && !given.identityToken) spec.task!.container!.pullAuth = structuredClone(stored);
      const image = imageOf(spec);
      const changed = image !== imageOf(cur.spec) && !(image === withoutDigest(imageOf(cur.spec)) && req.noResolveImage);
      store.view((tx) => {
        resolveServiceNetworks(tx, spec);
      resolveServiceData(tx, spec);
        applyIngress(tx, id, structuredClone(spec));
      });
      if (changed) await pin(spec, req.noResolveImage, warnings);
      else spec.task!.container!.image = image;
    }
    const canary = req.canary && !req.rollback ? checkCanaryConfig(req.canary, spec) : undefined;
    await store.update((tx) => {
      let s = tx.get('service', id);
      if (!s) throw notFound(`service ${id} not found`);
      const version = s.meta?.version ?? 0;
      if (version !== req.serviceVersion) throw outOfSequence(id, version, req.serviceVersion);
      resolveServiceNetworks(tx, spec);
      resolveServiceData(tx, spec);
      applyIngress(tx, id, spec);
      if (isRolloutActive(s)) {
        // A change of replicas or labels passes; a change of what the tasks run waits for the rollout to end.
        const asNow = newTask(s, { id: '', slot: 1, now: 0 });
        if (isTaskDirty({ ...s, spec, specVersion: s.specVersion + 1 }, asNow, undefined) || canary || req.rollback) {
          if (!req.force) {
            throw failedPrecondition(
              `service ${nameOf('service', s)} has a canary rollout in progress (${rolloutWhere(s)}): promote or abort it first (swarmctl service promote|abort), or replace it with --force`,
            );
          }
          s = abortRollout(tx, s, 'replaced by a new update (--force)', now(), { restoreSpec: false });
        }
      }
      const u = cloneObject('service', s);
      u.previousSpec = u.spec;
      u.spec = spec;
      u.specVersion = (u.specVersion || 1) + 1;
      // A scale or a label change goes on under the rollout: it follows the spec version.
      if (isRolloutActive(u)) u.rollout = { ...u.rollout!, specVersion: u.specVersion };
      // The VIPs stay: a spec change must not take a service off its networks' VIP tables, even for
      // a moment (the allocator drops those of networks the service left).
      u.endpoint = { spec: spec.endpoint ? structuredClone(spec.endpoint) : undefined, ports: structuredClone(spec.endpoint?.ports ?? []), virtualIps: u.endpoint?.virtualIps ?? [] };
      // A new rolling update when a running task no longer matches (a paused one resumes); none
      // for a change of replicas or labels alone. The updater takes it from here.
      u.updateStatus = !needsUpdate(tx, u)
        ? undefined
        : req.rollback
          ? { state: UpdateStatus_State.ROLLBACK_STARTED, startedAt: now(), completedAt: 0, message: 'manually requested rollback', failedTaskIds: [] }
          : { state: UpdateStatus_State.UPDATING, startedAt: now(), completedAt: 0, message: canary ? 'canary rollout in progress' : 'update in progress', failedTaskIds: [] };
      if (canary) {
        if (!u.updateStatus) throw invalidArgument(`canary: nothing to roll out: every task of service ${nameOf('service', s)} already runs this spec (change it, or add --force to restart the tasks)`);
        const replicas = u.spec?.mode?.$case === 'replicated' ? Number(u.spec.mode.replicated.replicas) : 0;
        const count = Number(canary.replicas) || canaryCountFor(replicas, canary.steps[0]);
        u.rollout = atStep(
          {
            state: Rollout_State.UNKNOWN,
            config: canary,
            step: 0,
            weight: 0,
            specVersion: u.specVersion,
            replicas: count,
            startedAt: now(),
            stepStartedAt: 0,
            nextStepAt: 0,
            completedAt: 0,
            message: '',
            failedTaskIds: [],
            baselines: [],
          },
          0,
          now(),
        );
      }
      tx.update('service', u);
      written = u;
    });
    log.info('service updated', { serviceId: id, rollback: req.rollback, image: imageOf(spec), canary: canary ? canary.steps.join(',') : undefined });
    return { service: answerOf(store, id, written), warnings };
  }

  async function removeService(req: { serviceId: string }) {
    const s = store.view((tx) => resolveService(tx, req.serviceId));
    await store.update((tx) => {
      if (!tx.get('service', s.id)) throw notFound(`service ${s.id} not found`);
      tx.delete('service', s.id);
    });
    log.info('service removed', { serviceId: s.id, name: nameOf('service', s) });
    return {};
  }

  async function getService(req: { serviceId: string }) {
    return { service: publicService(store.view((tx) => resolveService(tx, req.serviceId))) };
  }

  async function listServices(req: { filters?: ListServicesRequest_Filters }) {
    const f = req.filters;
    const services = store.view((tx) => tx.find('service')).filter((s) => {
      if (!f) return true;
      const name = nameOf('service', s).toLowerCase();
      if (f.names.length && !f.names.some((x) => x.toLowerCase() === name)) return false;
      if (f.namePrefixes.length && !f.namePrefixes.some((x) => name.startsWith(x.toLowerCase()))) return false;
      if (f.idPrefixes.length && !f.idPrefixes.some((p) => s.id.startsWith(p))) return false;
      if (Object.keys(f.labels).length && !sameLabels(f.labels, s.spec?.annotations?.labels)) return false;
      return true;
    });
    return { services: services.map(publicService) };
  }

  return { getService, listServices, createService, updateService, removeService };
}
