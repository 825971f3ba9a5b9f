// The Jepsen-style checker (src/jepsen/checker.ts) on histories written by hand: each property
// broken once (the checker must name it) and histories that keep it (the checker must pass them),
// and the recorder's own rules. No cluster, no root.
import test from 'ava';
import { check, summary, type FinalState } from '../src/jepsen/checker.js';
import { completedOps, Recorder, type HistoryEvent, type Op, type OpResult, type ServiceView } from '../src/jepsen/history.js';

/** A history written as a list of [process, op, completion, call, ret]. */
type Line = [number, Op, 'ok' | 'fail' | 'info', number, number, OpResult?, string?];
function history(lines: Line[]): HistoryEvent[] {
  const raw: Omit<HistoryEvent, 'index'>[] = [];
  for (const [process, op, type, call, ret, result, error] of lines) {
    raw.push({ type: 'invoke', process, op, time: call });
    raw.push({ type, process, op, time: Math.max(call, ret), ...(result ? { result } : {}), ...(error ? { error } : {}) });
  }
  // events in time order (an invoke before its completion at equal times), indexed
  return raw
    .map((e, i) => ({ e, i }))
    .sort((a, b) => a.e.time - b.e.time || a.i - b.i)
    .map(({ e }, index) => ({ ...e, index }));
}

const create = (service: string, requestId = `req-${service}`, o: Partial<Extract<Op, { f: 'create' }>> = {}): Op => ({ f: 'create', service, requestId, replicas: 1, label: 'l0', env: '0', ...o });
const label = (service: string, value: string): Op => ({ f: 'update', service, field: 'label', value });
const env = (service: string, value: string): Op => ({ f: 'update', service, field: 'env', value });
const scale = (service: string, replicas: number): Op => ({ f: 'scale', service, replicas });
const remove = (service: string): Op => ({ f: 'remove', service });
const made = (id: string): OpResult => ({ f: 'create', id });
const view = (id: string, o: Partial<ServiceView> = {}): ServiceView => ({ id, replicas: 1, label: 'l0', env: '0', requestId: `req-${o.id ?? 's1'}`, ...o });
const inspect = (service: string, v: ServiceView | null): [Op, OpResult] => [{ f: 'read', service }, { f: 'read', services: { [service]: v }, complete: false }];
const ls = (services: Record<string, ServiceView>): [Op, OpResult] => [{ f: 'read' }, { f: 'read', services, complete: true }];
const final = (time: number, ...services: (ServiceView & { name: string })[]): FinalState => ({ time, services });
const named = (name: string, v: ServiceView) => ({ name, ...v, requestId: v.requestId || `req-${name}` });
const properties = (r: ReturnType<typeof check>) => r.violations.map((v) => v.property);

test('a clean concurrent history passes: overlapping writes in any order, unknown outcomes either way, reads within', (t) => {
  // the read sees label a after both updates (a was last) and 1 replica (the unknown scale not yet applied)
  const [rop, rres] = inspect('s1', view('id1', { label: 'a', requestId: 'req-s1' }));
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [2, label('s1', 'a'), 'ok', 20, 40],
    [3, label('s1', 'b'), 'ok', 25, 35], // concurrent with a: either may be last
    [1, scale('s1', 3), 'info', 30, 0, undefined, 'leadership lost'], // unknown: may or may not apply
    [2, rop, 'ok', 45, 50, rres],
  ]);
  const r = check(h, final(100, named('s1', view('id1', { label: 'a', replicas: 3, requestId: 'req-s1' }))));
  t.deepEqual(r.violations, []);
  t.true(r.valid);
  t.is(r.readsChecked, 1);
  t.is(r.staleReads, 0);
  t.is(r.counts.ops, 5);
  t.is(r.counts.unknown, 1);
  t.regex(summary(r), /5 ops: 4 ok, 0 fail, 1 unknown/);
});

test('an acknowledged update missing from the final state is a lost write', (t) => {
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [1, label('s1', 'a'), 'ok', 20, 30],
  ]);
  const r = check(h, final(100, named('s1', view('id1', { label: 'l0' }))));
  t.deepEqual(properties(r), ['lost-write']);
  t.regex(r.violations[0].message, /final state of s1 \(1 replicas, label l0, V=0\) follows from no order of its writes: acknowledged .*update s1 label=a: ok/);
});

test('an acknowledged create missing from the final state is a lost write; an unknown remove explains it', (t) => {
  const lost = check(history([[1, create('s1'), 'ok', 0, 10, made('id1')]]), final(100));
  t.deepEqual(properties(lost), ['lost-write']);
  const removed = check(history([[1, create('s1'), 'ok', 0, 10, made('id1')], [2, remove('s1'), 'info', 20, 0, undefined, 'no manager answered']]), final(100));
  t.deepEqual(removed.violations, []);
});

test('an acknowledged remove undone in the final state is a lost write', (t) => {
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [2, remove('s1'), 'ok', 20, 30],
  ]);
  t.deepEqual(properties(check(h, final(100, named('s1', view('id1'))))), ['lost-write']);
});

test('an older write overwriting an acknowledged later one (a lost update) is a lost write', (t) => {
  // scale 2 acknowledged before scale 4 was called: the final 2 replicas lost the scale to 4
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [1, scale('s1', 2), 'ok', 20, 30],
    [2, scale('s1', 4), 'ok', 40, 50],
  ]);
  t.deepEqual(properties(check(h, final(100, named('s1', view('id1', { replicas: 2 }))))), ['lost-write']);
  t.deepEqual(check(h, final(100, named('s1', view('id1', { replicas: 4 })))).violations, []);
});

test('a retried create acknowledged as two different services is a duplicate, and so are two services of one request', (t) => {
  const h = history([
    [1, create('s1', 'r1'), 'info', 0, 0, undefined, 'leadership lost'],
    [1, create('s1', 'r1'), 'ok', 10, 20, made('id1')],
    [1, create('s1', 'r1'), 'ok', 30, 40, made('id2')],
  ]);
  const r = check(h, final(100, named('s1', view('id2', { requestId: 'r1' }))));
  t.true(properties(r).includes('duplicate'));
  t.regex(r.violations.map((v) => v.message).join('\n'), /acknowledged with 2 different services: id1, id2/);
  const two = check(history([[1, create('s1', 'r1'), 'ok', 0, 10, made('id1')]]), final(100, named('s1', view('id1', { requestId: 'r1' })), named('s1', view('id9', { requestId: 'r1' }))));
  t.true(properties(two).includes('duplicate'));
  t.regex(two.violations[0].message, /two services named s1 in the final state: id1 and id9/);
});

test('a retry of a create refused as "already exists" is a duplicate-safety violation; the same retry answered with the service passes', (t) => {
  const refused = history([
    [1, create('s1', 'r1'), 'info', 0, 0, undefined, 'this manager lost the leadership'],
    [1, create('s1', 'r1'), 'fail', 10, 20, undefined, 'service name "s1" is already in use by service id1'],
  ]);
  const r = check(refused, final(100, named('s1', view('id1', { requestId: 'r1' }))));
  t.deepEqual(properties(r), ['duplicate']);
  t.regex(r.violations[0].message, /refused as already existing/);
  const answered = history([
    [1, create('s1', 'r1'), 'info', 0, 0, undefined, 'this manager lost the leadership'],
    [1, create('s1', 'r1'), 'ok', 10, 20, made('id1')],
  ]);
  t.deepEqual(check(answered, final(100, named('s1', view('id1', { requestId: 'r1' })))).violations, []);
});

test('a create that failed definitely but is in the final state, and a failed update whose value is seen, are failed writes applied', (t) => {
  const r = check(history([[1, create('s1'), 'fail', 0, 10, undefined, 'invalid spec']]), final(100, named('s1', view('id1'))));
  t.true(properties(r).includes('failed-write-applied'));
  const [rop, rres] = inspect('s1', view('id1', { label: 'x' }));
  const withRead = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [2, label('s1', 'x'), 'fail', 20, 30, undefined, 'update out of sequence'],
    [3, rop, 'ok', 40, 50, rres],
  ]);
  const seen = check(withRead, final(100, named('s1', view('id1'))), { readsLinearizable: false }); // the stale read aside
  t.deepEqual([...new Set(properties(seen))], ['failed-write-applied']);
  t.regex(seen.violations[0].message, /a read saw label x on s1, written only by an update that failed definitely/);
});

test('a read of a value no write had been called to set yet is a phantom read', (t) => {
  const [rop, rres] = inspect('s1', view('id1', { env: '7' }));
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [2, rop, 'ok', 20, 30, rres],
    [1, env('s1', '7'), 'ok', 40, 50], // called after the read returned
  ]);
  // (the read is not linearizable either: that property is left out here)
  const r = check(h, final(100, named('s1', view('id1', { env: '7' }))), { readsLinearizable: false });
  t.deepEqual(properties(r), ['phantom-read']);
  t.regex(r.violations[0].message, /a read saw V=7 on s1, which no write had been called to set/);
  // the same read while the update is in flight is fine
  const concurrent = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [1, env('s1', '7'), 'ok', 15, 50],
    [2, rop, 'ok', 20, 30, rres],
  ]);
  t.deepEqual(check(concurrent, final(100, named('s1', view('id1', { env: '7' })))).violations, []);
});

test('a stale read (an old value after a newer one was acknowledged) is a not-linearizable violation; with readsLinearizable: false it is only counted', (t) => {
  const [rop, rres] = ls({ s1: view('id1', { label: 'a' }) });
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [1, label('s1', 'a'), 'ok', 20, 30],
    [1, label('s1', 'b'), 'ok', 40, 50],
    [2, rop, 'ok', 60, 70, rres], // sees a after b was acknowledged: stale
  ]);
  const fin = final(100, named('s1', view('id1', { label: 'b' })));
  const strict = check(h, fin);
  t.deepEqual(properties(strict), ['not-linearizable']);
  t.regex(strict.violations[0].message, /a read fits no linearization of the writes of s1: s1: client 2: read \(ls\): ok .* saw 1 replicas, label a, V=0/);
  t.is(strict.staleReads, 1);
  const lenient = check(h, fin, { readsLinearizable: false });
  t.deepEqual(lenient.violations, []);
  t.is(lenient.readsChecked, 1);
  t.is(lenient.staleReads, 1);
  t.regex(lenient.staleExamples[0], /s1: client 2: read \(ls\): ok .* saw 1 replicas, label a, V=0/);
  // the same read while the second label is in flight is linearizable (before it)
  const concurrent = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [1, label('s1', 'a'), 'ok', 20, 30],
    [1, label('s1', 'b'), 'ok', 40, 80],
    [2, rop, 'ok', 60, 70, rres],
  ]);
  t.deepEqual(check(concurrent, fin).violations, []);
});

test('a list read covers every service of the run: one missing from it reads as absent', (t) => {
  const [rop, rres] = ls({});
  const h = history([
    [1, create('s1'), 'ok', 0, 10, made('id1')],
    [2, rop, 'ok', 20, 30, rres], // s1 absent after its create was acknowledged
  ]);
  const r = check(h, final(100, named('s1', view('id1'))));
  t.deepEqual(properties(r), ['not-linearizable']);
});

test('the recorder: one pending operation per client, one completion each, unfinished ones unknown', (t) => {
  let now = 0;
  const rec = new Recorder(() => now++);
  const p = rec.invoke(1, create('s1'));
  t.throws(() => rec.invoke(1, label('s1', 'a')), { message: /client 1 invoked update with an operation still pending/ });
  p.ok(made('id1'));
  t.throws(() => p.fail('again'), { message: /completed twice/ });
  rec.invoke(2, remove('s1'));
  const ops = completedOps(rec.events);
  t.is(ops.length, 2);
  t.is(ops[0].type, 'ok');
  t.is(ops[1].type, 'info');
  t.is(ops[1].ret, Infinity);
  t.is(rec.jsonLines().trim().split('\n').length, 3);
  t.throws(() => completedOps([{ index: 0, type: 'ok', process: 3, time: 0, op: remove('s1') }]), { message: /a ok of client 3 with no operation pending/ });
});
