/**
 * Regressions found by the simulation, each as small as it goes. (A problem found but not fixed
 * yet goes in as `test.failing`: it passes while the problem is there, and fails, so someone
 * removes the `.failing`, once it is fixed.)
 */
import test from 'ava';
import { ConfChange, ConfChangeType, EntryType, type ConfState, type Message, type RawNode } from '../src/types.js';
import { createRawNode } from '../src/raw-node.js';
import { MemoryStorage } from '../src/storage/memory-storage.js';
import { Prng } from '../src/testing/prng.js';
import { realCore } from '../src/testing/sim-core.js';
import { runSim } from '../src/testing/sim.js';

/** A tiny synchronous cluster: Ready loops and instant, lossless delivery (except cut members). */
class Cluster {
  nodes = new Map<number, { raw: RawNode; storage: MemoryStorage; conf: ConfState }>();
  cut = new Set<number>();
  private rng = new Prng(1);

  add(id: number, confState?: ConfState): void {
    const storage = new MemoryStorage(confState ? { confState } : {});
    const raw = createRawNode({ id, electionTicks: 10, heartbeatTicks: 1, storage, rng: this.rng.fork().asFunction() });
    this.nodes.set(id, { raw, storage, conf: confState ?? { voters: [], learners: [] } });
  }

  stabilize(): void {
    for (let round = 0; round < 1000; round++) {
      const msgs: Message[] = [];
      for (const n of this.nodes.values()) {
        while (n.raw.hasReady()) {
          const rd = n.raw.ready();
          if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
          n.storage.append(rd.entries);
          if (rd.hardState) n.storage.setHardState(rd.hardState);
          msgs.push(...rd.messages);
          for (const e of rd.committedEntries) if (e.type === EntryType.ENTRY_CONF_CHANGE) n.conf = n.raw.applyConfChange(ConfChange.decode(e.data));
          n.raw.advance();
        }
      }
      if (msgs.length === 0) return;
      for (const m of msgs) if (!this.cut.has(m.from) && !this.cut.has(m.to)) this.nodes.get(m.to)?.raw.step(m);
    }
  }
}

test('a member that joins with an empty log learns the initial voters given as MemoryStorage confState', (t) => {
  // Found by the simulation (bootstrap 'conf-state', seeds 1, 12, 31: state-machine safety).
  // Founding members bootstrapped with new MemoryStorage({ confState }) held the initial voters
  // in no log entry and in no snapshot at index ≥ 1. A member that joined later with an empty log
  // was sent entries from index 1 (not a snapshot), replayed the later conf changes on an EMPTY
  // configuration, and believed it was the only voter: cut off, it elected itself and committed
  // alone. Fixed in a234fde: the core writes the initial voters as committed conf-change entries
  // 1..n (etcd's Bootstrap).
  const c = new Cluster();
  const voters = { voters: [1, 2, 3], learners: [] };
  for (const id of [1, 2, 3]) c.add(id, voters);
  c.nodes.get(1)!.raw.campaign();
  c.stabilize();
  c.add(4);
  c.nodes.get(1)!.raw.proposeConfChange({ type: ConfChangeType.CONF_ADD_LEARNER, nodeId: 4, context: Buffer.alloc(0) });
  c.stabilize();
  c.nodes.get(1)!.raw.proposeConfChange({ type: ConfChangeType.CONF_ADD_NODE, nodeId: 4, context: Buffer.alloc(0) });
  c.stabilize();
  t.deepEqual(c.nodes.get(1)!.conf.voters, [1, 2, 3, 4]);
  // The new member must agree.
  t.deepEqual([...c.nodes.get(4)!.conf.voters].sort(), [1, 2, 3, 4]);
  // And, cut off, it must not become leader on its own.
  c.cut.add(4);
  for (let i = 0; i < 100; i++) c.nodes.get(4)!.raw.tick();
  c.stabilize();
  t.not(c.nodes.get(4)!.raw.status().role, 'leader');
});

test('the simulation seeds that showed the conf-state bootstrap hazard pass, with either bootstrap', (t) => {
  for (const seed of [1, 12, 31, 36, 38]) {
    for (const bootstrap of ['conf-state', 'snapshot'] as const) {
      const r = runSim(realCore, { seed, bootstrap });
      t.deepEqual(r.violations, [], `seed ${seed} (${bootstrap} bootstrap)`);
    }
  }
});
