// Process checks behind `swarmctl local stop/start`: a killed swarmd that its parent has not yet
// reaped (a zombie) is dead, so `local stop --kill` then `local start` does not refuse the host.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { isAlive, waitGone } from '../src/local/processes.js';

const state = (pid: number): string | undefined => {
  try {
    return /^\d+ \(.*\) (\S) /s.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
};

test('isAlive: a zombie counts as dead, its running parent as alive', async (t) => {
  // sh starts a short `sleep` in the background, prints its pid, then becomes a long `sleep`,
  // which never reaps it: the short one exits after the exec (so no shell can have reaped it).
  const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => parent.kill('SIGKILL'));
  const zombie = await new Promise<number>((resolve, reject) => {
    parent.stdout.once('data', (b: Buffer) => resolve(Number(b.toString().trim())));
    parent.once('error', reject);
  });
  for (let i = 0; i < 250 && state(zombie) !== 'Z'; i++) await sleep(20);
  t.is(state(zombie), 'Z', 'the background child is a zombie');
  t.false(isAlive(zombie));
  t.true(isAlive(parent.pid));
  await waitGone([zombie]); // returns at once: nothing to wait for
  t.false(isAlive(undefined));
});
