import { readFile, rename } from 'node:fs/promises';
import { createHash, randomInt } from 'node:crypto';
import { join } from 'node:path';
import { ConfChange, ConfChangeType, EntryType, SnapshotFiles, Wal, type ConfState, type Entry, type Logger as RaftLogger } from 'raft-ts';
import { ErrorCode, SwarmError, wrapError } from '@swarmd/common/errors';
import type { Logger } from '@swarmd/common/logger';
import { writeFileAtomic } from '../ca/files.js';

/**
 * What a manager keeps next to its Raft WAL and snapshots (DIR/raft/member.json): who it is in
 * the Raft group. Written once when it bootstraps or joins; `run` reads it back.
 */
export interface RaftMemberFile {
  raftId: number;
  nodeId: string;
  clusterId: string;
  /** The transport's numeric cluster id (refuses traffic of other clusters). */
  transportClusterId: number;
  /**
   * Where the cluster's store lives: absent (or "raft") for the built-in Raft; "etcd" for an
   * external etcd under `prefix` (raftId is then 0 and there is no WAL). Fixed for the life of
   * the state dir: a manager started with another backend refuses.
   */
  store?: 'raft' | 'etcd';
  prefix?: string;
  /** etcd: the endpoints last used (a restart without --etcd-endpoints uses them). */
  endpoints?: string[];
}

export const MEMBER_FILE = 'member.json';

export async function readMemberFile(raftDir: string): Promise<RaftMemberFile | undefined> {
  let text: string;
  try {
    text = await readFile(join(raftDir, MEMBER_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw wrapError(ErrorCode.INTERNAL, `cannot read ${join(raftDir, MEMBER_FILE)}`, err);
  }
  const m = JSON.parse(text) as Partial<RaftMemberFile>;
  if ((!m.raftId && m.store !== 'etcd') || !m.nodeId || !m.clusterId || !m.transportClusterId) {
    throw new SwarmError(ErrorCode.DATA_LOSS, `${join(raftDir, MEMBER_FILE)} is incomplete (raftId, nodeId, clusterId, transportClusterId)`);
  }
  return m as RaftMemberFile;
}

export async function writeMemberFile(raftDir: string, m: RaftMemberFile): Promise<void> {
  await writeFileAtomic(join(raftDir, MEMBER_FILE), JSON.stringify(m, null, 2) + '\n', 0o600);
}

/** The transport cluster id of a cluster: 32 bits of sha256(cluster id), never 0. */
export function transportClusterIdOf(clusterId: string): number {
  return createHash('sha256').update(clusterId).digest().readUInt32BE(0) || 1;
}

/** A fresh Raft member id: a random non-zero uint32 not in `taken`. */
export function newRaftId(taken: Iterable<number> = []): number {
  const used = new Set(taken);
  for (;;) {
    const id = randomInt(1, 2 ** 32 - 1);
    if (!used.has(id)) return id;
  }
}

/**
 * etcd's --force-new-cluster for a stopped member's data dir: keep every entry (the uncommitted
 * tail too, as etcd does), append conf changes that remove every other voter and learner (and
 * make this member a voter), and mark them committed. When the member restarts it applies them
 * and is the only voter, so it elects itself and the cluster takes writes again with all its
 * state. Indexes keep growing (object versions stay meaningful). Returns the members removed.
 */
export async function forceNewClusterInDir(raftDir: string, selfId: number, logger?: Logger): Promise<number[]> {
  const rl: RaftLogger | undefined = logger;
  const snaps = new SnapshotFiles(join(raftDir, 'snap'), { fsync: true, ...(rl ? { logger: rl } : {}) });
  const snap = await snaps.loadNewest();
  const { wal, state } = await Wal.open(join(raftDir, 'wal'), { fsync: true, ...(rl ? { logger: rl } : {}) });
  try {
    const snapIndex = snap?.metadata?.index ?? 0;
    let conf: ConfState = { voters: [...(snap?.metadata?.confState?.voters ?? [])], learners: [...(snap?.metadata?.confState?.learners ?? [])] };
    const entries = state.entries.filter((e) => e.index > snapIndex);
    let lastIndex = snapIndex;
    let lastTerm = snap?.metadata?.term ?? 0;
    for (const e of entries) {
      lastIndex = e.index;
      lastTerm = e.term;
      if (e.type === EntryType.ENTRY_CONF_CHANGE) conf = applyConf(conf, ConfChange.decode(e.data));
    }
    if (lastIndex === 0) throw new SwarmError(ErrorCode.FAILED_PRECONDITION, `force-new-cluster: ${raftDir} holds no Raft state`);
    const term = Math.max(state.hardState?.term ?? 0, lastTerm, 1);
    const changes: ConfChange[] = [];
    if (!conf.voters.includes(selfId)) changes.push({ type: ConfChangeType.CONF_ADD_NODE, nodeId: selfId, context: Buffer.alloc(0) });
    const removed = [...conf.voters, ...conf.learners].filter((id) => id !== selfId);
    for (const id of removed) changes.push({ type: ConfChangeType.CONF_REMOVE_NODE, nodeId: id, context: Buffer.alloc(0) });
    if (changes.length === 0) return [];
    const added: Entry[] = changes.map((cc, i) => ({
      term,
      index: lastIndex + 1 + i,
      type: EntryType.ENTRY_CONF_CHANGE,
      data: Buffer.from(ConfChange.encode(cc).finish()),
    }));
    const commit = added[added.length - 1].index;
    await wal.save({ term, vote: state.hardState?.vote ?? 0, commit }, added, true);
    logger?.warn('force-new-cluster: this member is now the only voter', { raftId: selfId, removed, commit });
    return removed;
  } finally {
    await wal.close();
  }
}

function applyConf(c: ConfState, cc: ConfChange): ConfState {
  const voters = c.voters.filter((v) => v !== cc.nodeId);
  const learners = c.learners.filter((v) => v !== cc.nodeId);
  if (cc.type === ConfChangeType.CONF_ADD_NODE) voters.push(cc.nodeId);
  else if (cc.type === ConfChangeType.CONF_ADD_LEARNER) learners.push(cc.nodeId);
  return { voters, learners };
}

/** Moves a raft dir aside (a demoted manager keeps its old state for forensics, not for use). */
export async function retireRaftDir(raftDir: string, now: number): Promise<string> {
  const to = `${raftDir}.retired-${now}`;
  await rename(raftDir, to);
  return to;
}
