import test from 'ava';
import { ManagerList } from '../src/session/manager-list.js';
import { backoffDelay } from '../src/session/backoff.js';

test('next() walks the list in order and wraps around', (t) => {
  const l = new ManagerList(['a:1', 'b:1', 'c:1', 'a:1']);
  t.deepEqual(l.all(), ['a:1', 'b:1', 'c:1']);
  t.is(l.current(), 'a:1');
  t.deepEqual([l.next(), l.next(), l.next(), l.next()], ['b:1', 'c:1', 'a:1', 'b:1']);
});

test('update() keeps the current manager current and continues after it', (t) => {
  const l = new ManagerList(['a:1']);
  l.update(['x:1', 'a:1', 'y:1']);
  t.is(l.current(), 'a:1');
  t.is(l.next(), 'y:1');
  t.is(l.next(), 'x:1');
  l.update([]); // an empty list from a manager changes nothing
  t.deepEqual(l.all(), ['x:1', 'a:1', 'y:1']);
  l.update(['p:1', 'q:1']); // still connected to x, which is no longer listed: next starts at the top
  t.is(l.current(), 'x:1');
  t.is(l.next(), 'p:1');
  t.is(l.next(), 'q:1');
});

test('redirect() goes to the target once, then the list resumes after it', (t) => {
  const l = new ManagerList(['a:1', 'b:1', 'c:1']);
  l.redirect('b:1');
  t.is(l.current(), 'b:1');
  t.is(l.next(), 'c:1');
  l.redirect('z:9'); // a target not in the list
  t.is(l.current(), 'z:9');
  t.is(l.next(), 'a:1'); // from outside the list: the top
  t.is(l.next(), 'b:1');
});

test('no managers is an error', (t) => {
  t.throws(() => new ManagerList(['']), { message: /no manager address/ });
});

test('backoff grows exponentially, is capped, and jitters the upper half', (t) => {
  const o = { baseMs: 100, maxMs: 1000 };
  t.deepEqual(
    [0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, o, () => 0)),
    [50, 100, 200, 400, 500, 500],
  );
  t.deepEqual(
    [0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, o, () => 1)),
    [100, 200, 400, 800, 1000, 1000],
  );
  t.is(backoffDelay(2, o, () => 0.5), 300);
  t.is(backoffDelay(1e6, o, () => 0.5), 750); // huge attempt counts do not overflow
});
