/**
 * Deliberately broken wrappers of a core, to prove the simulation's checks are wired in: each
 * must make the simulation report violations.
 */
import { NotLeaderError, type RawNode, type ReadState, type Ready } from '../types.js';
import type { SimCore } from './sim.js';

/** A RawNode that forwards every call to raw (with raw as `this`), except the overrides. */
export function wrapRawNode(raw: RawNode, overrides: Partial<RawNode>): RawNode {
  const base: RawNode = {
    tick: () => raw.tick(),
    campaign: () => raw.campaign(),
    step: (m) => raw.step(m),
    propose: (d) => raw.propose(d),
    proposeConfChange: (cc) => raw.proposeConfChange(cc),
    applyConfChange: (cc) => raw.applyConfChange(cc),
    transferLeader: (to) => raw.transferLeader(to),
    readIndex: (ctx) => raw.readIndex(ctx),
    reportUnreachable: (id) => raw.reportUnreachable(id),
    reportSnapshot: (id, ok) => raw.reportSnapshot(id, ok),
    hasReady: () => raw.hasReady(),
    ready: () => raw.ready(),
    advance: () => raw.advance(),
    status: () => raw.status(),
  };
  return { ...base, ...overrides };
}

/** A driver that never fsyncs: every Ready says mustSync false, so crashes lose votes and acked entries. */
export function noSyncCore(core: SimCore): SimCore {
  return {
    createStorage: (cs) => core.createStorage(cs),
    createRawNode(config) {
      const raw = core.createRawNode(config);
      return wrapRawNode(raw, { ready: (): Ready => ({ ...raw.ready(), mustSync: false }) });
    },
  };
}

/**
 * A leader that answers ReadIndex at once with its commit index, without a heartbeat round to
 * confirm it is still the leader (a lease read with no lease): a deposed leader serves stale reads.
 */
export function unconfirmedReadIndexCore(core: SimCore): SimCore {
  return {
    createStorage: (cs) => core.createStorage(cs),
    createRawNode(config) {
      const raw = core.createRawNode(config);
      const pending: ReadState[] = [];
      return wrapRawNode(raw, {
        readIndex(ctx) {
          const st = raw.status();
          if (st.role !== 'leader') throw new NotLeaderError(st.leaderId, 'read');
          pending.push({ index: st.commit, requestCtx: ctx });
        },
        hasReady: () => pending.length > 0 || raw.hasReady(),
        ready(): Ready {
          const rd = raw.ready();
          return { ...rd, readStates: [...rd.readStates, ...pending.splice(0)] };
        },
      });
    },
  };
}
