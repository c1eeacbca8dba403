/**
 * The publisher side of the farm's invalidation protocol, usable from any
 * thread: the farm's driver (Farm.invalidate / Farm.sync delegate here), or a
 * CPU-side table owner in another worker (the stress tester's mutators), each
 * with its own `FarmInvalidator` attached to the same `FarmShared`.
 *
 * The protocol (the unit side is in unit.ts):
 * - Publish: write the entry at CTL_PUBLISHED % INV_RING, then advance
 *   CTL_PUBLISHED (sequentially consistent). A publisher never laps a busy
 *   unit (it waits for it to acknowledge); idle units may be lapped and flush
 *   on wake.
 * - Several threads may publish: they take CTL_PUB_LOCK around the two steps
 *   above, so each entry is written by one publisher and CTL_PUBLISHED only
 *   ever advances over complete entries. (With a single publisher the lock is
 *   one uncontended compare-and-swap and one store.)
 * - Sync (TLBSYNC): for every unit, wait until it is idle (U_BUSY = 0) or has
 *   acknowledged (U_ACKED >= the number of invalidations published when the
 *   sync began). A sync from one thread covers every invalidation published
 *   before it, by any thread.
 */

import type { InvalidationScope } from '../cache/interface.js';
import {
  CTL_PUBLISHED,
  CTL_PUB_LOCK,
  CTL_WORDS,
  INV_ADDR,
  INV_ALL_ASIDS,
  INV_ASID,
  INV_CB,
  INV_FIELDS,
  INV_KIND,
  INV_KINDS,
  INV_LEAF,
  INV_RING,
  INV_VMID,
  UNIT_WORDS,
  U_ACKED,
  U_BUSY,
  type FarmShared,
} from './layout.js';

export interface InvalidatorOptions {
  /**
   * Deliberately broken variant for the stress tester (src/farm/inject.ts): 'early-sync'
   * makes `sync()` return at once, before any unit has acknowledged. Default: none.
   */
  inject?: 'early-sync' | null;
  /**
   * How `sync()` waits: spin (the default, the measured fastest wait when every thread has a
   * core), or, with a number, spin that many times per unit and then give the core away in
   * 10 µs sleeps: what a thread that shares its cores with the units needs (the stress
   * tester's mutators), since spinning there keeps the unit it waits for off the core.
   */
  yieldAfterSpins?: number;
  /**
   * 'spin' (default) polls the units' words; 'wait' blocks in Atomics.wait on each unit's
   * acknowledgement word (units notify it when they acknowledge or go idle), with a 1 ms
   * timeout as a safety net. `syncAsync()` is the Atomics.waitAsync form for event-loop threads.
   * bench/farm.ts measures the three side by side (results/farm.md); `sync()` spins, the fastest.
   */
  wait?: 'spin' | 'wait';
}

export class FarmInvalidator {
  private readonly ctl: Int32Array;
  private readonly inv: Float64Array;
  private readonly units: number;
  private readonly earlySync: boolean;
  private readonly yieldAfter: number;
  private readonly blocking: boolean;

  constructor(shared: FarmShared, opts: InvalidatorOptions = {}) {
    this.ctl = new Int32Array(shared.control);
    this.inv = new Float64Array(shared.invalidations);
    this.units = shared.units;
    this.earlySync = opts.inject === 'early-sync';
    this.yieldAfter = opts.yieldAfterSpins ?? Infinity;
    this.blocking = opts.wait === 'wait';
  }

  private u(unit: number, word: number): number {
    return CTL_WORDS + unit * UNIT_WORDS + word;
  }

  private lock(): void {
    let spins = 0;
    while (Atomics.compareExchange(this.ctl, CTL_PUB_LOCK, 0, 1) !== 0) {
      // Held by another publisher for a few stores; if it was descheduled, stop burning the core.
      if (++spins > 1000) Atomics.wait(this.ctl, CTL_PUB_LOCK, 1, 0.05);
    }
  }

  /** Invalidations published so far (by every thread). */
  published(): number {
    return Atomics.load(this.ctl, CTL_PUBLISHED);
  }

  /** Publishes one invalidation; returns its sequence number + 1 (what a sync waits for). */
  invalidate(scope: InvalidationScope): number {
    this.lock();
    try {
      const seq = Atomics.load(this.ctl, CTL_PUBLISHED);
      // Never lap a busy unit: wait until every busy unit is within the ring.
      for (let u = 0; u < this.units; u++) {
        while (Atomics.load(this.ctl, this.u(u, U_BUSY)) === 1 && seq - Atomics.load(this.ctl, this.u(u, U_ACKED)) >= INV_RING - 1) {
          Atomics.wait(this.ctl, this.u(u, U_ACKED), Atomics.load(this.ctl, this.u(u, U_ACKED)), 1);
        }
      }
      const o = (seq % INV_RING) * INV_FIELDS;
      const f = this.inv;
      f.fill(0, o, o + INV_FIELDS);
      f[o + INV_KIND] = INV_KINDS.indexOf(scope.kind);
      if ('vmid' in scope) f[o + INV_VMID] = scope.vmid;
      if (scope.kind === 'context') f[o + INV_CB] = scope.cb;
      if (scope.kind === 'asid' || scope.kind === 'va') f[o + INV_ASID] = scope.asid;
      if (scope.kind === 'va') {
        f[o + INV_ALL_ASIDS] = scope.allAsids ? 1 : 0;
        f[o + INV_ADDR] = scope.va;
        f[o + INV_LEAF] = scope.leaf ? 1 : 0;
      }
      if (scope.kind === 'ipa') {
        f[o + INV_ADDR] = scope.ipa;
        f[o + INV_LEAF] = scope.leaf ? 1 : 0;
      }
      Atomics.store(this.ctl, CTL_PUBLISHED, seq + 1);
      return seq + 1;
    } finally {
      Atomics.store(this.ctl, CTL_PUB_LOCK, 0);
    }
  }

  /**
   * TLBSYNC: returns once every unit is idle or has applied every invalidation published
   * before this call. Spins (the measured fastest wait here; see bench/farm.ts).
   */
  sync(): void {
    if (this.earlySync) return; // injected bug: return before the acknowledgements
    const target = Atomics.load(this.ctl, CTL_PUBLISHED);
    for (let u = 0; u < this.units; u++) {
      const busy = this.u(u, U_BUSY);
      const acked = this.u(u, U_ACKED);
      let spins = 0;
      for (;;) {
        const a = Atomics.load(this.ctl, acked);
        if (Atomics.load(this.ctl, busy) !== 1 || a >= target) break;
        if (this.blocking) Atomics.wait(this.ctl, acked, a, 1);
        else if (++spins > this.yieldAfter) Atomics.wait(this.ctl, acked, a, 0.01);
      }
    }
  }

  /**
   * TLBSYNC for a thread that must not block: the same condition, awaited with Atomics.waitAsync.
   * Caution: a pending waitAsync does not keep Node's event loop alive; a caller with nothing
   * else pending must hold a timer while it awaits this.
   */
  async syncAsync(): Promise<void> {
    if (this.earlySync) return;
    const target = Atomics.load(this.ctl, CTL_PUBLISHED);
    for (let u = 0; u < this.units; u++) {
      const busy = this.u(u, U_BUSY);
      const acked = this.u(u, U_ACKED);
      for (;;) {
        const a = Atomics.load(this.ctl, acked);
        if (Atomics.load(this.ctl, busy) !== 1 || a >= target) break;
        const r = (Atomics as unknown as { waitAsync(t: Int32Array, i: number, v: number, ms: number): { async: boolean; value: Promise<string> | string } }).waitAsync(this.ctl, acked, a, 1);
        if (r.async) await r.value;
      }
    }
  }
}
