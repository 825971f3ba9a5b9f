/**
 * A linearizability checker after Wing & Gong, with Lowe's memoization, as Porcupine does it:
 *
 *  - P-compositionality: a history of a key-value store is linearizable iff the sub-history of
 *    every key is, so each key is checked on its own (the model says how to partition).
 *  - A depth-first search over the history's call/return events, kept in a doubly linked list:
 *    at a call, try to linearize that operation now (the model must accept its output in the
 *    current state); at a return, the operation returning must already be linearized, so
 *    backtrack. A cache of (set of linearized operations, model state) prunes every
 *    configuration that was explored before.
 *  - An operation that never returned (a crashed client, a timeout) has `ret = Infinity`: it may
 *    take effect at any point after its call, or never (linearizing it after everything else is
 *    indistinguishable from it never happening). A read that never returned observed nothing
 *    and is dropped.
 *
 * Time is any number on one totally ordered clock (the simulation uses its event counter).
 * Operation a happens before b iff a.ret < b.call; ties count as concurrent.
 */

export interface Operation<I, O> {
  clientId: number;
  input: I;
  /** The observed output; undefined for an operation that never returned. */
  output: O | undefined;
  call: number;
  /** Infinity when the operation never returned. */
  ret: number;
}

export interface Model<S, I, O> {
  /** Splits a history into independent sub-histories (e.g. one per key). */
  partition(ops: readonly Operation<I, O>[]): Operation<I, O>[][];
  init(): S;
  /**
   * Applies input to state. Returns the new state when `output` is a legal answer in `state`
   * (output undefined: the operation never returned, any answer is legal), else undefined.
   */
  step(state: S, input: I, output: O | undefined): S | undefined;
  /** A string that identifies the state, for the cache. */
  stateKey(state: S): string;
  describe?(op: Operation<I, O>): string;
}

export type CheckOutcome = 'ok' | 'illegal' | 'unknown';

export interface PartitionResult<I, O> {
  outcome: CheckOutcome;
  ops: Operation<I, O>[];
  /** On 'illegal': the longest linearization found (indexes into ops), a hint for the reader. */
  longest: number[];
  /** On 'illegal': the operation that could not be linearized after the longest linearization. */
  stuck?: number;
  steps: number;
}

export interface CheckResult<I, O> {
  /** 'illegal' if any partition is; 'unknown' if a search ran out of budget and none is illegal. */
  outcome: CheckOutcome;
  partitions: PartitionResult<I, O>[];
  /** The first illegal partition, if any. */
  failed?: PartitionResult<I, O>;
}

export interface CheckOptions {
  /** Search steps allowed per partition before the answer is 'unknown'. */
  maxSteps?: number;
}

interface Node {
  id: number; // operation index; -1 for the head sentinel
  isCall: boolean;
  time: number;
  match: Node | null; // a call's return node
  prev: Node | null;
  next: Node | null;
}

class Bitset {
  readonly words: Uint32Array;
  constructor(n: number) {
    this.words = new Uint32Array(Math.max(1, Math.ceil(n / 32)));
  }
  set(i: number): void {
    this.words[i >>> 5] |= 1 << (i & 31);
  }
  clear(i: number): void {
    this.words[i >>> 5] &= ~(1 << (i & 31));
  }
  key(): string {
    let s = '';
    for (const w of this.words) s += w.toString(36) + '.';
    return s;
  }
}

function buildList<I, O>(ops: readonly Operation<I, O>[]): Node {
  const nodes: Node[] = [];
  ops.forEach((op, id) => {
    const ret: Node = { id, isCall: false, time: op.ret, match: null, prev: null, next: null };
    const call: Node = { id, isCall: true, time: op.call, match: ret, prev: null, next: null };
    nodes.push(call, ret);
  });
  // By time; at equal times calls first (concurrent), then by operation for determinism.
  nodes.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1));
  const head: Node = { id: -1, isCall: false, time: -Infinity, match: null, prev: null, next: null };
  let prev = head;
  for (const n of nodes) {
    prev.next = n;
    n.prev = prev;
    prev = n;
  }
  return head;
}

function lift(call: Node): void {
  call.prev!.next = call.next;
  if (call.next) call.next.prev = call.prev;
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Node): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next) ret.next.prev = ret;
  call.prev!.next = call;
  if (call.next) call.next.prev = call;
}

export function checkPartition<S, I, O>(model: Model<S, I, O>, ops: Operation<I, O>[], opts: CheckOptions = {}): PartitionResult<I, O> {
  const maxSteps = opts.maxSteps ?? 2_000_000;
  for (const op of ops) {
    if (!(op.call <= op.ret)) throw new Error(`linearizability: operation returns before its call (${op.call} > ${op.ret})`);
  }
  const head = buildList(ops);
  const linearized = new Bitset(ops.length);
  const cache = new Set<string>();
  const stack: { node: Node; state: S }[] = [];
  let longest: number[] = [];
  let stuck = -1;
  let state = model.init();
  let entry = head.next;
  let steps = 0;
  while (head.next !== null) {
    if (++steps > maxSteps) return { outcome: 'unknown', ops, longest, steps };
    if (entry === null) throw new Error('linearizability: ran off the end of the list');
    if (entry.isCall) {
      const op = ops[entry.id];
      const next = model.step(state, op.input, op.output);
      if (next !== undefined) {
        linearized.set(entry.id);
        const key = linearized.key() + '|' + model.stateKey(next);
        if (!cache.has(key)) {
          cache.add(key);
          stack.push({ node: entry, state });
          state = next;
          lift(entry);
          entry = head.next;
          continue;
        }
        linearized.clear(entry.id);
      }
      entry = entry.next;
    } else {
      // A return: its operation was not linearized in time. Backtrack.
      if (stack.length > longest.length || stuck < 0) {
        longest = stack.map((s) => s.node.id);
        stuck = entry.id;
      }
      const top = stack.pop();
      if (top === undefined) return { outcome: 'illegal', ops, longest, stuck, steps };
      state = top.state;
      linearized.clear(top.node.id);
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return { outcome: 'ok', ops, longest: stack.map((s) => s.node.id), steps };
}

export function checkOperations<S, I, O>(model: Model<S, I, O>, history: readonly Operation<I, O>[], opts: CheckOptions = {}): CheckResult<I, O> {
  const partitions = model.partition(history).map((ops) => checkPartition(model, ops, opts));
  const failed = partitions.find((p) => p.outcome === 'illegal');
  const outcome: CheckOutcome = failed ? 'illegal' : partitions.some((p) => p.outcome === 'unknown') ? 'unknown' : 'ok';
  return failed ? { outcome, partitions, failed } : { outcome, partitions };
}

// ---------------------------------------------------------------------------------------------
// The key-value model.

export type KvInput = { kind: 'put'; key: string; value: string } | { kind: 'get'; key: string } | { kind: 'delete'; key: string };
/** A get's output is the value read, or null for a missing key; put and delete output null. */
export type KvOutput = string | null;
export type KvOperation = Operation<KvInput, KvOutput>;

/** State of one key: its value, or null when absent. */
export const kvModel: Model<string | null, KvInput, KvOutput> = {
  partition(ops) {
    const byKey = new Map<string, KvOperation[]>();
    for (const op of ops) {
      // A read that never returned observed nothing.
      if (op.input.kind === 'get' && op.output === undefined) continue;
      let list = byKey.get(op.input.key);
      if (!list) byKey.set(op.input.key, (list = []));
      list.push(op);
    }
    return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
  },
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case 'put':
        return input.value;
      case 'delete':
        return null;
      case 'get':
        return output === undefined || output === state ? state : undefined;
    }
  },
  stateKey: (state) => (state === null ? '\u0000' : state),
  describe(op) {
    const i = op.input;
    const what = i.kind === 'put' ? `put(${i.key}, ${i.value})` : i.kind === 'delete' ? `delete(${i.key})` : `get(${i.key}) -> ${op.output === undefined ? '?' : String(op.output)}`;
    return `client ${op.clientId}: ${what} [${op.call}, ${op.ret === Infinity ? '∞' : op.ret}]`;
  },
};

export function checkKvHistory(history: readonly KvOperation[], opts: CheckOptions = {}): CheckResult<KvInput, KvOutput> {
  return checkOperations(kvModel, history, opts);
}

/**
 * A few lines on why a partition is illegal: the longest linearization found, the state it
 * leaves, and the operations around the one that could not be linearized after it.
 */
export function explainKv(p: PartitionResult<KvInput, KvOutput>, maxLines = 30): string[] {
  const describe = (op: KvOperation): string => kvModel.describe!(op);
  const lines: string[] = [];
  const key = p.ops[0]?.input.key ?? '?';
  lines.push(`key ${key}: ${p.ops.length} operations, outcome ${p.outcome}`);
  let state = kvModel.init();
  for (const i of p.longest) state = kvModel.step(state, p.ops[i].input, p.ops[i].output) ?? state;
  const lin = new Set(p.longest);
  const order = p.ops.map((op, i) => ({ op, i })).sort((a, b) => a.op.call - b.op.call || a.i - b.i);
  let at = order.length - 1;
  if (p.stuck !== undefined && p.stuck >= 0) {
    at = order.findIndex((o) => o.i === p.stuck);
    lines.push(`  stuck at ${describe(p.ops[p.stuck])}: it returned, but nothing linearizes it after the ${p.longest.length} operations before (the value is then ${state === null ? 'absent' : state})`);
  }
  const from = Math.max(0, Math.min(at - Math.floor(maxLines / 2), order.length - maxLines));
  lines.push(`  operations ${from + 1}..${Math.min(order.length, from + maxLines)} of ${order.length} by call (✓ in the longest linearization, ✗ stuck):`);
  for (const { op, i } of order.slice(from, from + maxLines)) lines.push(`  ${i === p.stuck ? '✗' : lin.has(i) ? '✓' : '·'} ${describe(op)}`);
  return lines;
}
