import test from 'ava';
import type { LogRecord } from '@swarmd/proto';
import type { LogEntry, LogReadOptions } from '@swarmd/runtime';
import { FakeClock } from '@swarmd/common';
import { LogPublisher } from '../src/logs/log-publisher.js';

function source(lines: Record<string, string[]>, seen: { id: string; o?: LogReadOptions }[]) {
  return {
    async *logs(id: string, o?: LogReadOptions): AsyncGenerator<LogEntry> {
      seen.push({ id, ...(o ? { o } : {}) });
      for (const [i, line] of (lines[id] ?? []).entries()) {
        await Promise.resolve();
        yield { time: new Date(1000 + i), timestamp: '', stream: i % 2 ? 'stderr' : 'stdout', line };
      }
    },
  };
}

test('follows each task once, batches records, retries a failed send, stops following removed tasks', async (t) => {
  const seen: { id: string; o?: LogReadOptions }[] = [];
  const sent: LogRecord[][] = [];
  let fail = true;
  const pub = new LogPublisher({
    containers: source({ a: ['one', 'two', 'three'], b: ['bee'] }, seen),
    send: (r) => {
      if (fail) return Promise.reject(new Error('no session'));
      sent.push(r);
      return Promise.resolve();
    },
    clock: new FakeClock(),
    maxBatch: 2,
  });
  pub.follow('a', 'svc-a');
  pub.follow('a', 'svc-a');
  pub.follow('b', 'svc-b', 5000);
  await new Promise((r) => setTimeout(r, 20));
  t.is(seen.filter((s) => s.id === 'a').length, 1, 'followed once');
  t.is(seen.find((s) => s.id === 'b')?.o?.since, 5000);
  t.true(seen.every((s) => s.o?.follow === true));
  await t.throwsAsync(pub.flush(), { message: 'no session' });
  fail = false;
  await pub.flush();
  t.deepEqual(sent.map((b) => b.length), [2, 2], 'batches of maxBatch, nothing lost by the failed send');
  const all = sent.flat();
  t.deepEqual(all.filter((r) => r.taskId === 'a').map((r) => Buffer.from(r.data).toString()), ['one\n', 'two\n', 'three\n']);
  t.like(all.find((r) => r.taskId === 'b'), { serviceId: 'svc-b', stream: 'stdout', timestamp: 1000 });
  pub.unfollow('a');
  pub.follow('a', 'svc-a');
  t.is(seen.filter((s) => s.id === 'a').length, 2, 'a new follow after unfollow');
  await pub.stop();
});
