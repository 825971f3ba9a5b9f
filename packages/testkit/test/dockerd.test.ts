import test from 'ava';
import { dockerFirewallChanges } from '../src/index.js';

const rules = (filter: string[], nat: string[] = ['-P PREROUTING ACCEPT']) => new Map([['filter', filter], ['nat', nat]]);

test("dockerFirewallChanges counts Docker's chains, rules naming its bridge and policy changes, not other tests' rules", (t) => {
  const before = rules(['-P INPUT ACCEPT', '-P FORWARD ACCEPT', '-A FORWARD -i swl1br -o swl1br -j ACCEPT']);
  // a local cluster's accept rule came and another went meanwhile: not dockerd's doing
  t.deepEqual(dockerFirewallChanges(before, rules(['-P INPUT ACCEPT', '-P FORWARD ACCEPT', '-A FORWARD -i swl2br -o swl2br -j ACCEPT']), ['dk0']), []);
  // what a dockerd with default options does
  const after = rules(
    ['-P INPUT ACCEPT', '-P FORWARD DROP', '-N DOCKER', '-A FORWARD -i swl1br -o swl1br -j ACCEPT', '-A FORWARD -o dk0 -j ACCEPT'],
    ['-P PREROUTING ACCEPT', '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE'],
  );
  t.deepEqual(dockerFirewallChanges(before, after, ['dk0']), [
    '-t filter added: -P FORWARD DROP',
    '-t filter added: -N DOCKER',
    '-t filter added: -A FORWARD -o dk0 -j ACCEPT',
    '-t filter removed: -P FORWARD ACCEPT',
    '-t nat added: -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
  ]);
});
