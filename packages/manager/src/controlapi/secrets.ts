/**
 * Secrets and configs of the control API (after SwarmKit's controlapi/secret.go and config.go):
 * Create, Get, List, Remove. A secret's data is sealed with the managers' secrets key before it
 * enters the store (so the Raft log and snapshots never hold it) and never comes out: every
 * Secret in a response has its data emptied. A config's data is plain and is returned. Names are
 * unique per kind; removing one that a service uses is refused, naming the services. Neither can
 * change: a new version is a new name (as in Swarm).
 */
import { createHash } from 'node:crypto';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import type { Config, ConfigSpec, ListConfigsRequest_Filters, ListSecretsRequest_Filters, Secret, SecretSpec, ServiceSpec } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { nameOf } from '../store/kinds.js';
import { newId } from '../ids.js';
import { sameLabels } from './labels.js';
import type { SecretsKeyring } from '../secrets/index.js';

const MAX_SECRET_BYTES = 500 * 1024;
const MAX_CONFIG_BYTES = 1000 * 1024;
const NAME = /^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$/;

export interface SecretsDeps {
  store: Store;
  logger: Logger;
  keyring: SecretsKeyring;
}

type DataKind = 'secret' | 'config';

function checkSpec(kind: DataKind, spec: SecretSpec | ConfigSpec | undefined): { name: string; data: Buffer; labels: Record<string, string> } {
  const name = spec?.annotations?.name ?? '';
  if (!name) throw invalidArgument(`${kind} spec: annotations.name is required`);
  if (name.length > 64 || !NAME.test(name)) throw invalidArgument(`${kind} name "${name}": up to 64 letters, digits, "-", "_" and ".", starting and ending with a letter or digit`);
  const data = Buffer.from(spec?.data ?? []);
  const max = kind === 'secret' ? MAX_SECRET_BYTES : MAX_CONFIG_BYTES;
  if (data.length === 0) throw invalidArgument(`${kind} ${name}: the data is empty`);
  if (data.length > max) throw invalidArgument(`${kind} ${name}: ${data.length} bytes of data, at most ${max}`);
  return { name, data, labels: { ...(spec?.annotations?.labels ?? {}) } };
}

function resolve<K extends DataKind>(tx: ReadTx, kind: K, ref: string) {
  const exact = tx.get(kind, ref) ?? tx.find(kind, { name: ref })[0];
  if (exact) return exact;
  const byPrefix = tx.find(kind).filter((x) => x.id.startsWith(ref));
  if (byPrefix.length === 1 && ref.length >= 3) return byPrefix[0];
  if (byPrefix.length > 1) throw invalidArgument(`${kind} ${ref} is ambiguous (${byPrefix.length} match)`);
  throw notFound(`${kind} ${ref} not found`);
}

/** The services whose spec names the secret (or config) with this id. */
function usersOf(tx: ReadTx, kind: DataKind, id: string): string[] {
  return tx
    .find('service')
    .filter((s) => {
      const c = s.spec?.task?.container;
      return kind === 'secret' ? c?.secrets.some((r) => r.secretId === id) : c?.configs.some((r) => r.configId === id);
    })
    .map((s) => nameOf('service', s));
}

/** A secret as a response carries it: never its data. */
export function publicSecret(s: Readonly<Secret>): Secret {
  return { id: s.id, meta: s.meta ? { ...s.meta } : undefined, spec: { annotations: structuredClone(s.spec?.annotations), data: Buffer.alloc(0) }, digest: s.digest };
}

const matches = (f: { names: string[]; labels: Record<string, string> } | undefined, name: string, labels: Record<string, string> | undefined) =>
  !f || ((!f.names.length || f.names.some((n) => n.toLowerCase() === name.toLowerCase())) && sameLabels(f.labels, labels));

/**
 * Resolves a service spec's secret and config references (by name or id) to ids, in place, and
 * fills the file target defaults; NOT_FOUND names one that does not exist.
 */
export function resolveServiceData(tx: ReadTx, spec: ServiceSpec): void {
  const c = spec.task?.container;
  if (!c) return;
  const seen = new Set<string>();
  for (const r of c.secrets) {
    const s = resolve(tx, 'secret', r.secretId || r.secretName);
    r.secretId = s.id;
    r.secretName = nameOf('secret', s);
    r.file ??= { name: r.secretName, uid: '0', gid: '0', mode: 0o444 };
    if (!r.file.name) r.file.name = r.secretName;
    if (!r.file.name.startsWith('/')) r.file.name = `/run/secrets/${r.file.name}`;
    if (seen.has(r.file.name)) throw invalidArgument(`spec.task.container.secrets: two secrets land at ${r.file.name}`);
    seen.add(r.file.name);
  }
  for (const r of c.configs) {
    const s = resolve(tx, 'config', r.configId || r.configName);
    r.configId = s.id;
    r.configName = nameOf('config', s);
    r.file ??= { name: `/${r.configName}`, uid: '0', gid: '0', mode: 0o444 };
    if (!r.file.name) r.file.name = `/${r.configName}`;
    if (!r.file.name.startsWith('/')) throw invalidArgument(`spec.task.container.configs: the target "${r.file.name}" of config ${r.configName} must be an absolute path`);
    if (seen.has(r.file.name)) throw invalidArgument(`spec.task.container.configs: two secrets or configs land at ${r.file.name}`);
    seen.add(r.file.name);
  }
}

export function createSecretsImpl(deps: SecretsDeps) {
  const { store, logger: log, keyring } = deps;

  async function createSecret(req: { spec?: SecretSpec }) {
    const { name, data, labels } = checkSpec('secret', req.spec);
    const sealed = keyring.seal(data);
    const id = newId();
    await store.update((tx) => {
      const holder = tx.find('secret', { name })[0];
      if (holder) throw alreadyExists(`secret name "${name}" is already in use by secret ${holder.id}`);
      tx.create('secret', { id, meta: undefined, spec: { annotations: { name, labels }, data: sealed }, digest: createHash('sha256').update(data).digest('hex') });
    });
    log.info('secret created', { secretId: id, name });
    return { secret: publicSecret(store.view((tx) => tx.get('secret', id))!) };
  }

  async function createConfig(req: { spec?: ConfigSpec }) {
    const { name, data, labels } = checkSpec('config', req.spec);
    const id = newId();
    await store.update((tx) => {
      const holder = tx.find('config', { name })[0];
      if (holder) throw alreadyExists(`config name "${name}" is already in use by config ${holder.id}`);
      tx.create('config', { id, meta: undefined, spec: { annotations: { name, labels }, data } });
    });
    log.info('config created', { configId: id, name });
    return { config: store.view((tx) => tx.get('config', id))! as Config };
  }

  function remover(kind: DataKind) {
    return async (ref: string) => {
      const o = store.view((tx) => resolve(tx, kind, ref));
      await store.update((tx) => {
        if (!tx.get(kind, o.id)) throw notFound(`${kind} ${o.id} not found`);
        const users = usersOf(tx, kind, o.id);
        if (users.length) throw failedPrecondition(`${kind} ${nameOf(kind, o)} is in use by service ${users.join(', ')}: remove it from them first`);
        tx.delete(kind, o.id);
      });
      log.info(`${kind} removed`, { id: o.id, name: nameOf(kind, o) });
      return {};
    };
  }
  const removeSecretById = remover('secret');
  const removeConfigById = remover('config');

  return {
    createSecret,
    getSecret: async (req: { secretId: string }) => ({ secret: publicSecret(store.view((tx) => resolve(tx, 'secret', req.secretId))) }),
    listSecrets: async (req: { filters?: ListSecretsRequest_Filters }) => ({
      secrets: store
        .view((tx) => tx.find('secret'))
        .filter((s) => matches(req.filters, nameOf('secret', s), s.spec?.annotations?.labels))
        .map(publicSecret),
    }),
    removeSecret: (req: { secretId: string }) => removeSecretById(req.secretId),
    createConfig,
    getConfig: async (req: { configId: string }) => ({ config: structuredClone(store.view((tx) => resolve(tx, 'config', req.configId))) as Config }),
    listConfigs: async (req: { filters?: ListConfigsRequest_Filters }) => ({
      configs: store
        .view((tx) => tx.find('config'))
        .filter((s) => matches(req.filters, nameOf('config', s), s.spec?.annotations?.labels))
        .map((c) => structuredClone(c) as Config),
    }),
    removeConfig: (req: { configId: string }) => removeConfigById(req.configId),
  };
}
