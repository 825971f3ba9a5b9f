import test from 'ava';
import { goneEndpoints, staleFlowLines } from '../src/networking/overlay/stale-flows.js';

test('endpoints that left a table: those loaded before and not now, sorted; none before: none', (t) => {
  t.deepEqual(goneEndpoints(['10.0.0.9', '10.0.0.5', '10.0.0.7'], new Set(['10.0.0.7', '10.0.0.8'])), ['10.0.0.5', '10.0.0.9']);
  t.deepEqual(goneEndpoints(undefined, new Set(['10.0.0.7'])), []);
});

test('per endpoint gone: its unanswered TCP flows (SYN_SENT) and its UDP flows are deleted, established TCP ones kept; a malformed address gives no command', (t) => {
  t.deepEqual(staleFlowLines(['10.0.0.5', '10.0.0.5; reboot', 'x']), ['-D -p tcp --reply-src 10.0.0.5 --state SYN_SENT', '-D -p udp --reply-src 10.0.0.5']);
});
