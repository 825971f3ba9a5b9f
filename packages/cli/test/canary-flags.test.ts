import test from 'ava';
import { canaryConfigOf } from '../src/canary.js';

test('--canary-weight P is one manual step; --canary-steps with --canary-interval moves on its own', (t) => {
  t.is(canaryConfigOf({}), undefined);
  const one = canaryConfigOf({ 'canary-weight': 20 })!;
  t.deepEqual(one.steps, [20]);
  t.is(one.intervalMs, 0);
  const timed = canaryConfigOf({ 'canary-steps': '10, 50,100', 'canary-interval': '1m', 'canary-replicas': 2, 'canary-check-path': '/healthz', 'canary-check-success': '0.95' })!;
  t.deepEqual(timed.steps, [10, 50, 100]);
  t.is(timed.intervalMs, 60_000);
  t.is(timed.replicas, 2);
  t.is(timed.checkPath, '/healthz');
  t.is(timed.checkSuccess, 0.95);
  t.is(canaryConfigOf({ 'canary-steps': '10,50', 'canary-interval': 'manual' })!.intervalMs, 0);
});

test('canary flags that cannot work are refused naming the flag', (t) => {
  const bad = (a: Parameters<typeof canaryConfigOf>[0]) => t.throws(() => canaryConfigOf(a)).message;
  t.regex(bad({ 'canary-interval': '1m' }), /--canary-interval needs --canary-weight P or --canary-steps/);
  t.regex(bad({ 'canary-weight': 20, 'canary-steps': '20,50' }), /not both/);
  t.regex(bad({ 'canary-steps': '10,x' }), /"x" is not a weight in percent/);
  t.regex(bad({ 'canary-weight': 12.5 }), /--canary-weight 12\.5: expected a whole percent/);
  t.regex(bad({ 'canary-weight': 20, 'canary-interval': 'soon' }), /--canary-interval soon: expected a duration/);
  t.regex(bad({ 'canary-weight': 20, 'canary-max-failure-ratio': '1.5' }), /--canary-max-failure-ratio 1\.5: expected a ratio between 0 and 1/);
  t.regex(bad({ 'canary-weight': 20, 'canary-check-port': 8080 }), /go with --canary-check-path/);
  t.regex(bad({ 'canary-weight': 20, 'canary-replicas': 0 }), /--canary-replicas 0: expected a whole number ≥ 1/);
  t.regex(bad({ 'canary-weight': 0 }), /--canary-weight 0: expected a whole percent \(1\.\.100\)/);
  t.regex(bad({ 'canary-steps': '10,150' }), /--canary-steps 10,150: 150 is not a weight in percent/);
});

test('decreasing --canary-steps are refused by the CLI itself, before any spec is compared', (t) => {
  t.throws(() => canaryConfigOf({ 'canary-steps': '50,20' }), { message: /--canary-steps 50,20: weights must increase \(50 then 20\)/ });
  t.throws(() => canaryConfigOf({ 'canary-steps': '20,20' }), { message: /weights must increase \(20 then 20\)/ });
});
