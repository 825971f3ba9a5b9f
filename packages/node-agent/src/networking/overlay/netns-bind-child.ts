/**
 * The child side of netns-bind.ts, started in the target netns: binds ADDR PORT (UDP and TCP),
 * sends both handles to the parent and exits once the parent has them.
 */
import { bindHere } from './netns-bind.js';

const [address, port] = process.argv.slice(2);
if (!process.send) {
  process.stderr.write('netns-bind-child: run by netns-bind.ts with an IPC channel\n');
  process.exit(2);
}
const send = process.send.bind(process);
bindHere(address, Number(port)).then(
  ({ udp, tcp }) => {
    send('udp', udp);
    send('tcp', tcp);
    process.on('message', () => process.exit(0));
  },
  (err: unknown) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  },
);
