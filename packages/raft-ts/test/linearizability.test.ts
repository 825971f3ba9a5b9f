import test from 'ava';
import fc from 'fast-check';
import { checkKvHistory, explainKv, type KvInput, type KvOperation, type KvOutput } from '../src/testing/linearizability.js';

const put = (clientId: number, key: string, value: string, call: number, ret: number): KvOperation => ({
  clientId,
  input: { kind: 'put', key, value },
  output: ret === Infinity ? undefined : null,
  call,
  ret,
});
const get = (clientId: number, key: string, out: string | null | undefined, call: number, ret: number): KvOperation => ({
  clientId,
  input: { kind: 'get', key },
  output: out,
  call,
  ret,
});
const del = (clientId: number, key: string, call: number, ret: number): KvOperation => ({
  clientId,
  input: { kind: 'delete', key },
  output: ret === Infinity ? undefined : null,
  call,
  ret,
});

const outcome = (h: KvOperation[]) => checkKvHistory(h).outcome;

test('a sequential history that reads its writes is linearizable', (t) => {
  t.is(outcome([put(1, 'x', 'a', 0, 1), get(1, 'x', 'a', 2, 3), put(2, 'x', 'b', 4, 5), get(3, 'x', 'b', 6, 7), del(1, 'x', 8, 9), get(2, 'x', null, 10, 11)]), 'ok');
});

test('the empty history and a read of a missing key are linearizable', (t) => {
  t.is(outcome([]), 'ok');
  t.is(outcome([get(1, 'x', null, 0, 1)]), 'ok');
});

test('the classic stale read is not linearizable', (t) => {
  // put(x,1) completes, then put(x,2) completes, then a read returns 1.
  const h = [put(1, 'x', '1', 0, 10), put(2, 'x', '2', 20, 30), get(3, 'x', '1', 40, 50)];
  const r = checkKvHistory(h);
  t.is(r.outcome, 'illegal');
  t.truthy(r.failed);
  t.true(explainKv(r.failed!).join('\n').includes('get(x) -> 1'));
});

test('a read that goes back in time after another read saw the new value is not linearizable', (t) => {
  // Both reads overlap the write, but once client 2 saw '2', client 3 (starting later) cannot see '1'.
  const h = [put(1, 'x', '1', 0, 1), put(1, 'x', '2', 10, 100), get(2, 'x', '2', 20, 30), get(3, 'x', '1', 40, 50)];
  t.is(outcome(h), 'illegal');
  // Swap the order of the reads and it is fine: '1' first, then '2'.
  const h2 = [put(1, 'x', '1', 0, 1), put(1, 'x', '2', 10, 100), get(2, 'x', '1', 20, 30), get(3, 'x', '2', 40, 50)];
  t.is(outcome(h2), 'ok');
});

test('concurrent writes may linearize in either order', (t) => {
  const h = [put(1, 'x', 'a', 0, 10), put(2, 'x', 'b', 1, 11), get(3, 'x', 'a', 12, 13)];
  t.is(outcome(h), 'ok');
  const h2 = [put(1, 'x', 'a', 0, 10), put(2, 'x', 'b', 1, 11), get(3, 'x', 'b', 12, 13)];
  t.is(outcome(h2), 'ok');
  // ...but then both readers must agree on the winner.
  const h3 = [put(1, 'x', 'a', 0, 10), put(2, 'x', 'b', 1, 11), get(3, 'x', 'b', 12, 13), get(4, 'x', 'a', 14, 15)];
  t.is(outcome(h3), 'illegal');
});

test('a read of a value nobody wrote is not linearizable', (t) => {
  t.is(outcome([put(1, 'x', 'a', 0, 1), get(2, 'x', 'zz', 2, 3)]), 'illegal');
  t.is(outcome([get(2, 'x', 'a', 0, 1), put(1, 'x', 'a', 2, 3)]), 'illegal');
});

test('a write that never returned may take effect at any time after its call, or never', (t) => {
  // Unreturned put, never observed: fine.
  t.is(outcome([put(1, 'x', 'a', 0, Infinity), get(2, 'x', null, 5, 6)]), 'ok');
  // Observed much later: fine.
  t.is(outcome([put(1, 'x', 'a', 0, Infinity), get(2, 'x', null, 5, 6), get(2, 'x', 'a', 1000, 1001)]), 'ok');
  // Observed, then unobserved again with no other write: not fine.
  t.is(outcome([put(1, 'x', 'a', 0, Infinity), get(2, 'x', 'a', 5, 6), get(2, 'x', null, 7, 8)]), 'illegal');
  // But it cannot take effect before it was called.
  t.is(outcome([get(2, 'x', 'a', 0, 1), put(1, 'x', 'a', 5, Infinity)]), 'illegal');
});

test('an unreturned write can be overwritten by a later one, or land after it', (t) => {
  t.is(outcome([put(1, 'x', 'a', 0, Infinity), put(2, 'x', 'b', 10, 11), get(3, 'x', 'a', 20, 21)]), 'ok');
  t.is(outcome([put(1, 'x', 'a', 0, Infinity), put(2, 'x', 'b', 10, 11), get(3, 'x', 'a', 20, 21), get(3, 'x', 'b', 22, 23)]), 'illegal');
});

test('a read that never returned is ignored', (t) => {
  t.is(outcome([put(1, 'x', 'a', 0, 1), get(2, 'x', undefined, 2, Infinity), get(3, 'x', 'a', 3, 4)]), 'ok');
});

test('keys are checked independently and the failing key is reported', (t) => {
  const h = [put(1, 'x', '1', 0, 1), put(1, 'y', '1', 2, 3), put(2, 'y', '2', 4, 5), get(3, 'x', '1', 6, 7), get(3, 'y', '1', 8, 9)];
  const r = checkKvHistory(h);
  t.is(r.outcome, 'illegal');
  t.is(r.partitions.length, 2);
  t.is(r.failed!.ops[0].input.key, 'y');
});

test('delete makes a key absent', (t) => {
  t.is(outcome([put(1, 'x', 'a', 0, 1), del(2, 'x', 2, 3), get(3, 'x', 'a', 4, 5)]), 'illegal');
  t.is(outcome([put(1, 'x', 'a', 0, 1), del(2, 'x', 2, 10), get(3, 'x', 'a', 4, 5), get(3, 'x', null, 11, 12)]), 'ok');
});

test('an operation returning before its call is rejected', (t) => {
  t.throws(() => checkKvHistory([put(1, 'x', 'a', 5, 1)]));
});

test('the search gives up with unknown when out of budget', (t) => {
  const h: KvOperation[] = [];
  for (let i = 0; i < 12; i++) h.push(put(i, 'x', `v${i}`, 0, 100));
  h.push(get(99, 'x', 'nope', 200, 201));
  t.is(checkKvHistory(h, { maxSteps: 50 }).outcome, 'unknown');
  t.is(checkKvHistory(h).outcome, 'illegal');
});

// ---- properties ------------------------------------------------------------------------------

/** Brute force: is there an order of all ops (respecting real time) that the register accepts? */
function bruteForce(ops: KvOperation[]): boolean {
  const ops2 = ops.filter((o) => !(o.input.kind === 'get' && o.output === undefined));
  const n = ops2.length;
  const used = new Array<boolean>(n).fill(false);
  const rec = (count: number, state: string | null): boolean => {
    if (count === n) return true;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      const o = ops2[i];
      // Every unused op that returned before o was called must come first.
      if (ops2.some((p, j) => !used[j] && j !== i && p.ret < o.call)) continue;
      let next: string | null;
      const inp: KvInput = o.input;
      if (inp.kind === 'put') next = inp.value;
      else if (inp.kind === 'delete') next = null;
      else if (o.output === state) next = state;
      else continue;
      used[i] = true;
      if (rec(count + 1, next)) return true;
      used[i] = false;
    }
    return false;
  };
  return rec(0, null);
}

const arbOp = fc.record({
  kind: fc.constantFrom('put', 'get', 'get', 'delete'),
  value: fc.constantFrom('a', 'b', 'c'),
  out: fc.constantFrom<KvOutput | undefined>('a', 'b', 'c', null, null, undefined),
  call: fc.integer({ min: 0, max: 20 }),
  len: fc.integer({ min: 0, max: 10 }),
  lost: fc.boolean(),
});

test('property: agrees with brute force on small random histories of one key', (t) => {
  fc.assert(
    fc.property(fc.array(arbOp, { minLength: 0, maxLength: 7 }), (raw) => {
      const ops: KvOperation[] = raw.map((r, i) => {
        const ret = r.lost && r.kind !== 'get' ? Infinity : r.call + r.len;
        const input: KvInput = r.kind === 'put' ? { kind: 'put', key: 'k', value: r.value } : r.kind === 'get' ? { kind: 'get', key: 'k' } : { kind: 'delete', key: 'k' };
        const output = r.kind === 'get' ? (r.out === undefined ? null : r.out) : ret === Infinity ? undefined : null;
        return { clientId: i, input, output, call: r.call, ret };
      });
      const expected = bruteForce(ops);
      return (checkKvHistory(ops).outcome === 'ok') === expected;
    }),
    { numRuns: 3000, seed: 42 },
  );
  t.pass();
});

test('property: histories made from a real register with random linearization points are linearizable; a corrupted read is caught', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ kind: fc.constantFrom('put', 'get', 'get', 'delete'), key: fc.constantFrom('x', 'y'), call: fc.integer({ min: 0, max: 200 }), len: fc.integer({ min: 0, max: 40 }), at: fc.double({ min: 0, max: 1, noNaN: true }), lost: fc.integer({ min: 0, max: 9 }) }), { maxLength: 40 }),
      fc.nat(),
      (raw, pickBad) => {
        // Each op takes effect at a point inside [call, ret]; execute them in that order.
        const ops = raw.map((r, i) => ({ r, i, point: r.call + r.at * r.len }));
        const order = [...ops].sort((a, b) => a.point - b.point || a.i - b.i);
        const state = new Map<string, string>();
        const hist: KvOperation[] = new Array<KvOperation>(ops.length);
        for (const { r, i } of order) {
          const lost = r.lost === 0 && r.kind !== 'get';
          const ret = lost ? Infinity : r.call + r.len;
          if (r.kind === 'put') {
            const value = `v${i}`;
            state.set(r.key, value);
            hist[i] = { clientId: i, input: { kind: 'put', key: r.key, value }, output: lost ? undefined : null, call: r.call, ret };
          } else if (r.kind === 'delete') {
            state.delete(r.key);
            hist[i] = { clientId: i, input: { kind: 'delete', key: r.key }, output: lost ? undefined : null, call: r.call, ret };
          } else {
            hist[i] = { clientId: i, input: { kind: 'get', key: r.key }, output: state.get(r.key) ?? null, call: r.call, ret };
          }
        }
        if (checkKvHistory(hist).outcome !== 'ok') return false;
        // A read of a value that was never written can never be explained.
        const gets = hist.filter((o) => o.input.kind === 'get');
        if (gets.length === 0) return true;
        const bad = gets[pickBad % gets.length];
        const corrupted = hist.map((o) => (o === bad ? { ...o, output: 'never-written' } : o));
        return checkKvHistory(corrupted).outcome === 'illegal';
      },
    ),
    { numRuns: 500, seed: 7 },
  );
  t.pass();
});

test('a long, highly concurrent history is checked quickly', (t) => {
  // 8 clients, 2000 ops on one key, each overlapping its neighbours; built from a real register.
  const hist: KvOperation[] = [];
  let value: string | null = null;
  for (let i = 0; i < 2000; i++) {
    const call = i * 10;
    const ret = call + 75; // overlaps ~8 others
    if (i % 3 === 0) {
      value = `v${i}`;
      hist.push(put(i % 8, 'x', value, call, ret));
    } else {
      hist.push(get(i % 8, 'x', value, call, ret));
    }
  }
  const r = checkKvHistory(hist);
  t.is(r.outcome, 'ok');
  t.true(r.partitions[0].steps < 1_000_000, `steps ${r.partitions[0].steps}`);
});
