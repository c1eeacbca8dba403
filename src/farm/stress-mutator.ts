/**
 * The stress tester's mutator: what each mutator thread (workers/stress-mutator.ts)
 * runs. It plays the CPU-side table owners, the guest changing its stage 1 and
 * KVM changing stage 2, on live tables that the farm's units are walking.
 *
 * Design: the main thread builds every table with the PageTable builder and
 * hands each mutator the arena offsets of the descriptors it alone changes:
 * the level-3 (leaf) descriptors of its pages, and the level-2 descriptors
 * that point at the leaf tables of its page groups. A mutator changes them
 * with single-copy atomic 64-bit stores (PhysMem.storeAt), exactly the store
 * the builder makes, with the attribute bits taken from descriptors the
 * builder wrote. (PageTable objects live in the thread that built them; their
 * allocators and bookkeeping cannot be shared, so a mutator never allocates
 * or frees a table: it breaks and restores table descriptors instead.)
 *
 * Every change is logged for the checker (src/farm/stress.ts) with two clock
 * stamps (the clock is FarmShared.stamps.clock, word 0):
 *   a = Atomics.add(clock) + 1 just BEFORE the descriptor store, and
 *   z = Atomics.add(clock) + 1 once the change is complete: after the sync
 *       that covers its invalidations returned, or, when the state it removed
 *       was invalid (map, table restore), right after the store: an invalid
 *       descriptor is never cached, so nothing older can be returned once the
 *       store is done.
 * The operations, each followed by the right invalidations and a sync:
 *   map      invalid -> valid                        (nothing to invalidate)
 *   unmap    valid -> invalid                        stage 1: TLBIVA (ASID, leaf); stage 2: TLBIIPAS2 (leaf) + TLBIVMID
 *   remap    break-before-make: valid -> invalid, invalidate, sync, then -> valid with a new target
 *   protect  valid -> valid with other permissions (same target), invalidated as unmap
 *   table    a level-2 table descriptor -> invalid (the table's pages vanish), TLBIVA non-leaf
 *            for each page (stage 2: TLBIIPAS2 non-leaf for each, + TLBIVMID) and a sync; it is
 *            restored (invalid -> valid) 16..271 operations later (both count as table ops)
 * KVM's rule: a stage-2 change is followed by TLBIVMID, because TLBIIPAS2 need
 * not remove combined stage 1+2 entries.
 */

import type { InvalidationScope } from '../cache/interface.js';
import { PhysMem, type PhysMemShared } from '../memory/phys.js';
import { Rng } from '../workload/rng.js';
import { FarmInvalidator } from './invalidator.js';
import { CTL_WORDS, UNIT_WORDS, U_BUSY, type FarmShared } from './layout.js';

/** The stress control words (Int32, Atomics). */
export const SC_STOP = 0;
export const SC_READY = 1;
/** 1 while the driver has a batch in flight: mutators change tables only then (see runMutator). */
export const SC_ACTIVE = 2;
export const SC_WORDS = 16;
/** Per mutator m, at SC_WORDS + m * SCM_WORDS: */
export const SCM_STARTED = 0; // changes started (bumped before the change's first stamp)
export const SCM_RECORDED = 1; // changes whose log record is complete
export const SCM_CONSUMED = 2; // records the checker has taken
export const SCM_WORDS = 16;

/** A log record: meta (Int32) comp, a, z, kind; value (Float64). */
export const LOG_META = 4;

/** Operation kinds (for statistics). */
export const OP_NAMES = ['map', 'unmap', 'remap', 'protect', 'table'] as const;
export type OpName = (typeof OP_NAMES)[number];

/** One group of pages sharing a leaf table, which one mutator owns. */
export interface GroupData {
  /** Component id and arena offset of the level-2 descriptor pointing at the leaf table, and its value. */
  tComp: number;
  tOff: number;
  tLo: number;
  tHi: number;
  /** Per page: component id, arena offset of its leaf descriptor, input address (VA or IPA), initial value. */
  comps: number[];
  offs: number[];
  addrs: number[];
  init: number[];
}

export interface OpMix {
  /** Fraction of operations that break and restore a leaf table. */
  table: number;
  /** Fraction of (leaf and table) operations at stage 2. */
  stage2: number;
  /** For a mapped page: remap, protect, and (the rest) unmap. */
  remap: number;
  protect: number;
}

export interface MutatorData {
  index: number;
  seed: number;
  mem: PhysMemShared;
  farm: FarmShared;
  inject: 'early-sync' | null;
  control: SharedArrayBuffer;
  logMeta: SharedArrayBuffer;
  logVal: SharedArrayBuffer;
  logCapacity: number;
  vmid: number;
  asid: number;
  s1: GroupData[];
  s2: GroupData[];
  /** Leaf attribute bits [lo, hi] for read-write and read-only, per stage (taken from builder descriptors). */
  s1Attrs: { rw: [number, number]; ro: [number, number] };
  s2Attrs: { rw: [number, number]; ro: [number, number] };
  /** The IPAs a stage-1 page may point at (value x*2 + ro names pool[x]). */
  pool: number[];
  /**
   * Hot spots, where changes race with translations most: with probability `fraction` a
   * change picks one of the first `pages` pages of the mutator's first group (at either
   * stage), and a stage-1 change that needs a target picks one of `pool` (pool indices of
   * the stage-2 hot pages). The driver sends the same fraction of its requests to them.
   */
  hot: { fraction: number; pages: number; pool: number[] };
  mix: OpMix;
  /** Sync latency samples kept (reservoir beyond). */
  maxSamples: number;
}

export interface MutatorResult {
  index: number;
  changes: number;
  ops: Record<OpName, number>;
  invalidations: number;
  syncs: number;
  /** Sync latencies in microseconds (all of them, or a uniform sample when there were more than maxSamples). */
  syncUs: Float64Array;
  syncCount: number;
  maxUs: number;
}

const TWO32 = 4294967296;

/**
 * Values of a leaf component: -1 invalid; stage 1: x * 2 + ro (pool[x] is the IPA);
 * stage 2: pa + ro (pa is 4 KiB aligned). Tables: 0 present, -1 broken.
 */
export const INVALID = -1;

export function runMutator(d: MutatorData): MutatorResult {
  const mem = PhysMem.attach(d.mem);
  const inv = new FarmInvalidator(d.farm, { inject: d.inject, yieldAfterSpins: 2000 });
  const clock = new Int32Array(d.farm.stamps!.clock);
  const sc = new Int32Array(d.control);
  const mb = SC_WORDS + d.index * SCM_WORDS;
  const meta = new Int32Array(d.logMeta);
  const vals = new Float64Array(d.logVal);
  const cap = d.logCapacity;
  const rng = new Rng(d.seed);
  const sampler = new Rng(d.seed ^ 0x5a5a5a5a); // the latency reservoir's own draws
  const ops: Record<OpName, number> = { map: 0, unmap: 0, remap: 0, protect: 0, table: 0 };
  let invalidations = 0;
  let syncs = 0;
  let changes = 0;
  let recorded = 0;
  const samples = new Float64Array(d.maxSamples);
  let nSamples = 0;
  let maxUs = 0;
  const cur1 = d.s1.map((g) => [...g.init]);
  const cur2 = d.s2.map((g) => [...g.init]);
  let paSerial = 0;

  const freshPa = (): number => {
    // A new output address each time, whose high and low words both differ from the last
    // ones (so that a torn read gives an address that was never written).
    paSerial++;
    const hi = 1 + ((paSerial * 40503 + d.index * 7919) % 0xfffe);
    const loPage = Math.imul(paSerial, 0x9e3779b1) >>> 12;
    return hi * TWO32 + loPage * 4096;
  };

  const encode = (stage: 1 | 2, value: number): [number, number] => {
    if (value === INVALID) return [0, 0];
    const ro = value % 2 === 1;
    const target = stage === 1 ? d.pool[(value - (ro ? 1 : 0)) / 2]! : value - (ro ? 1 : 0);
    const attrs = stage === 1 ? d.s1Attrs : d.s2Attrs;
    const [alo, ahi] = ro ? attrs.ro : attrs.rw;
    return [((target >>> 0) & 0xfffff000) | alo | 0, (Math.floor(target / TWO32) & 0xffff) | ahi | 0];
  };

  const stamp = (): number => Atomics.add(clock, 0, 1) + 1;

  const farmCtl = new Int32Array(d.farm.control);
  const anyBusy = (): boolean => {
    for (let u = 0; u < d.farm.units; u++) if (Atomics.load(farmCtl, CTL_WORDS + u * UNIT_WORDS + U_BUSY) === 1) return true;
    return false;
  };

  const timedSync = (): void => {
    const t0 = performance.now();
    inv.sync();
    const us = (performance.now() - t0) * 1000;
    syncs++;
    if (us > maxUs) maxUs = us;
    if (nSamples < samples.length) samples[nSamples++] = us;
    else {
      const j = Math.floor(sampler.float() * syncs);
      if (j < samples.length) samples[j] = us;
    }
  };

  const publish = (scope: InvalidationScope): void => {
    inv.invalidate(scope);
    invalidations++;
  };

  /**
   * Waits for room in the log (the checker consumes it after every batch) and, with `active`,
   * for a batch in flight: changes are made while the units translate, when they race with
   * walks and syncs have busy units to wait for, and the mutator sleeps while the driver checks.
   */
  const waitRoom = (active: boolean): boolean => {
    for (;;) {
      if (Atomics.load(sc, SC_STOP) !== 0) return false;
      if (active) {
        if (Atomics.load(sc, SC_ACTIVE) === 0) {
          Atomics.wait(sc, SC_ACTIVE, 0, 5);
          continue;
        }
        if (!anyBusy()) {
          // The batch is in flight but no unit has started (or all have finished) it.
          Atomics.wait(sc, SC_ACTIVE, 1, 0.01);
          continue;
        }
      }
      const consumed = Atomics.load(sc, mb + SCM_CONSUMED);
      if (recorded - consumed < cap) return true;
      Atomics.wait(sc, mb + SCM_CONSUMED, consumed, 1);
    }
  };

  /**
   * One change: store (lo, hi) at `off`, then run `invalidate` (publishing TLBIs) and sync; or,
   * with no invalidation needed, complete at once. Logs {comp, value, a, z}.
   */
  const change = (comp: number, off: number, lo: number, hi: number, value: number, invalidate: (() => void) | null): void => {
    Atomics.add(sc, mb + SCM_STARTED, 1);
    const a = stamp();
    mem.storeAt(off, lo, hi);
    if (invalidate !== null) {
      invalidate();
      timedSync();
    }
    const z = stamp();
    const r = recorded % cap;
    meta[r * LOG_META] = comp;
    meta[r * LOG_META + 1] = a;
    meta[r * LOG_META + 2] = z;
    vals[r] = value;
    recorded++;
    changes++;
    Atomics.store(sc, mb + SCM_RECORDED, recorded);
  };

  const s1Inv = (va: number, leaf: boolean): InvalidationScope => ({ kind: 'va', vmid: d.vmid, asid: d.asid, allAsids: false, va, leaf });
  const s2Inv = (ipa: number, leaf: boolean): InvalidationScope => ({ kind: 'ipa', vmid: d.vmid, ipa, leaf });
  const vmidInv: InvalidationScope = { kind: 'vmid', vmid: d.vmid };

  const leafOp = (stage: 1 | 2): void => {
    const groups = stage === 1 ? d.s1 : d.s2;
    const cur = stage === 1 ? cur1 : cur2;
    if (groups.length === 0) return;
    const hot = rng.float() < d.hot.fraction;
    const gi = hot ? 0 : rng.below(groups.length);
    const g = groups[gi]!;
    const pi = rng.below(hot ? Math.min(d.hot.pages, g.comps.length) : g.comps.length);
    const comp = g.comps[pi]!;
    const off = g.offs[pi]!;
    const addr = g.addrs[pi]!;
    const old = cur[gi]![pi]!;
    const invalidate =
      stage === 1
        ? () => publish(s1Inv(addr, true))
        : () => {
            publish(s2Inv(addr, true));
            publish(vmidInv);
          };
    const newTarget = (): number => {
      const ro = rng.float() < 0.2 ? 1 : 0;
      if (stage === 2) return freshPa() + ro;
      const x = rng.float() < d.hot.fraction ? d.hot.pool[rng.below(d.hot.pool.length)]! : rng.below(d.pool.length);
      return x * 2 + ro;
    };
    const put = (value: number, inval: (() => void) | null): void => {
      const [lo, hi] = encode(stage, value);
      change(comp, off, lo, hi, value, inval);
      cur[gi]![pi] = value;
    };
    if (old === INVALID) {
      ops.map++;
      put(newTarget(), null);
      return;
    }
    const r = rng.float();
    if (r < d.mix.remap) {
      ops.remap++;
      put(INVALID, invalidate); // break ...
      if (!waitRoom(false)) return;
      put(newTarget(), null); // ... make
    } else if (r < d.mix.remap + d.mix.protect) {
      ops.protect++;
      put(old % 2 === 1 ? old - 1 : old + 1, invalidate);
    } else {
      ops.unmap++;
      put(INVALID, invalidate);
    }
  };

  // Broken tables, restored by the op loop once `restoreAt` (an op count) has passed.
  const broken: Array<{ stage: 1 | 2; g: GroupData; restoreAt: number }> = [];
  let opCount = 0;
  const isBroken = (g: GroupData): boolean => broken.some((b) => b.g === g);
  const restore = (i: number): void => {
    const { g } = broken[i]!;
    broken.splice(i, 1);
    ops.table++;
    change(g.tComp, g.tOff, g.tLo, g.tHi, 0, null); // invalid -> valid: nothing to invalidate
  };
  const tableOp = (stage: 1 | 2): void => {
    const groups = stage === 1 ? d.s1 : d.s2;
    if (groups.length === 0) return;
    const g = groups[rng.below(groups.length)]!;
    if (isBroken(g)) return;
    ops.table++;
    // Break it: its pages vanish until the table is restored 16..271 operations later (their
    // leaves may change meanwhile). Non-leaf invalidations, since a table went away.
    change(g.tComp, g.tOff, 0, 0, INVALID, () => {
      for (const addr of g.addrs) publish(stage === 1 ? s1Inv(addr, false) : s2Inv(addr, false));
      if (stage === 2) publish(vmidInv);
    });
    broken.push({ stage, g, restoreAt: opCount + 16 + rng.below(256) });
  };


  Atomics.add(sc, SC_READY, 1);
  Atomics.notify(sc, SC_READY);
  while (waitRoom(true)) {
    opCount++;
    const due = broken.findIndex((b) => b.restoreAt <= opCount);
    if (due >= 0) {
      restore(due);
      continue;
    }
    const stage: 1 | 2 = rng.float() < d.mix.stage2 ? 2 : 1;
    if (rng.float() < d.mix.table) tableOp(stage);
    else leafOp(stage);
  }
  const n = Math.min(nSamples, samples.length);
  return { index: d.index, changes, ops, invalidations, syncs, syncUs: samples.slice(0, n), syncCount: syncs, maxUs };
}
