/** Tables, details and json of services and tasks; the `service logs` prefix. */
import { EndpointSpec_ResolutionMode, PortConfig_Protocol, PortConfig_PublishMode, TaskState, HealthState, healthStateToJSON, type UpdateConfig, UpdateConfig_FailureAction, UpdateConfig_Order, type UpdateStatus, UpdateStatus_State } from '@swarmd/proto/gen/swarm/types';
import { type Network, type Node, type Service, Service as ServiceMsg, type Task, Task as TaskMsg } from '@swarmd/proto/gen/swarm/objects';
import { type LogLine } from '@swarmd/proto/gen/swarm/control';
import { durationText, kv, table } from './format.js';
import { attachmentsText, serviceNetworksText } from './network-format.js';
import { rolloutDetails } from './canary.js';

export const serviceName = (s: Service): string => s.spec?.annotations?.name ?? '';

export const shortId = (id: string, noTrunc = false): string => (noTrunc ? id : id.slice(0, 12));

/** `running`, `pending`, … (the enum name, lower case). */
export function taskStateText(s: TaskState | undefined): string {
  const name = TaskState[s ?? TaskState.TASK_STATE_NEW] as string | undefined;
  return (name ?? String(s)).replace(/^TASK_STATE_/, '').toLowerCase();
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

export function agoText(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'} ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'} ago`;
  return `${Math.round(h / 24)} days ago`;
}

export function modeText(s: Service): string {
  return s.spec?.mode?.$case === 'global' ? 'global' : 'replicated';
}

export function desiredReplicas(s: Service, tasks: readonly Task[]): number {
  const m = s.spec?.mode;
  if (m?.$case === 'global') return tasks.filter((t) => t.serviceId === s.id && t.desiredState === TaskState.TASK_STATE_RUNNING).length;
  return m?.$case === 'replicated' ? m.replicated.replicas : 1;
}

export function runningCount(s: Service, tasks: readonly Task[]): number {
  return tasks.filter((t) => t.serviceId === s.id && t.desiredState === TaskState.TASK_STATE_RUNNING && t.status?.state === TaskState.TASK_STATE_RUNNING).length;
}

/** The image without the digest it was pinned to (as `docker service ls` shows it). */
export const imageText = (image: string): string => image.replace(/@sha256:[0-9a-f]{64}$/, '');

export function portText(p: { publishedPort: number; targetPort: number; protocol: PortConfig_Protocol; publishMode: PortConfig_PublishMode }): string {
  const proto = (PortConfig_Protocol[p.protocol] as string | undefined)?.toLowerCase() ?? 'tcp';
  return `${p.publishMode === PortConfig_PublishMode.HOST ? 'host:' : '*:'}${p.publishedPort || ''}->${p.targetPort}/${proto}`;
}

/** ID NAME MODE REPLICAS IMAGE PORTS. `tasks`: those desired running (for the counts). */
export function servicesTable(services: readonly Service[], tasks: readonly Task[]): string {
  const sorted = [...services].sort((a, b) => serviceName(a).localeCompare(serviceName(b)));
  return table(
    ['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE', 'PORTS'],
    sorted.map((s) => [
      shortId(s.id),
      serviceName(s),
      modeText(s),
      `${runningCount(s, tasks)}/${desiredReplicas(s, tasks)}`,
      imageText(s.spec?.task?.container?.image ?? ''),
      (s.endpoint?.ports ?? s.spec?.endpoint?.ports ?? []).map(portText).join(', '),
    ]),
  );
}

function nodeNameOf(nodes: readonly Node[], id: string): string {
  const n = nodes.find((x) => x.id === id);
  return n ? n.spec?.annotations?.name || n.description?.hostname || id : id;
}

export function taskName(t: Task): string {
  return t.annotations?.name || `${t.serviceAnnotations?.name ?? t.serviceId}.${t.slot || t.nodeId}`;
}

/** " (healthy)" after a running task's state when it has a health check (as `docker ps` shows it). */
export function healthText(t: Task): string {
  const h = healthName(t);
  return t.status?.state === TaskState.TASK_STATE_RUNNING && h ? ` (${h})` : '';
}

/** starting, healthy or unhealthy; '' without a health check. */
export function healthName(t: Task): string {
  const h = t.status?.container?.health ?? HealthState.HEALTH_STATE_NONE;
  return h === HealthState.HEALTH_STATE_NONE ? '' : healthStateToJSON(h).slice('HEALTH_STATE_'.length).toLowerCase();
}

/** ID NAME IMAGE NODE DESIRED STATE CURRENT STATE ERROR; the newest task of a slot first, older ones as `\_ name`. */
export function tasksTable(tasks: readonly Task[], nodes: readonly Node[], o: { noTrunc?: boolean; now?: number } = {}): string {
  const now = o.now ?? Date.now();
  const key = (t: Task) => `${t.serviceId}/${t.slot || t.nodeId}`;
  const sorted = [...tasks].sort(
    (a, b) =>
      taskName(a).localeCompare(taskName(b), undefined, { numeric: true }) ||
      key(a).localeCompare(key(b)) ||
      (b.meta?.createdAt ?? 0) - (a.meta?.createdAt ?? 0) ||
      a.id.localeCompare(b.id),
  );
  const seen = new Set<string>();
  const trunc = (s: string) => (o.noTrunc || s.length <= 40 ? s : s.slice(0, 39) + '…');
  return table(
    ['ID', 'NAME', 'IMAGE', 'NODE', 'DESIRED STATE', 'CURRENT STATE', 'ERROR'],
    sorted.map((t) => {
      const first = !seen.has(key(t));
      seen.add(key(t));
      const st = t.status;
      return [
        shortId(t.id, o.noTrunc),
        first ? taskName(t) : ` \\_ ${taskName(t)}`,
        o.noTrunc ? (t.spec?.container?.image ?? '') : imageText(t.spec?.container?.image ?? ''),
        t.nodeId ? nodeNameOf(nodes, t.nodeId) : '',
        capital(taskStateText(t.desiredState)),
        `${capital(taskStateText(st?.state))}${healthText(t)}${st?.timestamp ? ` ${agoText(st.timestamp, now)}` : ''}`,
        st?.err ? `"${trunc(st.err)}"` : '',
      ];
    }),
  );
}


const labelsText = (l: Record<string, string> | undefined) => Object.entries(l ?? {}).map(([k, v]) => `${k}=${v}`).join(', ');

const enumText = (names: Record<number, string>, v: number) => (names[v] ?? String(v)).toLowerCase().replace(/_/g, '-');

/** `parallelism 1, delay 0s, stop-first, on failure pause, monitor 5s, max failure ratio 0`. */
export function updateConfigText(u: UpdateConfig | undefined): string {
  if (!u) return '';
  return `parallelism ${u.parallelism || 'all'}, delay ${durationText(u.delayMs)}, ${enumText(UpdateConfig_Order, u.order)}, on failure ${enumText(UpdateConfig_FailureAction, u.failureAction)}, monitor ${durationText(u.monitorMs)}, max failure ratio ${Number(u.maxFailureRatio.toPrecision(6))}`;
}

export function updateStatusText(st: UpdateStatus | undefined): string {
  return st ? enumText(UpdateStatus_State, st.state) : '';
}

export function serviceDetails(s: Service, nets: readonly Network[] = []): string {
  const sp = s.spec;
  const c = sp?.task?.container;
  const r = sp?.task?.resources;
  const rp = sp?.task?.restart;
  const mode = sp?.mode;
  return kv([
    ['ID', s.id],
    ['Name', serviceName(s)],
    ['Labels', labelsText(sp?.annotations?.labels)],
    ['Mode', mode?.$case === 'global' ? 'Global' : `Replicated (replicas: ${mode?.$case === 'replicated' ? mode.replicated.replicas : 1})`],
    ['Spec version', String(s.specVersion)],
    ['Image', c?.image ?? ''],
    ['Entrypoint', (c?.command ?? []).join(' ')],
    ['Args', (c?.args ?? []).join(' ')],
    ['Env', (c?.env ?? []).join(', ')],
    ['Workdir', c?.dir ?? ''],
    ['User', c?.user ?? ''],
    ['Hostname', c?.hostname ?? ''],
    ['Container labels', labelsText(c?.labels)],
    ['Mounts', (c?.mounts ?? []).map((m) => `${['bind', 'volume', 'tmpfs'][m.type] ?? m.type} ${m.source || '-'} → ${m.target}${m.readOnly ? ' (ro)' : ''}`).join(', ')],
    ['Healthcheck', c?.healthcheck ? `${c.healthcheck.test.join(' ')} (interval ${durationText(c.healthcheck.intervalMs)}, timeout ${durationText(c.healthcheck.timeoutMs)}, retries ${c.healthcheck.retries})` : ''],
    ['Stop', `${c?.stopSignal || 'SIGTERM'}, grace period ${durationText(c?.stopGracePeriodMs)}, drain ${(c?.stopDrainPeriodMs ?? 0) < 0 ? 'none' : c?.stopDrainPeriodMs ? durationText(c.stopDrainPeriodMs) : '2s (default)'}`],
    ['Resources', r ? `limits cpu ${(r.limits?.nanoCpus ?? 0) / 1e9} mem ${r.limits?.memoryBytes ?? 0}; reservations cpu ${(r.reservations?.nanoCpus ?? 0) / 1e9} mem ${r.reservations?.memoryBytes ?? 0}${r.pidsLimit ? `; pids ${r.pidsLimit}` : ''}` : ''],
    ['Restart policy', rp ? `${['any', 'on-failure', 'none'][rp.condition] ?? rp.condition}, delay ${durationText(rp.delayMs)}, max attempts ${rp.maxAttempts || 'unlimited'}, window ${durationText(rp.windowMs)}` : ''],
    ['Constraints', (sp?.task?.placement?.constraints ?? []).join(', ')],
    ['Preferences', (sp?.task?.placement?.preferences ?? []).map((p) => `spread=${p.spreadDescriptor}`).join(', ')],
    ['Networks', serviceNetworksText((sp?.task?.networks ?? []).map((n) => n.target), s.endpoint?.virtualIps ?? [], nets)],
    ['Endpoint mode', sp?.endpoint?.mode === EndpointSpec_ResolutionMode.DNSRR ? 'dnsrr' : 'vip'],
    ['Ports', (sp?.endpoint?.ports ?? []).map(portText).join(', ')],
    ['Registry auth', c?.pullAuth ? `${c.pullAuth.username || '(token)'} (credentials kept by the manager)` : ''],
    ['Update config', updateConfigText(sp?.update)],
    ['Update status', updateStatusText(s.updateStatus)],
    ['Update started', s.updateStatus?.startedAt ? new Date(s.updateStatus.startedAt).toISOString() : ''],
    ['Update completed', s.updateStatus?.completedAt ? new Date(s.updateStatus.completedAt).toISOString() : ''],
    ['Update message', s.updateStatus?.message ?? ''],
    ...rolloutDetails(s),
    ['Previous image', s.previousSpec?.task?.container?.image ?? ''],
    ['Created', s.meta?.createdAt ? new Date(s.meta.createdAt).toISOString() : ''],
    ['Updated', s.meta?.updatedAt ? new Date(s.meta.updatedAt).toISOString() : ''],
  ]);
}

export function taskDetails(t: Task, nodes: readonly Node[], nets: readonly Network[] = []): string {
  return kv([
    ['ID', t.id],
    ['Name', taskName(t)],
    ['Service', `${t.serviceAnnotations?.name ?? ''} (${t.serviceId})`],
    ['Slot', t.slot ? String(t.slot) : ''],
    ['Node', t.nodeId ? `${nodeNameOf(nodes, t.nodeId)} (${t.nodeId})` : ''],
    ['Image', t.spec?.container?.image ?? ''],
    ['Desired state', taskStateText(t.desiredState)],
    ['State', taskStateText(t.status?.state)],
    ['Message', t.status?.message ?? ''],
    ['Error', t.status?.err ?? ''],
    ['Health', healthName(t)],
    ['Health output', t.status?.container?.healthOutput ?? ''],
    ['Container', t.status?.container?.containerId ?? ''],
    ['Networks', attachmentsText(t.networks, nets)],
    ['Exit code', t.status?.container && t.status.state > TaskState.TASK_STATE_RUNNING ? String(t.status.container.exitCode) : ''],
    ['Spec version', String(t.specVersion)],
    ['Created', t.meta?.createdAt ? new Date(t.meta.createdAt).toISOString() : ''],
    ['Updated', t.status?.timestamp ? new Date(t.status.timestamp).toISOString() : ''],
  ]);
}

/** Proto JSON; enum fields scripts test are always written out. */
export function serviceJson(s: Service): unknown {
  return ServiceMsg.toJSON(s);
}

export function taskJson(t: Task): unknown {
  const j = TaskMsg.toJSON(t) as Record<string, unknown>;
  j.desiredState = TaskState[t.desiredState];
  j.status = { ...((j.status) ?? {}), state: TaskState[t.status?.state ?? TaskState.TASK_STATE_NEW] };
  return j;
}

/** `web.1.abcdef123456@node1    | ` as Docker prefixes `service logs` lines. */
export function logPrefix(l: LogLine, task: Task | undefined, nodes: readonly Node[], o: { noTrunc?: boolean } = {}): string {
  const name = task ? `${task.serviceAnnotations?.name ?? ''}.${task.slot || task.nodeId}` : l.serviceId;
  return `${name}.${shortId(l.taskId, o.noTrunc)}@${nodeNameOf(nodes, l.nodeId)}`;
}
