/**
 * The cluster in the control API (after SwarmKit's controlapi/cluster.go): GetCluster,
 * ListClusters, UpdateCluster (spec, join token rotation, autolock and its unlock key), GetUnlockKey,
 * and admin certificates. The root CA key never leaves: every Cluster in a response has
 * root_ca.ca_key_pem and unlock_key_sealed emptied; the unlock key leaves only through GetUnlockKey.
 */
import type { Clock } from '@swarmd/common/clock';
import { SwarmError, ErrorCode, invalidArgument, notFound } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import type { Cluster, ClusterSpec } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { cloneObject, nameOf } from '../store/kinds.js';
import { newId } from '../ids.js';
import { type ClusterCa, MIN_NODE_CERT_EXPIRY_MS } from '../ca/cluster-ca.js';
import { rotateJoinTokens } from '../ca/tokens.js';
import { x509 } from '../ca/x509.js';
import { publicCluster } from '../rpc-kit/cluster.js';
import { newUnlockKey, unlockKeyOf, type SecretsKeyring } from '../secrets/index.js';

function validClusterSpec(cur: Readonly<Cluster>, spec: ClusterSpec | undefined): ClusterSpec {
  if (!spec) throw invalidArgument('spec is required');
  const name = spec.annotations?.name ?? '';
  const curName = cur.spec?.annotations?.name ?? '';
  if (name !== curName) throw invalidArgument(`spec.annotations.name: the cluster cannot be renamed ("${curName}" → "${name}")`);
  const hb = spec.dispatcher?.heartbeatPeriodMs ?? 0;
  if (hb < 0 || (hb > 0 && hb < 100)) throw invalidArgument(`spec.dispatcher.heartbeat_period_ms: ${hb} is too short (0 for the default, else at least 100 ms)`);
  const exp = spec.caConfig?.nodeCertExpiryMs ?? 0;
  if (exp < 0 || (exp > 0 && exp < MIN_NODE_CERT_EXPIRY_MS)) {
    throw invalidArgument(`spec.ca_config.node_cert_expiry_ms: ${exp} is too short (0 for the default, else at least ${MIN_NODE_CERT_EXPIRY_MS} ms)`);
  }
  const r = spec.raft;
  if (r && r.electionTick > 0 && r.heartbeatTick > 0 && r.electionTick <= r.heartbeatTick) {
    throw invalidArgument(`spec.raft: election_tick (${r.electionTick}) must be greater than heartbeat_tick (${r.heartbeatTick})`);
  }
  if ((spec.orchestration?.taskHistoryRetentionLimit ?? 0) < 0) throw invalidArgument('spec.orchestration.task_history_retention_limit must not be negative');
  return spec;
}

function resolveCluster(tx: ReadTx, ref: string): Readonly<Cluster> {
  const all = tx.find('cluster');
  if (!ref) {
    if (all[0]) return all[0];
    throw notFound('there is no cluster yet');
  }
  const c = tx.get('cluster', ref) ?? all.find((x) => nameOf('cluster', x).toLowerCase() === ref.toLowerCase());
  if (!c) throw notFound(`cluster ${ref} not found`);
  return c;
}

const ADMIN_ID = /^admin-[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export interface ClusterDeps {
  store: Store;
  logger: Logger;
  clock: Clock;
  /** The cluster CA with its key. */
  ca(): Promise<ClusterCa>;
  /** Seals the unlock key in the cluster object (autolock). */
  keyring: SecretsKeyring;
}

export function createClusterImpl(deps: ClusterDeps) {
  const { store, logger: log, clock } = deps;
  const loadCa = (): Promise<ClusterCa> => deps.ca();

  async function getCluster(req: { clusterId: string }): Promise<{ cluster: Cluster }> {
    return { cluster: publicCluster(store.view((tx) => resolveCluster(tx, req.clusterId))) };
  }

  async function listClusters(): Promise<{ clusters: Cluster[] }> {
    return { clusters: store.view((tx) => tx.find('cluster')).map(publicCluster) };
  }

  async function updateCluster(req: {
    clusterId: string;
    clusterVersion: number;
    spec?: ClusterSpec;
    rotateWorkerToken: boolean;
    rotateManagerToken: boolean;
    rotateUnlockKey: boolean;
  }): Promise<{ cluster: Cluster }> {
    if (!req.clusterVersion) throw invalidArgument('cluster_version is required (the meta.version of the cluster you read)');
    const id = await store.update((tx) => {
      const cur = resolveCluster(tx, req.clusterId);
      const version = cur.meta?.version ?? 0;
      if (version !== req.clusterVersion) {
        throw new SwarmError(
          ErrorCode.CONFLICT,
          `update out of sequence: cluster ${cur.id} is at version ${version}, the update was made against version ${req.clusterVersion}: read it again and retry`,
        );
      }
      const c = cloneObject('cluster', cur);
      c.spec = validClusterSpec(cur, req.spec);
      if ((req.rotateWorkerToken || req.rotateManagerToken) && c.rootCa) {
        c.rootCa.joinTokens = rotateJoinTokens(c.rootCa.joinTokens ?? { worker: '', manager: '' }, c.rootCa.caCertDigest, {
          worker: req.rotateWorkerToken,
          manager: req.rotateManagerToken,
        });
      }
      // Autolock: a key when it turns on (or on rotation), none when it turns off.
      if (c.spec.autolockManagers) {
        if (!c.unlockKeySealed.length || req.rotateUnlockKey) c.unlockKeySealed = deps.keyring.seal(Buffer.from(newUnlockKey()));
      } else {
        if (req.rotateUnlockKey) throw invalidArgument('rotate_unlock_key: autolock is off, so there is no unlock key to rotate (turn it on with autolock_managers)');
        c.unlockKeySealed = Buffer.alloc(0);
      }
      tx.update('cluster', c);
      return c.id;
    });
    log.info('cluster updated', { clusterId: id, rotateWorkerToken: req.rotateWorkerToken, rotateManagerToken: req.rotateManagerToken, autolock: !!req.spec?.autolockManagers, rotateUnlockKey: req.rotateUnlockKey });
    return { cluster: publicCluster(store.view((tx) => tx.get('cluster', id))!) };
  }

  async function issueAdminCertificate(req: { csrPem: Uint8Array }): Promise<{ certificatePem: string; caCertPem: string }> {
    if (!req.csrPem?.length) throw invalidArgument('csr_pem is required');
    const csrPem = Buffer.from(req.csrPem).toString('utf8');
    let cn = '';
    try {
      cn = new x509.Pkcs10CertificateRequest(csrPem).subjectName.getField('CN')[0] ?? '';
    } catch {
      /* issueAdminCertificate reports a bad CSR */
    }
    const adminId = ADMIN_ID.test(cn) ? cn : `admin-${newId()}`;
    const ca = await loadCa();
    const cert = await ca.issueAdminCertificate(csrPem, adminId, { now: clock.now() });
    log.info('admin certificate issued', { adminId, notAfter: new Date(cert.notAfter).toISOString() });
    return { certificatePem: cert.certPem, caCertPem: ca.certPem };
  }

  async function getUnlockKey(): Promise<{ unlockKey: string; version: Cluster['meta'] }> {
    const c = store.view((tx) => resolveCluster(tx, ''));
    return { unlockKey: unlockKeyOf(c, deps.keyring) ?? '', version: c.meta };
  }

  return { getCluster, listClusters, updateCluster, issueAdminCertificate, getUnlockKey };
}
