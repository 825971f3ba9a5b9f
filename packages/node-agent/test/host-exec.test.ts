import test from 'ava';
import { failedSteps, NFT, PARALLEL_STEPS, scriptText } from '../src/networking/host-exec.js';

test('a script: ip/bridge batches and nft transactions from heredocs, in a netns with nsenter, set -e', (t) => {
  const s = scriptText([
    { lines: ['link add a type dummy'] },
    { tool: 'bridge', force: true, lines: ['fdb del x'] },
    { nsPath: '/run/netns/t1', tool: 'nft', lines: ['table ip x {', '}'] },
    { lines: [] },
  ]);
  t.is(
    s,
    [
      'set -e',
      "ip -batch - <<'EOF'",
      'link add a type dummy',
      'EOF',
      "bridge -force -batch - <<'EOF' || true",
      'fdb del x',
      'EOF',
      `nsenter --net=/run/netns/t1 ${NFT} -f /dev/stdin <<'EOF'`,
      'table ip x {',
      '}',
      'EOF',
    ].join('\n'),
  );
});

test('labelled parallel steps run in the background, waited for in groups of PARALLEL_STEPS and before the next step that is not parallel', (t) => {
  const par = (i: number) => ({ nsPath: `/run/netns/t${i}`, tool: 'nft' as const, label: `s${i}`, parallel: true, lines: ['add table ip x'] });
  const steps = [...Array.from({ length: PARALLEL_STEPS + 2 }, (_, i) => par(i)), { lines: ['link del a'] }, par(99)];
  const lines = scriptText(steps).split('\n');
  const heads = lines.filter((l) => l.includes('<<') || l === 'wait');
  t.is(heads[0], `nsenter --net=/run/netns/t0 ${NFT} -f /dev/stdin <<'EOF' || echo swarmd-step-failed s0 &`);
  t.is(heads[PARALLEL_STEPS], 'wait');
  t.is(heads[PARALLEL_STEPS + 3], 'wait', 'before the step that is not parallel');
  t.is(heads[PARALLEL_STEPS + 4], "ip -batch - <<'EOF'");
  t.is(heads.at(-1), 'wait', 'at the end');
  t.is(heads.filter((l) => l === 'wait').length, 3);
  const unlabelled = scriptText([{ tool: 'nft', parallel: true, lines: ['add table ip x'] }]);
  t.false(unlabelled.includes('&'), 'a parallel step needs a label (its failure is reported by it)');
});

test('failed steps: the labels the script printed', (t) => {
  t.deepEqual([...failedSteps({ code: 0, stderr: '', stdout: 'swarmd-step-failed vip3\nnoise\nswarmd-step-failed vip7\n' })], ['vip3', 'vip7']);
});

test('conntrack steps: one command per line, after the background steps before them, never failing the script (it exits 1 when nothing matched)', (t) => {
  const s = scriptText([
    { nsPath: '/run/netns/t1', tool: 'nft', label: 'vip0', parallel: true, lines: ['add table ip x'] },
    { nsPath: '/run/netns/t1', tool: 'conntrack', lines: ['-D -p tcp --reply-src 10.0.0.5 --state SYN_SENT', '-D -p udp --reply-src 10.0.0.5'] },
  ]);
  const lines = s.split('\n');
  const wait = lines.indexOf('wait');
  const first = lines.indexOf('nsenter --net=/run/netns/t1 conntrack -D -p tcp --reply-src 10.0.0.5 --state SYN_SENT >/dev/null 2>&1 || true');
  t.true(wait > 0 && first > wait, s);
  t.is(lines[first + 1], 'nsenter --net=/run/netns/t1 conntrack -D -p udp --reply-src 10.0.0.5 >/dev/null 2>&1 || true');
  const par = scriptText([1, 2].map((i) => ({ nsPath: `/run/netns/t${i}`, tool: 'conntrack' as const, label: `ct${i}`, parallel: true, lines: ['-D -p udp --reply-src 10.0.0.5'] })));
  t.is(
    par,
    ['set -e', ...[1, 2].flatMap((i) => ['{', `nsenter --net=/run/netns/t${i} conntrack -D -p udp --reply-src 10.0.0.5 >/dev/null 2>&1 || true`, '} &']), 'wait'].join('\n'),
    'labelled parallel ones: each netns in the background, waited for',
  );
});
