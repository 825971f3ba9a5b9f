// Progress lines: rewritten in place on a terminal (checked on a small model of a terminal that
// honours the two escape sequences used: cursor up, clear line), plain lines elsewhere.
import test from 'ava';
import { PassThrough } from 'node:stream';
import { progressPrinter } from '../src/live-lines.js';

/** What a terminal shows after `text`: lines, with ESC[nA moving up and ESC[2K clearing. */
function screen(text: string): string[] {
  const rows: string[] = [''];
  let row = 0;
  const ESC = String.fromCharCode(27);
  for (const tok of text.split(new RegExp(`(${ESC}\\[\\d*A|${ESC}\\[2K|\n)`))) {
    if (!tok) continue;
    const upm = new RegExp(`^${ESC}\\[(\\d*)A$`).exec(tok);
    if (upm) row = Math.max(0, row - Number(upm[1] || 1));
    else if (tok === '\x1b[2K') rows[row] = '';
    else if (tok === '\n') {
      row++;
      rows[row] ??= '';
    } else rows[row] = (rows[row] ?? '') + tok;
  }
  return rows.filter((r, i) => r !== '' || i < rows.length - 1);
}

function capture(isTTY: boolean) {
  const s = Object.assign(new PassThrough(), { isTTY, columns: 80 });
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  return { s, text: () => text };
}

test('on a terminal each task keeps one line, rewritten in place as its state changes', (t) => {
  const c = capture(true);
  const p = progressPrinter(c.s);
  p.print('1/2: assigned', 'slot 1');
  p.print('2/2: assigned', 'slot 2');
  p.print('1/2: preparing', 'slot 1');
  p.print('1/2: running', 'slot 1');
  p.print('2/2: running', 'slot 2');
  p.print('verify: Service converged', 'verify');
  t.deepEqual(screen(c.text()), ['1/2: running', '2/2: running', 'verify: Service converged']);
});

test('not on a terminal every line is written as it comes, with no escape sequence', (t) => {
  const c = capture(false);
  const p = progressPrinter(c.s);
  p.print('1/1: assigned', 'slot 1');
  p.print('1/1: running', 'slot 1');
  t.is(c.text(), '1/1: assigned\n1/1: running\n');
});
