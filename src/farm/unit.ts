/**
 * A translation unit: what one farm worker runs. Like an SMMU's TBU it owns
 * its caches and translates the requests handed to it, from shared request
 * buffers into shared result buffers.
 *
 * The invalidation protocol, unit side:
 * - Idle: wait on the doorbell with U_BUSY = 0. A sync does not wait for an
 *   idle unit; the unit has promised to catch up before it translates again.
 * - Becoming busy: store U_BUSY = 1, THEN read CTL_PUBLISHED and apply every
 *   invalidation published so far (store U_ACKED). Both are sequentially
 *   consistent Atomics, so a sync that saw U_BUSY = 0 published before the
 *   unit read CTL_PUBLISHED: the unit cannot miss it.
 * - While busy: every `pollEvery` translations, apply what has been
 *   published and store U_ACKED. A walk is one synchronous call, so no walk
 *   spans an application: entries a walk filled before the application are
 *   removed by it, and walks after it read the changed tables.
 * - A unit that fell more than INV_RING invalidations behind (the ring
 *   lapped it while idle) flushes its caches entirely.
 *
 * With stamps (FarmShared.stamps, the stress tester only) a batch runs
 * `translateRangeStamped`, a copy of the ordinary loop that also records the
 * logical clock before and after each translation; `init.inject` selects one
 * of the deliberately broken variants of src/farm/inject.ts.
 */

import { TranslationCaches, type CacheConfig } from '../cache/caches.js';
import { NoCache, type InvalidationScope, type TranslationCache } from '../cache/interface.js';
import { PhysMem, type PhysMemShared } from '../memory/phys.js';
import { Regime } from '../pgtable/regime.js';
import { ACC_EXEC, ACC_READ, ACC_UNPRIV, ACC_WRITE, WalkResult } from '../walk/result.js';
import { CTX_ABORT, CTX_BYPASS, readContext } from './config.js';
import { TearingPhysMem, type UnitInject } from './inject.js';
import {
  CTL_CONFIG_GEN,
  CTL_MODE,
  CTL_PUBLISHED,
  CTL_QUEUE_END,
  CTL_QUEUE_NEXT,
  CTL_STOP,
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
  MAX_CONTEXTS,
  STAT_FIELDS,
  S_ABORTS,
  S_BATCHES,
  S_BUSY_NS,
  S_FAULTS,
  S_FULL_FLUSHES,
  S_HITS,
  S_INVALIDATIONS,
  S_READS,
  S_TRANSLATIONS,
  S_WALKS,
  UNIT_WORDS,
  U_ACKED,
  U_BUSY,
  U_COUNT,
  U_COUNT1,
  U_DONE,
  U_DOORBELL,
  U_READY,
  type FarmShared,
} from './layout.js';

/** Access codes in request buffers: bit 0-1 kind (0 r, 1 w, 2 x), bit 2 unprivileged. */
export const REQ_READ = 0;
export const REQ_WRITE = 1;
export const REQ_EXEC = 2;
export const REQ_UNPRIV = 4;

/** Result status codes: 0 = translated (pa), -1 = aborted by configuration, >0 = the walker's fault type. */
export const RES_OK = 0;
export const RES_ABORT = -1;

export interface UnitInit {
  shared: FarmShared;
  mem: PhysMemShared;
  unit: number;
  cache: CacheConfig | null;
  /** Translations between invalidation polls while busy. */
  pollEvery: number;
  /** Requests a unit takes at a time from the shared queue (dynamic distribution). */
  chunk: number;
  /** A deliberately broken variant for the stress tester (src/farm/inject.ts); default none. */
  inject?: UnitInject | null;
}

export interface UnitSummary {
  unit: number;
  batches: number;
}

const FLUSH_ALL: InvalidationScope = { kind: 'all' };

/** The walker's access code (ACC_*) for a request's access code (REQ_*: kind in bits [1:0], REQ_UNPRIV). */
function walkAccess(a: number): number {
  const kind = a & 3;
  return (kind === REQ_WRITE ? ACC_WRITE : kind === REQ_EXEC ? ACC_EXEC : ACC_READ) | ((a & REQ_UNPRIV) !== 0 ? ACC_UNPRIV : 0);
}

export class Unit {
  private readonly ctl: Int32Array;
  private readonly base: number;
  private readonly inv: Float64Array;
  private readonly config: Float64Array;
  private readonly streams: Int32Array;
  private readonly stats: Float64Array;
  private readonly statBase: number;
  private readonly mem: PhysMem;
  readonly cache: TranslationCache;
  private readonly regimes: Regime[] = [];
  private readonly modes = new Int32Array(MAX_CONTEXTS);
  private configGen = -1;
  private applied = 0;
  private readonly res = new WalkResult();
  private readonly walksBefore: () => number;
  private readonly hitsBefore: () => number;
  private readonly readsBefore: () => number;
  /** Injected `skip-ack`: acknowledge invalidations without applying them. */
  private readonly skipApply: boolean;
  /** Stamp views (stress tester), or null. */
  private readonly clock: Int32Array | null;

  constructor(readonly init: UnitInit) {
    const s = init.shared;
    this.ctl = new Int32Array(s.control);
    this.base = CTL_WORDS + init.unit * UNIT_WORDS;
    this.inv = new Float64Array(s.invalidations);
    this.config = new Float64Array(s.config);
    this.streams = new Int32Array(s.streams);
    this.stats = new Float64Array(s.stats);
    this.statBase = init.unit * STAT_FIELDS;
    this.mem = init.inject === 'torn-read' ? TearingPhysMem.attachTearing(init.mem) : PhysMem.attach(init.mem);
    this.skipApply = init.inject === 'skip-ack';
    this.clock = s.stamps === undefined ? null : new Int32Array(s.stamps.clock);
    // A shared TLB, if the configuration has one, is the farm's single storage (FarmShared.sharedTlb).
    const caches = init.cache === null ? null : new TranslationCaches(init.cache, s.sharedTlb !== undefined ? { sharedTlb: s.sharedTlb } : {});
    if (init.inject === 'late-fill' && caches !== null) {
      caches.enforceEpoch = false;
      caches.afterWalk = () => this.catchUp(); // applies (and acknowledges) invalidations mid-walk
    }
    this.cache = caches ?? new NoCache();
    this.walksBefore = caches === null ? () => 0 : () => caches.stats.walks;
    this.hitsBefore = caches === null ? () => 0 : () => caches.stats.hits;
    this.readsBefore = caches === null ? () => 0 : () => caches.stats.descriptorReads;
    for (let i = 0; i < MAX_CONTEXTS; i++) this.regimes.push(new Regime());
  }

  /** Applies every invalidation published so far, then acknowledges. */
  catchUp(): void {
    const published = Atomics.load(this.ctl, CTL_PUBLISHED);
    if (published === this.applied) return;
    if (this.skipApply) {
      // Injected bug: acknowledge below without applying anything.
    } else if (published - this.applied > INV_RING) {
      this.cache.invalidate(FLUSH_ALL);
      this.stats[this.statBase + S_FULL_FLUSHES]!++;
    } else {
      for (let seq = this.applied; seq < published; seq++) this.cache.invalidate(this.decode(seq));
      // If a publisher lapped us while we read, some entries may have been overwritten: flush.
      if (Atomics.load(this.ctl, CTL_PUBLISHED) - this.applied > INV_RING) {
        this.cache.invalidate(FLUSH_ALL);
        this.stats[this.statBase + S_FULL_FLUSHES]!++;
      }
    }
    this.stats[this.statBase + S_INVALIDATIONS]! += published - this.applied;
    this.applied = published;
    Atomics.store(this.ctl, this.base + U_ACKED, published);
    // Wake a sync that waits (Atomics.wait / waitAsync) rather than spins.
    Atomics.notify(this.ctl, this.base + U_ACKED);
  }

  private decode(seq: number): InvalidationScope {
    const o = (seq % INV_RING) * INV_FIELDS;
    const f = this.inv;
    const kind = INV_KINDS[f[o + INV_KIND]!]!;
    const vmid = f[o + INV_VMID]!;
    switch (kind) {
      case 'all':
        return { kind };
      case 'vmid':
        return { kind, vmid };
      case 'context':
        return { kind, cb: f[o + INV_CB]!, vmid };
      case 'asid':
        return { kind, vmid, asid: f[o + INV_ASID]! };
      case 'va':
        return { kind, vmid, asid: f[o + INV_ASID]!, allAsids: f[o + INV_ALL_ASIDS] === 1, va: f[o + INV_ADDR]!, leaf: f[o + INV_LEAF] === 1 };
      case 'ipa':
        return { kind, vmid, ipa: f[o + INV_ADDR]!, leaf: f[o + INV_LEAF] === 1 };
    }
  }

  private reloadConfig(): void {
    const gen = Atomics.load(this.ctl, CTL_CONFIG_GEN);
    if (gen === this.configGen) return;
    for (let i = 0; i < MAX_CONTEXTS; i++) this.modes[i] = readContext(this.config, i, this.regimes[i]!);
    this.configGen = gen;
  }

  /** Translates requests [from, to) of one request/result buffer set. */
  private translateRange(sids: Int32Array, vas: Float64Array, accs: Uint8Array, pas: Float64Array, status: Int8Array, from: number, to: number): void {
    const res = this.res;
    const poll = this.init.pollEvery;
    let untilPoll = 0;
    const st = this.stats;
    const sb = this.statBase;
    let faults = 0;
    let aborts = 0;
    for (let i = from; i < to; i++) {
      // Poll every `poll` translations (a countdown: a modulo per translation costs more than the poll).
      if (--untilPoll <= 0) {
        untilPoll = poll;
        // The common case is one atomic load: nothing new was published.
        if (Atomics.load(this.ctl, CTL_PUBLISHED) !== this.applied) this.catchUp();
      }
      const sid = sids[i]!;
      const va = vas[i]!;
      const ctx = sid >= 0 && sid < this.streams.length ? this.streams[sid]! : -1;
      const mode = ctx < 0 ? CTX_ABORT : this.modes[ctx]!;
      if (mode === CTX_BYPASS) {
        pas[i] = va;
        status[i] = RES_OK;
        continue;
      }
      if (mode === CTX_ABORT) {
        status[i] = RES_ABORT;
        aborts++;
        continue;
      }
      const acc = walkAccess(accs[i]!);
      const regime = this.regimes[ctx]!;
      if (this.cache.translate(this.mem, regime, regime.cb, sid, va, acc, res)) {
        pas[i] = res.pa;
        status[i] = RES_OK;
      } else {
        status[i] = res.fault;
        faults++;
      }
    }
    st[sb + S_TRANSLATIONS]! += to - from;
    st[sb + S_FAULTS]! += faults;
    st[sb + S_ABORTS]! += aborts;
  }

  /**
   * `translateRange` with stamps (the stress tester): the logical clock is read with
   * Atomics.load immediately before and after each translation (sequentially consistent, so
   * a change stamped after its write / after its sync orders exactly against them), and a
   * fault records its stage (-1: stage 1) or its faulting IPA (stage 2). Kept as a copy so the
   * ordinary loop carries no per-translation check.
   */
  private translateRangeStamped(
    sids: Int32Array,
    vas: Float64Array,
    accs: Uint8Array,
    pas: Float64Array,
    status: Int8Array,
    t0s: Int32Array,
    t1s: Int32Array,
    detail: Float64Array,
    from: number,
    to: number,
  ): void {
    const res = this.res;
    const poll = this.init.pollEvery;
    let untilPoll = 0;
    const st = this.stats;
    const sb = this.statBase;
    const clock = this.clock!;
    let faults = 0;
    let aborts = 0;
    for (let i = from; i < to; i++) {
      // Poll every `poll` translations (a countdown: a modulo per translation costs more than the poll).
      if (--untilPoll <= 0) {
        untilPoll = poll;
        // The common case is one atomic load: nothing new was published.
        if (Atomics.load(this.ctl, CTL_PUBLISHED) !== this.applied) this.catchUp();
      }
      t0s[i] = Atomics.load(clock, 0);
      const sid = sids[i]!;
      const va = vas[i]!;
      const ctx = sid >= 0 && sid < this.streams.length ? this.streams[sid]! : -1;
      const mode = ctx < 0 ? CTX_ABORT : this.modes[ctx]!;
      if (mode === CTX_BYPASS) {
        pas[i] = va;
        status[i] = RES_OK;
        detail[i] = 0;
      } else if (mode === CTX_ABORT) {
        status[i] = RES_ABORT;
        detail[i] = 0;
        aborts++;
      } else {
        const acc = walkAccess(accs[i]!);
        const regime = this.regimes[ctx]!;
        if (this.cache.translate(this.mem, regime, regime.cb, sid, va, acc, res)) {
          pas[i] = res.pa;
          status[i] = RES_OK;
          detail[i] = 0;
        } else {
          status[i] = res.fault;
          detail[i] = res.faultStage === 2 ? res.faultIpa : -1;
          faults++;
        }
      }
      t1s[i] = Atomics.load(clock, 0);
    }
    st[sb + S_TRANSLATIONS]! += to - from;
    st[sb + S_FAULTS]! += faults;
    st[sb + S_ABORTS]! += aborts;
  }

  /** Runs batch number `batch` (after the doorbell rang for it). */
  runBatch(batch: number): void {
    const s = this.init.shared;
    const u = this.init.unit;
    const t0 = performance.now();
    const w0 = this.walksBefore();
    const h0 = this.hitsBefore();
    const r0 = this.readsBefore();
    Atomics.store(this.ctl, this.base + U_BUSY, 1);
    this.catchUp();
    this.reloadConfig();
    const stamps = s.stamps;
    if (stamps !== undefined) {
      this.runStamped(stamps);
    } else if (Atomics.load(this.ctl, CTL_MODE) === 0) {
      // Affinity: the batch's slot of this unit's own queue.
      const slot = batch % s.slots;
      const from = slot * s.slotCapacity;
      const n = Atomics.load(this.ctl, this.base + (slot === 0 ? U_COUNT : U_COUNT1));
      this.translateRange(
        new Int32Array(s.reqSid[u]!),
        new Float64Array(s.reqVa[u]!),
        new Uint8Array(s.reqAcc[u]!),
        new Float64Array(s.resPa[u]!),
        new Int8Array(s.resStatus[u]!),
        from,
        from + n,
      );
    } else {
      // Dynamic: take chunks of the shared queue (unit 0's buffers) until it is empty.
      const sids = new Int32Array(s.reqSid[0]!);
      const vas = new Float64Array(s.reqVa[0]!);
      const accs = new Uint8Array(s.reqAcc[0]!);
      const pas = new Float64Array(s.resPa[0]!);
      const status = new Int8Array(s.resStatus[0]!);
      const end = Atomics.load(this.ctl, CTL_QUEUE_END);
      for (;;) {
        const from = Atomics.add(this.ctl, CTL_QUEUE_NEXT, this.init.chunk);
        if (from >= end) break;
        this.translateRange(sids, vas, accs, pas, status, from, Math.min(end, from + this.init.chunk));
      }
    }
    this.catchUp();
    const st = this.stats;
    const sb = this.statBase;
    st[sb + S_WALKS]! += this.walksBefore() - w0;
    st[sb + S_HITS]! += this.hitsBefore() - h0;
    st[sb + S_READS]! += this.readsBefore() - r0;
    st[sb + S_BATCHES]!++;
    st[sb + S_BUSY_NS]! += (performance.now() - t0) * 1e6;
    Atomics.store(this.ctl, this.base + U_BUSY, 0);
    Atomics.notify(this.ctl, this.base + U_ACKED); // an idle unit satisfies a waiting sync too
  }

  /** The body of runBatch with stamps: the same distribution, through translateRangeStamped. */
  private runStamped(stamps: NonNullable<FarmShared['stamps']>): void {
    const s = this.init.shared;
    const affinity = Atomics.load(this.ctl, CTL_MODE) === 0;
    const q = affinity ? this.init.unit : 0; // dynamic: the shared queue is unit 0's buffers
    const sids = new Int32Array(s.reqSid[q]!);
    const vas = new Float64Array(s.reqVa[q]!);
    const accs = new Uint8Array(s.reqAcc[q]!);
    const pas = new Float64Array(s.resPa[q]!);
    const status = new Int8Array(s.resStatus[q]!);
    const t0s = new Int32Array(stamps.start[q]!);
    const t1s = new Int32Array(stamps.end[q]!);
    const detail = new Float64Array(stamps.detail[q]!);
    if (affinity) {
      this.translateRangeStamped(sids, vas, accs, pas, status, t0s, t1s, detail, 0, Atomics.load(this.ctl, this.base + U_COUNT));
      return;
    }
    const end = Atomics.load(this.ctl, CTL_QUEUE_END);
    for (;;) {
      const from = Atomics.add(this.ctl, CTL_QUEUE_NEXT, this.init.chunk);
      if (from >= end) break;
      this.translateRangeStamped(sids, vas, accs, pas, status, t0s, t1s, detail, from, Math.min(end, from + this.init.chunk));
    }
  }

  /** The unit's loop: wait for a doorbell, run the batch, signal done; until CTL_STOP. */
  loop(): UnitSummary {
    const ctl = this.ctl;
    const db = this.base + U_DOORBELL;
    const done = this.base + U_DONE;
    let seen = Atomics.load(ctl, db);
    let batches = 0;
    Atomics.store(ctl, this.base + U_READY, 1);
    Atomics.notify(ctl, this.base + U_READY);
    while (Atomics.load(ctl, CTL_STOP) === 0) {
      const now = Atomics.load(ctl, db);
      if (now === seen) {
        Atomics.wait(ctl, db, now, 100);
        continue;
      }
      // Batches in order, one per doorbell ring: with two slots the next one may already be
      // waiting when this one ends, and the unit goes on without sleeping.
      const batch = seen + 1;
      this.runBatch(batch);
      seen = batch;
      batches++;
      Atomics.store(ctl, done, batch);
      Atomics.notify(ctl, done);
    }
    return { unit: this.init.unit, batches };
  }
}
