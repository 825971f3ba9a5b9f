// KeyedBatcher: values merged per key and written together; a round that starts while the batcher
// is idle waits only the short idle window, one that follows a flush waits out the full window.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedBatcher } from '../src/dispatcher/batcher.js';

/** Whether p settles within ms (no timing claim: the windows below are 1 ms against 60 s). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await sleep(ms);
  return done;
}

/** A 60 s window after a 1 ms idle one, values summed per key; `o` adds urgency options. */
function batcher(flushed: Map<string, number>[], o: { urgentGapMs?: number; maxFlushesPerDelay?: number } = {}) {
  return new KeyedBatcher<string, number>({
    delayMs: 60_000,
    idleDelayMs: 1,
    maxItems: 100,
    merge: (a, b) => a + b,
    flush: async (items) => void flushed.push(new Map(items)),
    ...o,
  });
}

test('a value that finds the batcher idle is written after the idle window, not the full one', async (t) => {
  const flushed: Map<string, number>[] = [];
  const b = batcher(flushed);
  const first = b.add('a', 1);
  b.add('a', 2).catch(() => undefined);
  t.true(await settlesWithin(first, 2_000), 'written without waiting out the 60 s window');
  t.deepEqual(flushed, [new Map([['a', 3]])], 'both adds of the same tick merged in one write');
});

test('a value that comes right after a flush waits for the rest of the window: flushes stay a window apart', async (t) => {
  const flushed: Map<string, number>[] = [];
  const b = batcher(flushed);
  await b.add('a', 1);
  const second = b.add('b', 1);
  t.false(await settlesWithin(second, 200), 'not written 200 ms after a flush (window 60 s)');
  b.add('b', 1).catch(() => undefined);
  b.add('c', 1).catch(() => undefined);
  await b.flushNow();
  await second;
  t.deepEqual(flushed, [new Map([['a', 1]]), new Map([['b', 2], ['c', 1]])]);
});

test('an urgent value cuts a busy round short to the urgent gap; ordinary values keep waiting out the window', async (t) => {
  const flushed: Map<string, number>[] = [];
  const b = batcher(flushed, { urgentGapMs: 1 });
  await b.add('a', 1);
  const ordinary = b.add('b', 1);
  t.false(await settlesWithin(ordinary, 200), 'an ordinary value right after a flush waits (window 60 s)');
  const urgent = b.add('c', 1, { urgent: true });
  t.true(await settlesWithin(urgent, 2_000), 'the urgent one is written within the urgent gap');
  t.true(await settlesWithin(ordinary, 0), 'with the ordinary one of its round');
  t.deepEqual(flushed, [new Map([['a', 1]]), new Map([['b', 1], ['c', 1]])]);
});

test('without an urgent gap, urgency changes nothing', async (t) => {
  const flushed: Map<string, number>[] = [];
  const b = batcher(flushed);
  await b.add('a', 1);
  const urgent = b.add('b', 1, { urgent: true });
  t.false(await settlesWithin(urgent, 200));
  await b.flushNow();
  t.deepEqual(flushed.length, 2);
});

test('a round that falls due while a flush is being written waits for it, then goes at once with everything that came meanwhile', async (t) => {
  const flushed: Map<string, number>[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  const b = new KeyedBatcher<string, number>({
    delayMs: 1,
    idleDelayMs: 1,
    maxItems: 100,
    merge: (a, b2) => a + b2,
    flush: async (items) => {
      calls++;
      if (calls === 1) await gate; // the first write is slow
      flushed.push(new Map(items));
    },
  });
  const first = b.add('a', 1);
  await sleep(20); // its flush has started and hangs
  const later = [b.add('b', 1)];
  await sleep(20); // b's round is due (1 ms window) while the first flush hangs
  later.push(b.add('b', 1), b.add('c', 1));
  await sleep(20);
  t.is(calls, 1, 'no second write starts while the first is being written');
  release();
  await Promise.all([first, ...later]);
  t.deepEqual(flushed, [new Map([['a', 1]]), new Map([['b', 2], ['c', 1]])], 'one write took all that came meanwhile');
});

test('past maxFlushesPerDelay flushes in a window, an urgent value waits like any other', async (t) => {
  const flushed: Map<string, number>[] = [];
  const b = batcher(flushed, { urgentGapMs: 1, maxFlushesPerDelay: 2 });
  await b.add('a', 1); // flush 1 (idle)
  t.true(await settlesWithin(b.add('b', 1, { urgent: true }), 2_000), 'flush 2: urgent, within the budget');
  const third = b.add('c', 1, { urgent: true });
  t.false(await settlesWithin(third, 200), 'two flushes in the window already: the urgent value waits (window 60 s)');
  await b.flushNow();
  await third;
  t.is(flushed.length, 3);
});
