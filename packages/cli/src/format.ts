import Table from 'cli-table3';
import { ManagerStatus_Reachability, NodeAvailability, NodeRole, NodeState, nodeAvailabilityToJSON, nodeRoleToJSON, nodeStateToJSON } from '@swarmd/proto/gen/swarm/types';
import { Cluster, Node } from '@swarmd/proto/gen/swarm/objects';

export type OutputFormat = 'table' | 'json';
export const FORMATS: readonly OutputFormat[] = ['table', 'json'];

/** A borderless table like docker's: upper-case headers, columns three spaces apart. */
/** "Key:   value" lines, empty values left out. */
export function kv(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${(k + ':').padEnd(w)} ${v}`)
    .join('\n');
}

export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const blank = { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '   ' };
  const t = new Table({ head: [...head], chars: blank, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0, compact: true } });
  for (const r of rows) t.push([...r]);
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}


export function nodeName(n: Node): string {
  return n.spec?.annotations?.name || n.description?.hostname || '';
}

export function stateText(s: NodeState | undefined): string {
  switch (s) {
    case NodeState.NODE_STATE_READY:
      return 'Ready';
    case NodeState.NODE_STATE_DOWN:
      return 'Down';
    case NodeState.NODE_STATE_DISCONNECTED:
      return 'Disconnected';
    default:
      return 'Unknown';
  }
}

export function availabilityText(a: NodeAvailability | undefined): string {
  switch (a) {
    case NodeAvailability.NODE_AVAILABILITY_PAUSE:
      return 'Pause';
    case NodeAvailability.NODE_AVAILABILITY_DRAIN:
      return 'Drain';
    default:
      return 'Active';
  }
}

/** `docker node ls`'s MANAGER STATUS, with what the manager reports wrong: "Unreachable (state disk full)". */
export function managerStatusText(n: Node): string {
  const m = n.managerStatus;
  if (!m || (n.role !== NodeRole.NODE_ROLE_MANAGER && !m.raftId && !m.leader)) return '';
  const status = m.leader ? 'Leader' : reachabilityText(m.reachability);
  const notes = [...(m.learner ? ['catching up, not voting yet'] : []), ...(m.problem ? [m.problem] : [])];
  return notes.length ? `${status} (${notes.join('; ')})` : status;
}

function reachabilityText(r: ManagerStatus_Reachability): string {
  switch (r) {
    case ManagerStatus_Reachability.REACHABLE:
      return 'Reachable';
    case ManagerStatus_Reachability.UNREACHABLE:
      return 'Unreachable';
    default:
      return 'Unknown';
  }
}

export function roleText(r: NodeRole | undefined): string {
  return r === NodeRole.NODE_ROLE_MANAGER ? 'manager' : 'worker';
}

/** `docker node ls`: managers first, then by hostname, then id. */
export function nodesTable(nodes: readonly Node[], selfId?: string): string {
  const sorted = [...nodes].sort(
    (a, b) =>
      Number(b.role === NodeRole.NODE_ROLE_MANAGER) - Number(a.role === NodeRole.NODE_ROLE_MANAGER) ||
      nodeName(a).localeCompare(nodeName(b)) ||
      a.id.localeCompare(b.id),
  );
  return table(
    ['ID', 'HOSTNAME', 'STATUS', 'AVAILABILITY', 'MANAGER STATUS', 'ENGINE VERSION'],
    sorted.map((n) => [
      n.id === selfId ? `${n.id} *` : n.id,
      nodeName(n),
      stateText(n.status?.state),
      availabilityText(n.spec?.availability),
      managerStatusText(n),
      n.description?.engineVersion ?? '',
    ]),
  );
}

/** Key/value lines for `node inspect` in table form. */
export function nodeDetails(n: Node, selfId?: string): string {
  const d = n.description;
  const labels = Object.entries(n.spec?.annotations?.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  const rows: [string, string][] = [
    ['ID', n.id + (n.id === selfId ? ' *' : '')],
    ['Hostname', nodeName(n)],
    ['Role', roleText(n.role)],
    ['Desired role', roleText(n.spec?.desiredRole)],
    ['Status', stateText(n.status?.state) + (n.status?.message ? ` (${n.status.message})` : '')],
    ['Address', n.status?.addr ?? ''],
    ['Availability', availabilityText(n.spec?.availability)],
    ['Manager status', managerStatusText(n) + (n.managerStatus?.addr ? ` ${n.managerStatus.addr}` : '')],
    ['Labels', labels.join(', ')],
    ['Platform', d?.platform ? `${d.platform.os}/${d.platform.architecture}` : ''],
    ['CPUs', d?.resources ? String(d.resources.nanoCpus / 1e9) : ''],
    ['Memory', d?.resources ? bytesText(d.resources.memoryBytes) : ''],
    ['Engine version', d?.engineVersion ?? ''],
    ['Engine labels', Object.entries(d?.engineLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')],
    ['Created', timeText(n.meta?.createdAt)],
    ['Updated', timeText(n.meta?.updatedAt)],
  ];
  return keyValues(rows);
}

/** The store backend as `cluster inspect` shows it: the built-in raft, or etcd with its endpoints and prefix. */
export function storeText(c: Cluster): string {
  const b = c.store;
  if (b?.kind !== 'etcd') return 'raft (built in)';
  return `etcd ${b.endpoints.join(',')} prefix ${b.prefix}${b.caCert.length ? ' (TLS)' : ''}`;
}

export function clusterDetails(c: Cluster): string {
  const s = c.spec;
  return keyValues([
    ['ID', c.id],
    ['Name', s?.annotations?.name ?? ''],
    ['Heartbeat period', heartbeatPeriodText(s?.dispatcher?.heartbeatPeriodMs)],
    ['Node certificate expiry', durationText(s?.caConfig?.nodeCertExpiryMs)],
    ['Task history limit', String(s?.orchestration?.taskHistoryRetentionLimit ?? 0)],
    ['Autolock', s?.autolockManagers ? 'on' : 'off'],
    ['Store', storeText(c)],
    ['Raft', s?.raft ? `election tick ${s.raft.electionTick}, heartbeat tick ${s.raft.heartbeatTick}, snapshot interval ${s.raft.snapshotInterval}` : ''],
    ['CA certificate digest', c.rootCa?.caCertDigest ?? ''],
    ['Removed nodes', String(c.removedNodeIds.length)],
    ['Created', timeText(c.meta?.createdAt)],
    ['Updated', timeText(c.meta?.updatedAt)],
  ]);
}

function keyValues(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows.map(([k, v]) => `${(k + ':').padEnd(w)} ${v}`.trimEnd()).join('\n');
}

export function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function timeText(ms: number | undefined): string {
  return ms ? new Date(ms).toISOString() : '';
}

/** A cluster's heartbeat period: 0 is the automatic one (the dispatcher sizes it by the cluster). */
export function heartbeatPeriodText(ms: number | undefined): string {
  return ms ? durationText(ms) : 'auto (1s up to 200 nodes, at most 5s)';
}

/** 90 days → "2160h0m0s"-like, but short: "90d", "5s", "1h30m", "250ms". */
export function durationText(ms: number | undefined): string {
  if (!ms) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [u, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    if (rest >= n) {
      parts.push(`${Math.floor(rest / n)}${u}`);
      rest %= n;
    }
  }
  return parts.join('');
}

/** "1h30m", "5s", "250ms", "90d", "1.5h" → milliseconds; undefined when not a duration. */
export function parseDuration(s: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  if (!s) return undefined;
  while ((m = re.exec(s)) !== null) {
    total += parseFloat(m[1]) * unit[m[2]];
    pos = re.lastIndex;
  }
  return pos === s.length && pos > 0 ? Math.round(total) : undefined;
}

/**
 * A --since/--until value as unix ms: a duration back from `now` (10m), an RFC 3339 time
 * (2024-01-02T15:04:05Z) or unix seconds (1704207845, as docker takes); undefined when none.
 */
export function parseTimeArg(s: string, now: number): number | undefined {
  const d = parseDuration(s);
  if (d !== undefined) return now - d;
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(parseFloat(s) * 1000);
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
}

/**
 * JSON output: the proto JSON form. Proto JSON leaves out default values, so the fields scripts
 * test (role, availability, desired role, state) are always written out.
 */
export function nodeJson(n: Node): unknown {
  const j = Node.toJSON(n) as Record<string, unknown>;
  const obj = (k: string) => ((j[k] ??= {}) as Record<string, unknown>);
  j.role = nodeRoleToJSON(n.role);
  obj('spec').availability = nodeAvailabilityToJSON(n.spec?.availability ?? NodeAvailability.NODE_AVAILABILITY_ACTIVE);
  obj('spec').desiredRole = nodeRoleToJSON(n.spec?.desiredRole ?? n.role);
  obj('status').state = nodeStateToJSON(n.status?.state ?? NodeState.NODE_STATE_UNKNOWN);
  return j;
}

export function clusterJson(c: Cluster): unknown {
  const copy: Cluster = { ...c, rootCa: c.rootCa ? { ...c.rootCa, caKeyPem: Buffer.alloc(0) } : undefined };
  return Cluster.toJSON(copy);
}

export function json(v: unknown): string {
  return JSON.stringify(v, null, 2);
}
