import test from 'ava';
import fc from 'fast-check';
import { TaskState } from '@swarmd/proto';
import { LocalLog, MemoryStore, cloneObject, makeObject, newId, type LogStateMachine, type ReplicatedLog, type Tx } from '../src/index.js';

/** A log that commits only on flush(): concurrent writers are all checked against the same state
 *  by the leader, so the apply-time checks decide (as with Raft's in-flight proposals). */
class QueuedLog implements ReplicatedLog {
  private sm: LogStateMachine | undefined;
  private queue: { data: Uint8Array; done: (i: number) => void }[] = [];
  private index = 0;
  readonly entries: { data: Uint8Array; index: number }[] = [];
  attach(sm: LogStateMachine): void {
    this.sm = sm;
  }
  propose(data: Uint8Array): Promise<number> {
    return new Promise((done) => this.queue.push({ data, done }));
  }
  flush(): void {
    const q = this.queue;
    this.queue = [];
    for (const { data, done } of q) {
      this.index += 1 + (this.index % 2); // gaps, as Raft's own entries make
      this.entries.push({ data, index: this.index });
      this.sm!.apply(data, this.index);
      done(this.index);
    }
  }
  linearizableRead(): Promise<void> {
    return Promise.resolve();
  }
  isLeader(): boolean {
    return true;
  }
  onLeaderChange(): () => void {
    return () => undefined;
  }
}

// Random writers (some with stale reads) against one store; after every step the indexes agree
// with a full scan, unique names hold, and a follower replaying the log is identical.
const SERVICES = ['s0', 's1', 's2', 's3'];
const NODES = ['n0', 'n1', 'n2'];
const NAMES = ['web', 'WEB', 'db', 'cache'];
const STATES = [TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_SHUTDOWN, TaskState.TASK_STATE_REMOVE];

type Op =
  | { op: 'createTask'; id: number; svc: number; node: number; state: number }
  | { op: 'moveTask'; id: number; node: number; state: number; stale: boolean }
  | { op: 'deleteTask'; id: number }
  | { op: 'createService'; svc: number; name: number }
  | { op: 'renameService'; svc: number; name: number; stale: boolean }
  | { op: 'deleteService'; svc: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('createTask' as const), id: fc.nat(15), svc: fc.nat(3), node: fc.nat(2), state: fc.nat(2) }),
  fc.record({ op: fc.constant('moveTask' as const), id: fc.nat(15), node: fc.nat(2), state: fc.nat(2), stale: fc.boolean() }),
  fc.record({ op: fc.constant('deleteTask' as const), id: fc.nat(15) }),
  fc.record({ op: fc.constant('createService' as const), svc: fc.nat(3), name: fc.nat(3) }),
  fc.record({ op: fc.constant('renameService' as const), svc: fc.nat(3), name: fc.nat(3), stale: fc.boolean() }),
  fc.record({ op: fc.constant('deleteService' as const), svc: fc.nat(3) }),
);

function run(tx: Tx, o: Op, staleSnapshot: MemoryStore['dump'] extends () => infer D ? D : never): void {
  switch (o.op) {
    case 'createTask':
      tx.create('task', makeObject('task', { id: `t${o.id}`, serviceId: SERVICES[o.svc], nodeId: NODES[o.node], desiredState: STATES[o.state], slot: o.id % 3 }));
      return;
    case 'moveTask': {
      const cur = o.stale ? staleSnapshot.task.find((x) => x.id === `t${o.id}`) : tx.get('task', `t${o.id}`);
      if (!cur) throw new Error('absent');
      const c = cloneObject('task', cur);
      c.nodeId = NODES[o.node]!;
      c.desiredState = STATES[o.state]!;
      tx.update('task', c);
      return;
    }
    case 'deleteTask':
      tx.delete('task', `t${o.id}`);
      return;
    case 'createService':
      tx.create('service', makeObject('service', { id: SERVICES[o.svc], spec: { annotations: { name: NAMES[o.name], labels: {} }, task: undefined, mode: undefined, update: undefined, rollback: undefined, endpoint: undefined } }));
      return;
    case 'renameService': {
      const cur = o.stale ? staleSnapshot.service.find((x) => x.id === SERVICES[o.svc]) : tx.get('service', SERVICES[o.svc]);
      if (!cur) throw new Error('absent');
      const c = cloneObject('service', cur);
      c.spec!.annotations!.name = NAMES[o.name]!;
      tx.update('service', c);
      return;
    }
    case 'deleteService':
      tx.delete('service', SERVICES[o.svc]);
      return;
  }
}

let applyTimeRejections = 0;

test('concurrent random writers: indexes match a full scan, names stay unique, replay is identical', async (t) => {
  await fc.assert(
    // Each step: up to three concurrent writers of one to three operations each.
    fc.asyncProperty(fc.array(fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 20 }), async (steps) => {
      const log = new QueuedLog();
      let now = 0;
      let n = 0;
      const s = new MemoryStore({ log, clock: { now: () => ++now }, newTxId: () => `tx${++n}` });
      let stale = s.dump();
      for (const writers of steps) {
        const before = s.dump();
        let flushed = false;
        const done = writers.map((ops) =>
          s.update((tx) => ops.forEach((o) => run(tx, o, stale))).catch(() => {
            if (flushed) applyTimeRejections++;
          }),
        );
        await Promise.resolve();
        flushed = true;
        log.flush();
        await Promise.all(done);
        stale = before;
        s.view((tx) => {
          const tasks = tx.find('task');
          for (const node of NODES) t.deepEqual(tx.find('task', { nodeId: node }), tasks.filter((x) => x.nodeId === node));
          for (const svc of SERVICES) t.deepEqual(tx.find('task', { serviceId: svc }), tasks.filter((x) => x.serviceId === svc));
          for (const st of STATES) t.deepEqual(tx.find('task', { desiredState: st }), tasks.filter((x) => x.desiredState === st));
          const names = tx.find('service').map((x) => x.spec!.annotations!.name.toLowerCase());
          t.is(new Set(names).size, names.length);
          for (const nm of NAMES) t.true(tx.find('service', { name: nm }).length <= 1);
        });
      }
      const follower = new MemoryStore({ log: new LocalLog() });
      for (const e of log.entries) (follower.replicatedLog as LocalLog).deliver(e.data, e.index);
      t.deepEqual(follower.dump(), s.dump());
    }),
    { numRuns: 60, seed: 42 },
  );
  t.true(applyTimeRejections > 0, 'some transactions were refused only when applied');
});

test('newId: 25 base36 digits from the injected bytes', (t) => {
  t.is(newId(() => new Uint8Array(16)), '0'.repeat(25));
  t.regex(newId(), /^[0-9a-z]{25}$/);
  t.is(newId(() => new Uint8Array(16).fill(255)).length, 25);
});
