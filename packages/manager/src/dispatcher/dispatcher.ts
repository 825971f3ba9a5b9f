/**
 * The dispatcher (after SwarmKit's manager/dispatcher): agent sessions, heartbeats, assignments
 * and task status on the leader. Followers answer a session with `redirect_addr` = the leader.
 *
 * - The node id comes only from the peer certificate; removed nodes are refused.
 * - Heartbeats are in-memory TTLs (never stored). The leader-only expiry controller marks a node
 *   DOWN ("heartbeat failure") once `period × grace` passes without one, and gives every node a
 *   fresh grace period when it starts (a new leader knows no heartbeats), longer while the fleet's
 *   sessions are still arriving (up to TAKEOVER_GRACES graces), and moves every deadline by the time
 *   lost when the manager itself did not run for longer than a period. A session stream that
 *   breaks marks its node DOWN ("session lost") sooner: when no new session comes within
 *   `disconnectGraceMs` (but not during a takeover: then its heartbeat deadline decides).
 * - A session is answered at once; the node's registration (READY) follows in the next batched
 *   node write, and is no write at all when nothing changed (a node back on a new leader).
 * - Node status and task status writes are coalesced per key and flushed as one transaction.
 * - Assignments: a COMPLETE set, then INCREMENTAL changes chained by applies_to / results_in
 *   (store versions).
 */
import * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, invalidArgument, isSwarmError, noLeaderYet } from '@swarmd/common/errors';
import { metrics } from '@swarmd/common/metrics';
import {
  type AssignmentChange,
  AssignmentChange_Action,
  AssignmentsMessage,
  AssignmentsMessage_Type,
  type AssignmentsRequest,
  type DispatcherServer,
  type HeartbeatRequest,
  type HeartbeatResponse,
  Node as NodeCodec,
  type Node,
  type NodeDescription,
  type NodeVolume,
  NodeAvailability,
  NodeRole,
  NodeState,
  type PublishLogsRequest,
  type PublishLogsResponse,
  type SessionMessage,
  type SessionRequest,
  Task,
  NetworkStateSet,
  type NetworkState,
  TaskState,
  type TaskStatus,
  TaskStatus as TaskStatusCodec,
  type UpdateTaskStatusRequest,
  type UpdateTaskStatusResponse,
  type NetworkStateAppliedRequest,
  type NetworkStateAppliedResponse,
  type WaitNetworkSyncRequest,
  type WaitNetworkSyncResponse,
  type WeightedPeer,
  type Cluster,
} from '@swarmd/proto';
import type { ReadTx, Tx } from '../store/memory-store.js';
import { cloneObject, makeObject } from '../store/kinds.js';
import type { EventMatcher, StoreEvent } from '../store/events.js';
import { newId } from '../ids.js';
import { authorize } from '../ca/grpc-auth.js';
import { CertRole, nodeRoleOfCertRole } from '../ca/roles.js';
import type { PeerIdentity } from '../ca/verify.js';
import type { Controller } from '../controller-kit/controller.js';
import { type ServiceDeps, clockOf, loggerOf, managersOf, peerHost, reply, streamError, verifyOptionsOf } from '../rpc-kit/index.js';
import { KeyedBatcher } from './batcher.js';
import { NodeEvents } from './node-events.js';
import { networkStateFor, networkStates } from './network-state.js';
import { NetworkSync } from './network-sync.js';
import { publishLogs } from './publish-logs.js';
import type { LogBroker } from '../logs/log-broker.js';
import type { SecretsKeyring } from '../secrets/index.js';

/**
 * The heartbeat period when the cluster spec sets none (0, the default: "auto"): short in a
 * small cluster, so that a host lost without a word (a cut link, a frozen VM: no connection
 * breaks) is DOWN within `period × grace` = 3 s, and longer as the cluster grows, so that the
 * leader never takes more than HEARTBEAT_BUDGET_PER_S heartbeats a second until the period
 * reaches its ceiling (as Nomad sizes its heartbeat TTL by a rate budget). 200/s is what the
 * scale run measured at 1,000 nodes on a 5 s period: 0.15 of a core for sessions, heartbeats,
 * status and Raft together.
 */
export const MIN_AUTO_HEARTBEAT_PERIOD_MS = 1000;
export const MAX_AUTO_HEARTBEAT_PERIOD_MS = 5000;
export const HEARTBEAT_BUDGET_PER_S = 200;
/** A new leader waits at least this long for its fleet's sessions (what a 5 s period gave). */
export const MIN_TAKEOVER_GRACE_MS = 15_000;

/** The automatic heartbeat period for a cluster of `nodes` nodes (pure). */
export function autoHeartbeatPeriod(nodes: number): number {
  const byBudget = Math.ceil((nodes * 1000) / HEARTBEAT_BUDGET_PER_S);
  return Math.min(MAX_AUTO_HEARTBEAT_PERIOD_MS, Math.max(MIN_AUTO_HEARTBEAT_PERIOD_MS, byBudget));
}

/** The longest manager problem text the store keeps (characters); longer reports are cut, ending in …. */
export const MAX_MANAGER_PROBLEM = 256;

/** Periods a node may miss before it is marked DOWN. */
export const DEFAULT_HEARTBEAT_GRACE = 3;
/** A new leader's takeover: how many heartbeat graces at most it waits for a reconnecting fleet. */
export const TAKEOVER_GRACES = 4;
export const DEFAULT_STATUS_BATCH_MS = 100;
/**
 * How long after the last status write an urgent one goes out (KeyedBatcher's urgent gap): a task
 * that now runs or has ended. Something waits for exactly these: a rollout's next step, a
 * `service create|scale` waiting for convergence, and every host's DNS and VIP endpoints, which
 * follow the store. The agent sends them with the same gap.
 */
export const URGENT_STATUS_GAP_MS = 10;
/**
 * Status writes within one window (DEFAULT_STATUS_BATCH_MS) past which urgency waits like any
 * status: a fleet whose tasks all start at once is written at the window's pace, not 100 times a
 * second (every write wakes the controllers and every session's network state check).
 */
export const MAX_STATUS_WRITES_PER_WINDOW = 5;

/** A status someone waits for: the task now runs or has ended (a change, not a repeat). */
function awaitedStatus(t: Readonly<Task>, st: TaskStatus): boolean {
  return st.state >= TaskState.TASK_STATE_RUNNING && st.state !== t.status?.state;
}
/** How long a status waits when no write went out in the last DEFAULT_STATUS_BATCH_MS (KeyedBatcher). */
export const DEFAULT_IDLE_STATUS_BATCH_MS = 5;
/** How long a node whose session stream broke has to open a new one before it is marked DOWN. */
export const DEFAULT_DISCONNECT_GRACE_MS = 2000;
const MAX_BATCH_ITEMS = 200;
/** The longest an agent may wait for every node to program a network state (WaitNetworkSync). */
const MAX_SYNC_WAIT_MS = 30_000;

/** A store version as the agents echo it (a results_in); malformed: INVALID_ARGUMENT. */
function storeVersion(v: string): number {
  const n = Number(v);
  if (!v || !Number.isSafeInteger(n) || n < 0) throw invalidArgument(`version ${JSON.stringify(v)} is not a store version (the results_in of an assignments message)`);
  return n;
}
const CONFLICT_RETRIES = 5;

export interface DispatcherDeps extends ServiceDeps {
  /** Period when the cluster spec has none (spec.dispatcher.heartbeatPeriodMs). Default: automatic (autoHeartbeatPeriod). */
  defaultHeartbeatPeriodMs?: number;
  /** A node is DOWN after period × grace without a heartbeat. Default 3. */
  heartbeatGrace?: number;
  /** A new leader gives its fleet at least this long to come back (ms). Default MIN_TAKEOVER_GRACE_MS. */
  minTakeoverGraceMs?: number;
  /**
   * A node whose session stream breaks (the connection lost, the agent gone) and that opens no new
   * session within this is marked DOWN ("session lost"), without waiting for its heartbeat to
   * run out. 0 turns it off (heartbeat expiry only). Default 2000 ms.
   */
  disconnectGraceMs?: number;
  /** Coalescing window for node and task status writes. Default 100 ms. */
  statusBatchMs?: number;
  /** Coalescing window for task status writes only (default: statusBatchMs). */
  taskBatchMs?: number;
  /** The window when no status write went out for a whole window (default 5 ms; KeyedBatcher idleDelayMs). */
  idleStatusBatchMs?: number;
  /** Where PublishLogs puts what agents send (the leader's log broker); without one, records are dropped. */
  logBroker?: LogBroker;
  /** Opens secrets' sealed data for the nodes whose tasks use them (default: none: not sent). */
  secrets?: SecretsKeyring;
}

export interface DispatcherSessionInfo {
  nodeId: string;
  sessionId: string;
  addr: string;
  /** When the node's heartbeat runs out (clock ms). */
  expiresAt: number | undefined;
}

export interface Dispatcher {
  /** The gRPC handlers: `server.addService(DispatcherService, dispatcher.server)`. */
  readonly server: DispatcherServer;
  /** Leader-only: the heartbeat expiry loop. */
  readonly controllers: Controller[];
  /** Marks DOWN every node whose heartbeat ran out at `now` (one expiry tick); returns their ids. */
  expireHeartbeats(now?: number): Promise<string[]>;
  /** Gives every node not DOWN a fresh grace period from `now` (what a new leader does). */
  resetHeartbeats(now?: number): void;
  /** Ends every session (leadership lost, shutdown): agents reconnect and get redirected. */
  closeSessions(reason?: string): void;
  sessions(): DispatcherSessionInfo[];
  /** Writes coalesced status updates now (tests, shutdown). */
  flush(): Promise<void>;
  /** Keys waiting for the next coalesced write. */
  pending(): { nodes: number; tasks: number };
}

interface NodeUpdate {
  description?: NodeDescription;
  /** Only used when the node object is created. */
  role?: NodeRole;
  state: NodeState;
  message: string;
  addr?: string;
}

interface TaskUpdate {
  nodeId: string;
  status: TaskStatus;
}

interface SessionState {
  id: string;
  nodeId: string;
  addr: string;
  ended: boolean;
  end(err?: unknown): void;
  /** Streams tied to this session (assignments): ended with it. */
  onEnd: Set<(err?: unknown) => void>;
}

/** The period the cluster spec sets, else `fallback`, else the automatic one for `nodes` nodes. */
export function heartbeatPeriodOf(cluster: Readonly<Cluster> | undefined, nodes: number, fallback?: number): number {
  const p = cluster?.spec?.dispatcher?.heartbeatPeriodMs ?? 0;
  if (p > 0) return p;
  return fallback && fallback > 0 ? fallback : autoHeartbeatPeriod(nodes);
}

/** Whether a node can be in the manager list the sessions carry (managersOf). */
function isManagerNode(n: Readonly<Node> | undefined): boolean {
  return n?.role === NodeRole.NODE_ROLE_MANAGER || !!n?.managerStatus;
}

/**
 * Whether a node event may change what the nodes' network states hold (networkStates: node
 * addresses, ingress attachments). Computed once per event, however many streams ask.
 */
const networkRelevance = new WeakMap<StoreEvent, boolean>();
function nodeMayChangeNetworks(e: StoreEvent): boolean {
  if (e.type === 'commit' || e.kind !== 'node') return false;
  let r = networkRelevance.get(e);
  if (r !== undefined) return r;
  r = e.type !== 'update' || e.object.status?.addr !== e.old?.status?.addr || !sameAttachments(e.object, e.old);
  networkRelevance.set(e, r);
  return r;
}

function sameAttachments(a: Readonly<Node>, b: Readonly<Node> | undefined): boolean {
  if (!b || a.attachments.length !== b.attachments.length) return false;
  return a.attachments.every((x, i) => x.networkId === b.attachments[i].networkId && x.addresses.join() === b.attachments[i].addresses.join());
}

/** Whether the agent should hold the task: assigned to it, and not finished on both sides. */
export function isAssignedTask(t: Readonly<Task>, nodeId: string): boolean {
  const state = t.status?.state ?? TaskState.TASK_STATE_NEW;
  return t.nodeId === nodeId && state >= TaskState.TASK_STATE_ASSIGNED && (state <= TaskState.TASK_STATE_RUNNING || t.desiredState <= TaskState.TASK_STATE_RUNNING);
}

/**
 * The secrets (with their data opened) and configs that `tasks` use, as assignment changes keyed
 * `secret:ID` / `config:ID`: a node gets those of its own tasks and no other.
 */
export function dataAssignments(tx: ReadTx, tasks: readonly Readonly<Task>[], keyring: SecretsKeyring | undefined, onError: (id: string, err: unknown) => void): Map<string, AssignmentChange> {
  const out = new Map<string, AssignmentChange>();
  for (const t of tasks) {
    const c = t.spec?.container;
    for (const r of c?.secrets ?? []) {
      const k = `secret:${r.secretId}`;
      if (out.has(k)) continue;
      const sec = tx.get('secret', r.secretId);
      if (!sec || !keyring) continue;
      try {
        const data = keyring.open(sec.spec?.data ?? new Uint8Array());
        out.set(k, { assignment: { item: { $case: 'secret', secret: { ...cloneObject('secret', sec), spec: { annotations: structuredClone(sec.spec?.annotations), data } } } }, action: AssignmentChange_Action.UPDATE });
      } catch (err) {
        onError(r.secretId, err);
      }
    }
    for (const r of c?.configs ?? []) {
      const k = `config:${r.configId}`;
      const cfg = tx.get('config', r.configId);
      if (out.has(k) || !cfg) continue;
      out.set(k, { assignment: { item: { $case: 'config', config: cloneObject('config', cfg) } }, action: AssignmentChange_Action.UPDATE });
    }
  }
  return out;
}

/** A REMOVE change for a secret or config the node no longer needs (the id alone). */
function dataRemoval(key: string): AssignmentChange {
  const id = key.slice(key.indexOf(':') + 1);
  const item: AssignmentChange['assignment'] = key.startsWith('secret:')
    ? { item: { $case: 'secret', secret: makeObject('secret', { id }) } }
    : { item: { $case: 'config', config: makeObject('config', { id }) } };
  return { assignment: item, action: AssignmentChange_Action.REMOVE };
}

/** The task as the agent needs to see it: without the status it reports itself, nor meta. */
function agentView(t: Readonly<Task>): Buffer {
  return Buffer.from(Task.encode({ ...(t as Task), status: undefined, meta: undefined }).finish());
}

async function retryConflicts(fn: () => Promise<void>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      // Another write raced this one (a changed version, a node removed or created meanwhile):
      // the flush re-reads and skips what is gone.
      const raced = isSwarmError(err, ErrorCode.CONFLICT) || isSwarmError(err, ErrorCode.NOT_FOUND) || isSwarmError(err, ErrorCode.ALREADY_EXISTS);
      if (!raced || i >= CONFLICT_RETRIES) throw err;
    }
  }
}

export function createDispatcherService(deps: DispatcherDeps): Dispatcher {
  const store = deps.store;
  const clock = clockOf(deps);
  const log = loggerOf(deps, 'manager/dispatcher');
  /** Every network's state, computed once per store version and shared by all nodes' streams. */
  let shared: { version: number; states: Map<string, NetworkState> } | undefined;
  const networkStatesAt = (tx: ReadTx): Map<string, NetworkState> => {
    if (shared?.version !== tx.version()) shared = { version: tx.version(), states: networkStates(tx) };
    return shared.states;
  };
  const grace = deps.heartbeatGrace ?? DEFAULT_HEARTBEAT_GRACE;
  const verify = verifyOptionsOf(store, clock);
  const sessions = new Map<string, SessionState>();
  /** node id → when its heartbeat runs out. */
  const heartbeats = new Map<string, number>();
  /** node id → its session's last heartbeat and the period it was then given (the gap metric). */
  const lastBeats = new Map<string, { at: number; periodMs: number }>();
  /**
   * After resetHeartbeats (a new leader): the nodes not back yet, when the takeover began, and
   * when the last session opened. A fleet reconnects at the rate the leader can take TLS
   * handshakes and sessions, so a thousand nodes can need longer than one grace: while sessions
   * keep arriving, a node still on its takeover deadline is given more time (at most
   * TAKEOVER_GRACES graces in all); once none has arrived for a grace, the rest are DOWN.
   */
  const takeover = { awaiting: new Set<string>(), startedAt: 0, lastSessionAt: 0 };
  /** Which network state each node has programmed (the drain of a task waits on it). */
  const networkSync = new NetworkSync();
  const batchMs = deps.statusBatchMs ?? DEFAULT_STATUS_BATCH_MS;
  const disconnectGrace = deps.disconnectGraceMs ?? DEFAULT_DISCONNECT_GRACE_MS;
  /** The store's events routed to the sessions and assignments streams by node id. */
  const nodeEvents = new NodeEvents(store);
  /** node id → the pending check, after its session stream broke, that it came back. */
  const lostChecks = new Map<string, AbortController>();

  // The nodes the leader tracks (every node not DOWN) size the automatic period.
  const period = (nodes = heartbeats.size): number => heartbeatPeriodOf(store.view((tx) => tx.find('cluster')[0]), nodes, deps.defaultHeartbeatPeriodMs);
  const minTakeoverGrace = deps.minTakeoverGraceMs ?? MIN_TAKEOVER_GRACE_MS;
  /** How long a new leader gives its fleet to come back: a grace, and no less than minTakeoverGrace. */
  const takeoverGrace = (nodes?: number): number => Math.max(period(nodes) * grace, minTakeoverGrace);
  // Sessions ask for the list on every node event: compute it once per store version.
  let managersCache: { version: number; list: WeightedPeer[] } | undefined;
  const managers = (): WeightedPeer[] => {
    if (deps.managers) return deps.managers();
    const v = store.version();
    if (managersCache?.version !== v) managersCache = { version: v, list: store.view(managersOf) };
    return managersCache.list;
  };

  const idleBatchMs = Math.min(deps.idleStatusBatchMs ?? DEFAULT_IDLE_STATUS_BATCH_MS, batchMs);
  const nodeWrites = new KeyedBatcher<string, NodeUpdate>({
    delayMs: batchMs,
    idleDelayMs: idleBatchMs,
    maxItems: MAX_BATCH_ITEMS,
    merge: (older, newer) => ({ ...newer, description: newer.description ?? older.description, role: newer.role ?? older.role, addr: newer.addr ?? older.addr }),
    flush: (items) => retryConflicts(() => store.update((tx) => writeNodes(tx, items))),
  });
  const taskWrites = new KeyedBatcher<string, TaskUpdate>({
    delayMs: deps.taskBatchMs ?? batchMs,
    idleDelayMs: Math.min(idleBatchMs, deps.taskBatchMs ?? batchMs),
    urgentGapMs: Math.min(URGENT_STATUS_GAP_MS, deps.taskBatchMs ?? batchMs),
    maxFlushesPerDelay: MAX_STATUS_WRITES_PER_WINDOW,
    maxItems: MAX_BATCH_ITEMS,
    // Last status wins, but never a step back.
    merge: (older, newer) => ((newer.status.state ?? 0) >= (older.status.state ?? 0) ? newer : older),
    flush: (items) => retryConflicts(() => store.update((tx) => writeTasks(tx, items))),
  });

  function writeNodes(tx: Tx, items: ReadonlyMap<string, NodeUpdate>): void {
    for (const [id, u] of items) {
      const cur = tx.get('node', id);
      if (!cur && u.state !== NodeState.NODE_STATE_READY) continue;
      if (tx.find('cluster')[0]?.removedNodeIds.includes(id)) continue;
      const n: Node = cur
        ? cloneObject('node', cur)
        : makeObject('node', {
            id,
            role: u.role ?? 0,
            spec: { annotations: { name: '', labels: {} }, desiredRole: u.role ?? 0, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
          });
      // A session's description carries no volumes: the node's heartbeats report those (below).
      if (u.description) n.description = { ...u.description, volumes: cur?.description?.volumes ?? u.description.volumes };
      n.status = { state: u.state, message: u.message, addr: u.addr ?? n.status?.addr ?? '' };
      if (!cur) tx.create('node', n);
      // A node back on a new leader usually finds itself READY as it was: no write for it.
      else if (!Buffer.from(NodeCodec.encode(cur).finish()).equals(Buffer.from(NodeCodec.encode(n).finish()))) tx.update('node', n);
    }
  }

  function writeTasks(tx: Tx, items: ReadonlyMap<string, TaskUpdate>): void {
    for (const [id, u] of items) {
      const cur = tx.get('task', id);
      if (!cur || cur.nodeId !== u.nodeId) continue;
      const curState = cur.status?.state ?? TaskState.TASK_STATE_NEW;
      if (u.status.state < curState) continue; // observed state only moves forward
      if (cur.status && Buffer.from(TaskStatusCodec.encode(cur.status).finish()).equals(Buffer.from(TaskStatusCodec.encode(u.status).finish()))) continue;
      // A shallow copy is enough: the store copies what it is given.
      tx.update('task', { ...cur, status: u.status });
    }
  }

  async function identify(call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerUnaryCall<unknown, unknown>): Promise<PeerIdentity> {
    return authorize(call, [CertRole.WORKER, CertRole.MANAGER], verify);
  }

  function notLeader(): SwarmError {
    const leader = deps.leaderAddr();
    return new SwarmError(ErrorCode.UNAVAILABLE, `this manager is not the leader${leader ? ` (the leader is ${leader})` : ''}: open a session there`, {
      details: { leaderAddr: leader },
    });
  }

  function currentSession(nodeId: string, sessionId: string): SessionState {
    if (!deps.isLeader()) throw notLeader();
    const s = sessions.get(nodeId);
    if (!s || s.id !== sessionId || !sessionId) {
      throw new SwarmError(ErrorCode.NOT_FOUND, `session ${sessionId || '(none)'} is not the current session of node ${nodeId}: open a new session`);
    }
    return s;
  }

  // ---- Session --------------------------------------------------------------------------------

  async function session(call: grpc.ServerWritableStream<SessionRequest, SessionMessage>): Promise<void> {
    const id = await identify(call);
    if (!deps.isLeader()) {
      const leader = deps.leaderAddr();
      if (!leader) throw noLeaderYet('this manager is not the leader and no leader is known yet: retry another manager');
      call.write({ sessionId: '', node: undefined, managers: managers(), redirectAddr: leader, networks: [] });
      call.end();
      return;
    }
    const nodeId = id.nodeId;
    const addr = peerHost(call);
    sessions.get(nodeId)?.end(new SwarmError(ErrorCode.UNAVAILABLE, `session replaced by a newer session of node ${nodeId}`));
    lostChecks.get(nodeId)?.abort();
    lostChecks.delete(nodeId);
    const state: SessionState = { id: newId(), nodeId, addr, ended: false, onEnd: new Set(), end: () => undefined };
    sessions.set(nodeId, state);
    lastBeats.delete(nodeId); // a new session's first heartbeat is no gap
    metrics.dispatcherSessions.inc();
    heartbeats.set(nodeId, clock.now() + period() * grace);
    takeover.awaiting.delete(nodeId);
    takeover.lastSessionAt = clock.now();
    let closeWatch = (): void => undefined;
    state.end = (err?: unknown) => {
      if (state.ended) return;
      state.ended = true;
      metrics.dispatcherSessions.dec();
      closeWatch();
      if (sessions.get(nodeId) === state) sessions.delete(nodeId);
      for (const f of state.onEnd) f(err);
      if (err === undefined) call.end();
      else call.emit('error', streamError(err));
    };
    // The peer went away (its process died, its connection broke): unless it is back soon, DOWN.
    const lost = (): void => {
      if (state.ended) return;
      state.end();
      sessionLost(nodeId);
    };
    call.on('cancelled', lost);
    call.on('error', lost);
    if (call.cancelled) return state.end(); // gone while we checked its certificate

    // The node's registration (READY, its description and address) goes into the next batched
    // node write, and the session is answered at once, as SwarmKit's dispatcher does: after an
    // election a whole fleet reconnects, and a session silent until its write commits outlasts
    // the agent's wait for a first message once the write queue is long. The session ends if
    // the write fails.
    const desc = call.request.description;
    nodeWrites
      .add(nodeId, {
        ...(desc ? { description: desc } : {}),
        role: nodeRoleOfCertRole(id.role)!,
        state: NodeState.NODE_STATE_READY,
        message: '',
        addr,
      })
      .catch((err: unknown) => {
        log.warn('registering the node failed', { nodeId, err });
        state.end(err);
      });
    log.info('session opened', { nodeId, addr, sessionId: state.id });

    // This node's changes, the managers' (the list it carries) and the cluster's.
    const mine: EventMatcher = (e) => e.type !== 'commit' && e.kind === 'node' && (e.object.id === nodeId || isManagerNode(e.object) || isManagerNode(e.old));
    const w = nodeEvents.viewAndWatch(nodeId, (tx) => ({ node: tx.get('node', nodeId), cluster: tx.find('cluster')[0] }), (e) => mine(e) || (e.type !== 'commit' && e.kind === 'cluster'));
    closeWatch = () => w.close();
    let lastKey = '';
    const send = (node: Readonly<Node> | undefined): void => {
      const mgrs = managers();
      const key = JSON.stringify([node?.spec, node?.role, mgrs]);
      if (key === lastKey) return;
      lastKey = key;
      call.write({ sessionId: state.id, node: node ? cloneObject('node', node) : undefined, managers: mgrs, redirectAddr: '', networks: [] });
    };
    if (w.snapshot.cluster?.removedNodeIds.includes(nodeId)) return state.end(removedError(nodeId));
    send(w.snapshot.node);
    try {
      let node = w.snapshot.node;
      for await (const e of w.events) {
        if (state.ended) break;
        if (e.type === 'commit') continue;
        if (e.kind === 'cluster') {
          if (e.object.removedNodeIds.includes(nodeId)) return state.end(removedError(nodeId));
          continue;
        }
        if (e.kind === 'node' && e.object.id === nodeId) {
          if (e.type === 'delete') return state.end(removedError(nodeId));
          node = e.object;
        }
        send(node);
      }
    } catch (err) {
      state.end(err);
    }
  }

  function removedError(nodeId: string): SwarmError {
    return new SwarmError(ErrorCode.UNAUTHENTICATED, `node ${nodeId} was removed from the cluster`);
  }

  // ---- Heartbeat ------------------------------------------------------------------------------

  async function heartbeat(call: grpc.ServerUnaryCall<HeartbeatRequest, HeartbeatResponse>): Promise<HeartbeatResponse> {
    const id = await identify(call);
    currentSession(id.nodeId, call.request.sessionId);
    const p = period();
    const now = clock.now();
    heartbeats.set(id.nodeId, now + p * grace);
    metrics.dispatcherHeartbeats.inc();
    const last = lastBeats.get(id.nodeId);
    if (last) metrics.dispatcherHeartbeatGapPeriods.observe((now - last.at) / last.periodMs);
    lastBeats.set(id.nodeId, { at: now, periodMs: p });
    if (call.request.volumesSet) await recordVolumes(id.nodeId, call.request.volumes);
    if (call.request.managerProblemSet) await recordManagerProblem(id.nodeId, call.request.managerProblem);
    return { periodMs: p };
  }

  /**
   * What is wrong with a manager, as its own host reports it (sent once per session, then when it
   * changes): a write only when it differs from the store's, and only for a node that is a manager.
   */
  async function recordManagerProblem(nodeId: string, reported: string): Promise<void> {
    // A node's own words go into the replicated store: bounded, as any text a node sends.
    const problem = reported.length > MAX_MANAGER_PROBLEM ? `${reported.slice(0, MAX_MANAGER_PROBLEM - 1)}…` : reported;
    const differs = (n: Readonly<Node> | undefined): boolean => !!n?.managerStatus && n.managerStatus.problem !== problem;
    if (!differs(store.view((tx) => tx.get('node', nodeId)))) return;
    if (problem) log.warn(`manager problem: ${problem}`, { nodeId });
    else log.info('manager problem cleared', { nodeId });
    await retryConflicts(() =>
      store.update((tx) => {
        const cur = tx.get('node', nodeId);
        if (!differs(cur)) return;
        const n = cloneObject('node', cur!);
        n.managerStatus = { ...cur!.managerStatus!, problem };
        tx.update('node', n);
      }),
    );
  }

  /** The node's named volumes, as its agent reported them (only sent when they changed). */
  async function recordVolumes(nodeId: string, volumes: NodeVolume[]): Promise<void> {
    const list = volumes.map((v) => ({ name: v.name, driver: v.driver || 'local' })).sort((a, b) => a.name.localeCompare(b.name));
    await retryConflicts(() =>
      store.update((tx) => {
        const cur = tx.get('node', nodeId);
        if (!cur?.description || JSON.stringify(cur.description.volumes) === JSON.stringify(list)) return;
        const n = cloneObject('node', cur);
        n.description = { ...cur.description, volumes: list };
        tx.update('node', n);
      }),
    );
  }

  /** Marks a node DOWN (one coalesced write) unless it is DOWN or gone; forgets its heartbeat. */
  function markDown(nodeId: string, message: string): Promise<void> {
    heartbeats.delete(nodeId);
    lastBeats.delete(nodeId);
    const n = store.view((tx) => tx.get('node', nodeId));
    if (!n || n.status?.state === NodeState.NODE_STATE_DOWN) return Promise.resolve();
    log.warn(`node down: ${message}`, { nodeId });
    return nodeWrites.add(nodeId, { state: NodeState.NODE_STATE_DOWN, message });
  }

  async function expireHeartbeats(now = clock.now()): Promise<string[]> {
    const expired: string[] = [];
    const storm = inTakeover(now);
    const window = takeoverGrace();
    for (const [nodeId, at] of heartbeats) {
      if (at > now) continue;
      if (storm && takeover.awaiting.has(nodeId)) heartbeats.set(nodeId, takeover.lastSessionAt + window);
      else expired.push(nodeId);
    }
    if (expired.length === 0) return expired;
    for (const nodeId of expired) takeover.awaiting.delete(nodeId);
    const writes: Promise<void>[] = [];
    for (const nodeId of expired) {
      sessions.get(nodeId)?.end(new SwarmError(ErrorCode.UNAVAILABLE, `node ${nodeId}: heartbeat failure (no heartbeat for ${period() * grace} ms)`));
      writes.push(markDown(nodeId, 'heartbeat failure'));
    }
    await Promise.all(writes);
    return expired;
  }

  /** Sessions still arriving within a new leader's takeover: the ones not back yet wait for their turn. */
  function inTakeover(now: number): boolean {
    const window = takeoverGrace();
    return takeover.awaiting.size > 0 && now - takeover.lastSessionAt < window && now < takeover.startedAt + window * TAKEOVER_GRACES;
  }

  /**
   * The session stream of `nodeId` broke: if the node opens no new session within the disconnect
   * grace, it is DOWN ("session lost"). Heartbeat expiry still catches a node that hangs silently.
   */
  function sessionLost(nodeId: string): void {
    if (disconnectGrace <= 0 || !deps.isLeader()) return;
    lostChecks.get(nodeId)?.abort();
    const ac = new AbortController();
    lostChecks.set(nodeId, ac);
    clock.sleep(disconnectGrace, ac.signal).then(
      async () => {
        if (lostChecks.get(nodeId) !== ac) return;
        lostChecks.delete(nodeId);
        if (!deps.isLeader() || sessions.has(nodeId)) return;
        // While the fleet reconnects to a new leader, a broken session is left to the takeover's
        // heartbeat deadlines: DOWN marks now would move tasks and lengthen the write queue that
        // the reconnecting sessions wait behind.
        if (inTakeover(clock.now())) {
          takeover.awaiting.add(nodeId);
          return;
        }
        await markDown(nodeId, `session lost (no new session within ${disconnectGrace} ms of the connection breaking)`).catch((err: unknown) => log.warn('marking a node down failed', { nodeId, err }));
      },
      () => undefined, // aborted: a new session, or leadership lost
    );
  }

  function cancelLostChecks(): void {
    for (const ac of lostChecks.values()) ac.abort();
    lostChecks.clear();
  }

  function resetHeartbeats(now = clock.now()): void {
    heartbeats.clear();
    const nodes = store.view((tx) => tx.find('node')).filter((n) => n.status?.state !== NodeState.NODE_STATE_DOWN);
    const deadline = now + takeoverGrace(nodes.length);
    takeover.awaiting.clear();
    takeover.startedAt = now;
    takeover.lastSessionAt = now;
    for (const n of nodes) {
      heartbeats.set(n.id, deadline);
      if (!sessions.has(n.id)) takeover.awaiting.add(n.id);
    }
  }

  /**
   * The expiry loop woke `lateMs` after it should have: this process did not run meanwhile (a long
   * GC, SIGSTOP, a frozen VM, a profiler), so it heard no heartbeat either, and those the nodes
   * sent wait unread in its sockets. Past one heartbeat period, every deadline moves by the
   * time lost rather than the whole fleet being marked DOWN at once on waking.
   */
  function stalled(lateMs: number): void {
    if (lateMs <= period()) return;
    for (const [nodeId, at] of heartbeats) heartbeats.set(nodeId, at + lateMs);
    takeover.startedAt += lateMs;
    takeover.lastSessionAt += lateMs;
    log.warn('this manager did not run for a while: heartbeat deadlines moved by the time lost', { lateMs, nodes: heartbeats.size });
  }

  function closeSessions(reason = 'this manager is no longer the leader'): void {
    for (const s of [...sessions.values()]) s.end(new SwarmError(ErrorCode.UNAVAILABLE, reason));
  }

  const expiryController: Controller = {
    name: 'dispatcher-heartbeats',
    async run(ctx, signal) {
      const c = ctx.clock ?? clock;
      resetHeartbeats(c.now());
      let last = c.now();
      try {
        while (!signal.aborted) {
          const nap = Math.max(50, Math.floor(period() / 4));
          await c.sleep(nap, signal).catch(() => undefined);
          if (signal.aborted) break;
          const now = c.now();
          stalled(now - last - nap);
          await expireHeartbeats(now).catch((err: unknown) => log.warn('marking nodes down failed', { err }));
          last = c.now();
        }
      } finally {
        closeSessions();
        cancelLostChecks();
        heartbeats.clear();
        lastBeats.clear();
      }
    },
  };

  // ---- Assignments ----------------------------------------------------------------------------

  async function assignments(call: grpc.ServerWritableStream<AssignmentsRequest, AssignmentsMessage>): Promise<void> {
    const id = await identify(call);
    const s = currentSession(id.nodeId, call.request.sessionId);
    const nodeId = id.nodeId;
    const assigned = (t: Readonly<Task>): boolean => isAssignedTask(t, nodeId);
    const dataOf = (tx: ReadTx, tasks: readonly Readonly<Task>[]) =>
      dataAssignments(tx, tasks, deps.secrets, nodeId && deps.secrets ? (secretId, err) => log.warn('a secret could not be opened for a node', { nodeId, secretId, err }) : () => undefined);
    const w = nodeEvents.viewAndWatch(
      nodeId,
      (tx) => {
        const tasks = tx.find('task', { nodeId }).filter(assigned);
        return { tasks, version: tx.version(), networks: networkStateFor(tx, nodeId, assigned, networkStatesAt(tx)), data: dataOf(tx, tasks) };
      },
      // Its node's tasks (routed), tasks on networks, networks, services, node changes that move an
      // address or an attachment, commits. Another worker's status change is not among them.
      (e) => e.type === 'commit' || e.kind === 'task' || e.kind === 'network' || e.kind === 'service' || nodeMayChangeNetworks(e),
    );
    let ended = false;
    // Counted from now: the COMPLETE set below is its first send.
    const syncToken = networkSync.open(nodeId, w.snapshot.version);
    const end = (err?: unknown) => {
      if (ended) return;
      ended = true;
      w.close();
      networkSync.close(nodeId, syncToken);
      s.onEnd.delete(end);
      if (err === undefined) call.end();
      else call.emit('error', streamError(err));
    };
    s.onEnd.add(end);
    call.on('cancelled', () => end());
    call.on('error', () => end());
    if (call.cancelled) return end();

    const held = new Map<string, Buffer>();
    let last = String(w.snapshot.version);
    // Secrets and configs first: the agent has them when it prepares the tasks that use them.
    const changes: AssignmentChange[] = [...w.snapshot.data.values()];
    let heldData = new Set(w.snapshot.data.keys());
    for (const t of w.snapshot.tasks) {
      held.set(t.id, agentView(t));
      changes.push({ assignment: { item: { $case: 'task', task: t } }, action: AssignmentChange_Action.UPDATE });
    }
    let sentNetworks = NetworkStateSet.encode(w.snapshot.networks).finish();
    // Store objects go out as they are (frozen; the serializer only reads them): a fleet coming back
    // to a new leader gets tens of thousands of tasks in its COMPLETE sets.
    call.write({ type: AssignmentsMessage_Type.COMPLETE, appliesTo: '', resultsIn: last, changes, networkState: w.snapshot.networks });
    const pending = new Map<string, AssignmentChange>();
    // Whether an event since the last commit may change the node's network state.
    let networksTouched = false;
    try {
      for await (const e of w.events) {
        if (ended) break;
        if (e.type === 'commit') {
          let networkState: NetworkStateSet | undefined;
          if (networksTouched) {
            networksTouched = false;
            const now = store.view((tx) => networkStateFor(tx, nodeId, assigned, networkStatesAt(tx)));
            const bytes = NetworkStateSet.encode(now).finish();
            if (!Buffer.from(bytes).equals(Buffer.from(sentNetworks))) {
              networkState = now;
              sentNetworks = bytes;
            }
          }
          networkSync.processed(nodeId, syncToken, e.version, !!networkState);
          if (pending.size === 0 && !networkState) continue;
          const next = String(e.version);
          const data = pending.size ? store.view((tx) => dataOf(tx, tx.find('task', { nodeId }).filter(assigned))) : undefined;
          const added = data ? [...data].filter(([k]) => !heldData.has(k)).map(([, c]) => c) : [];
          const dropped = data ? [...heldData].filter((k) => !data.has(k)).map(dataRemoval) : [];
          if (data) heldData = new Set(data.keys());
          call.write({ type: AssignmentsMessage_Type.INCREMENTAL, appliesTo: last, resultsIn: next, changes: [...added, ...pending.values(), ...dropped], networkState });
          last = next;
          pending.clear();
          continue;
        }
        if (e.kind === 'network' || e.kind === 'service' || e.kind === 'node') {
          // A node's ingress address, a service joining the mesh, a network's VNI: any may change it.
          networksTouched = true;
          continue;
        }
        if (e.kind !== 'task') continue;
        const t = e.object;
        if (t.networks.length > 0 || e.old?.networks.length) networksTouched = true;
        const had = held.get(t.id);
        if (e.type !== 'delete' && isAssignedTask(t, nodeId)) {
          const view = agentView(t);
          if (had && had.equals(view)) continue;
          held.set(t.id, view);
          pending.set(t.id, { assignment: { item: { $case: 'task', task: t } }, action: AssignmentChange_Action.UPDATE });
        } else if (had) {
          held.delete(t.id);
          pending.set(t.id, { assignment: { item: { $case: 'task', task: t } }, action: AssignmentChange_Action.REMOVE });
        }
      }
    } catch (err) {
      end(err);
    }
  }

  // ---- Network state acknowledgements ---------------------------------------------------------

  async function networkStateApplied(call: grpc.ServerUnaryCall<NetworkStateAppliedRequest, NetworkStateAppliedResponse>): Promise<NetworkStateAppliedResponse> {
    const id = await identify(call);
    currentSession(id.nodeId, call.request.sessionId);
    networkSync.acked(id.nodeId, storeVersion(call.request.version));
    return {};
  }

  async function waitNetworkSync(call: grpc.ServerUnaryCall<WaitNetworkSyncRequest, WaitNetworkSyncResponse>): Promise<WaitNetworkSyncResponse> {
    const id = await identify(call);
    currentSession(id.nodeId, call.request.sessionId);
    const version = storeVersion(call.request.version);
    const timeoutMs = Math.min(Math.max(Number(call.request.timeoutMs), 0), MAX_SYNC_WAIT_MS);
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    const lagging = await networkSync.wait(version, timeoutMs, clock, ac.signal);
    if (lagging.length) log.warn('nodes still program an older network state', { nodeId: id.nodeId, version, lagging, timeoutMs });
    return { synced: lagging.length === 0, laggingNodes: lagging };
  }

  // ---- UpdateTaskStatus -----------------------------------------------------------------------

  async function updateTaskStatus(call: grpc.ServerUnaryCall<UpdateTaskStatusRequest, UpdateTaskStatusResponse>): Promise<UpdateTaskStatusResponse> {
    const id = await identify(call);
    currentSession(id.nodeId, call.request.sessionId);
    const nodeId = id.nodeId;
    const updates = call.request.updates;
    for (const u of updates) {
      if (!u.taskId) throw invalidArgument('task status update without a task_id');
      if (!u.status) throw invalidArgument(`task status update of ${u.taskId} without a status`);
    }
    const valid = store.view((tx) =>
      updates.flatMap((u) => {
        const t = tx.get('task', u.taskId);
        if (!t) return []; // gone (removed by the orchestrator): nothing to report to
        if (t.nodeId !== nodeId) {
          throw new SwarmError(ErrorCode.PERMISSION_DENIED, `task ${u.taskId} is not assigned to node ${nodeId}: it may not report its status`);
        }
        return [{ u, urgent: awaitedStatus(t, u.status!) }];
      }),
    );
    await Promise.all(valid.map(({ u, urgent }) => taskWrites.add(u.taskId, { nodeId, status: u.status! }, { urgent })));
    return {};
  }

  const server: DispatcherServer = {
    session: (call: grpc.ServerWritableStream<SessionRequest, SessionMessage>) => {
      session(call).catch((err: unknown) => {
        if (!isSwarmError(err)) log.warn('session failed', { err });
        call.emit('error', streamError(err));
      });
    },
    heartbeat: (call, cb) => reply(heartbeat(call), cb, log, 'Heartbeat'),
    assignments: (call: grpc.ServerWritableStream<AssignmentsRequest, AssignmentsMessage>) => {
      assignments(call).catch((err: unknown) => call.emit('error', streamError(err)));
    },
    updateTaskStatus: (call, cb) => reply(updateTaskStatus(call), cb, log, 'UpdateTaskStatus'),
    networkStateApplied: (call, cb) => reply(networkStateApplied(call), cb, log, 'NetworkStateApplied'),
    waitNetworkSync: (call, cb) => reply(waitNetworkSync(call), cb, log, 'WaitNetworkSync'),
    publishLogs: (call: grpc.ServerReadableStream<PublishLogsRequest, PublishLogsResponse>, cb: grpc.sendUnaryData<PublishLogsResponse>) =>
      reply(
        publishLogs(call, {
          store,
          sink: deps.logBroker,
          log,
          identify: (c) => identify(c as unknown as grpc.ServerUnaryCall<unknown, unknown>),
          assertLeader: () => {
            if (!deps.isLeader()) throw notLeader();
          },
        }),
        cb,
        log,
        'PublishLogs',
      ),
  };

  return {
    server,
    controllers: [expiryController],
    expireHeartbeats,
    resetHeartbeats,
    closeSessions,
    sessions: () => [...sessions.values()].map((s) => ({ nodeId: s.nodeId, sessionId: s.id, addr: s.addr, expiresAt: heartbeats.get(s.nodeId) })),
    flush: async () => {
      await nodeWrites.flushNow();
      await taskWrites.flushNow();
    },
    pending: () => ({ nodes: nodeWrites.size, tasks: taskWrites.size }),
  };
}
