import test from 'ava';
import { phaseTimer } from '../src/phases.js';

test('each phase holds the time since the previous mark, to 0.1 ms', (t) => {
  let now = 1000;
  const { phase, phases } = phaseTimer(() => now);
  now += 12.345;
  phase('netns');
  now += 0.04;
  phase('links');
  now += 7;
  phase('links');
  t.deepEqual(phases, { netns: 12.3, links: 7 });
});
