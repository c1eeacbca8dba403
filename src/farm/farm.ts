/**
 * The translation farm, driving side: a piscina pool whose workers each run
 * one translation unit (src/farm/unit.ts) over shared memory, batches of
 * requests handed over in shared buffers, and invalidations published
 * through a shared ring with a sync that means what TLBSYNC means: once it
 * returns, no unit returns a translation that an earlier invalidation
 * removed.
 *
 * The invalidation protocol, publisher side: write the entry at
 * CTL_PUBLISHED % INV_RING, then advance CTL_PUBLISHED (sequentially
 * consistent). A publisher never laps a busy unit (it waits for it to
 * acknowledge); idle units may be lapped and flush on wake. Sync: for every
 * unit, wait until it is idle (U_BUSY = 0) or has acknowledged
 * (U_ACKED >= the sequence number of the sync). The publisher side lives in
 * FarmInvalidator (invalidator.ts), so that other threads (CPU-side table
 * owners) can publish and sync over the same FarmShared; Farm.invalidate and
 * Farm.sync use one of their own.
 */

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { CacheConfig } from '../cache/caches.js';
import type { InvalidationScope } from '../cache/interface.js';
import type { PhysMem } from '../memory/phys.js';
import type { Smmu } from '../smmu/smmu.js';
import { snapshotSmmu } from './config.js';
import type { InjectMode } from './inject.js';
import { FarmInvalidator } from './invalidator.js';
import {
  CTL_CONFIG_GEN,
  CTL_MODE,
  CTL_QUEUE_END,
  CTL_QUEUE_NEXT,
  CTL_STOP,
  CTL_WORDS,
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
  U_COUNT,
  U_COUNT1,
  U_DONE,
  U_DOORBELL,
  U_READY,
  createShared,
  type FarmShared,
} from './layout.js';
import type { UnitInit, UnitSummary } from './unit.js';

export type Distribution = 'affinity' | 'dynamic';

/**
 * How often a busy unit looks for published invalidations, in translations (FarmOptions.pollEvery).
 * A sync waits for the next poll of each busy unit, so this bounds its latency: about
 * pollEvery x the cost of a translation (a nested walk without caches takes about 400 ns here).
 */
export const DEFAULT_POLL_EVERY = 8;

export interface FarmOptions {
  mem: PhysMem;
  /** Translation units (worker threads). */
  units: number;
  /** Caching configuration of every unit (null: walk every time). */
  cache: CacheConfig | null;
  /** 'affinity': stream s always goes to unit (s mod units), like TBUs; 'dynamic': units take chunks of one queue. */
  distribution?: Distribution;
  /** Requests per unit per batch (default 16384). */
  capacity?: number;
  /** Translations between a busy unit's invalidation polls (default 32). */
  pollEvery?: number;
  /** Requests taken at a time in dynamic distribution (default 256). */
  chunk?: number;
  /**
   * Per-request clock stamps for the stress tester (FarmShared.stamps; `translate` can then
   * return them). Default false: units run their ordinary loop.
   */
  stamped?: boolean;
  /** A deliberately broken variant (src/farm/inject.ts), for the stress tester only. Default none. */
  inject?: InjectMode | null;
}

/** Where `Farm.translate` copies the stamps of a stamped farm (FarmShared.stamps). */
export interface TranslateStamps {
  start: Int32Array;
  end: Int32Array;
  detail: Float64Array;
}

export interface UnitStats {
  translations: number;
  faults: number;
  aborts: number;
  walks: number;
  descriptorReads: number;
  hits: number;
  invalidationsApplied: number;
  busyMs: number;
  batches: number;
  fullFlushes: number;
}

/** One unit's queues in shared memory (Farm.queue). */
export interface FarmQueue {
  sid: Int32Array;
  va: Float64Array;
  acc: Uint8Array;
  pa: Float64Array;
  status: Int8Array;
}

export class FarmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FarmError';
  }
}

/** The compiled worker entry (workers run compiled JavaScript, also under the test runner). */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  const i = here.lastIndexOf(`${'/'}dist${'/'}`);
  const root = i >= 0 ? here.slice(0, i) : resolve(dirname(here), '..', '..');
  const file = join(root, 'dist', 'workers', 'farm-unit.js');
  if (!existsSync(file)) throw new FarmError(`the farm worker ${file} is missing: run \`npm run build\` first`);
  return file;
}

export class Farm {
  readonly shared: FarmShared;
  readonly units: number;
  readonly capacity: number;
  readonly distribution: Distribution;
  /** The publisher side of the invalidation protocol, for this thread. */
  readonly invalidator: FarmInvalidator;
  private readonly ctl: Int32Array;
  private readonly stats: Float64Array;
  private readonly pool: Piscina;
  private readonly tasks: Array<Promise<UnitSummary>>;
  /** Views of every unit's request and result queues, made once (affinity distribution). */
  private readonly qSid: Int32Array[];
  private readonly qVa: Float64Array[];
  private readonly qAcc: Uint8Array[];
  private readonly qPa: Float64Array[];
  private readonly qStatus: Int8Array[];
  /** Per unit: requests scattered to it in this batch. */
  private readonly counts: Int32Array;
  /** Per slot, per request of its batch (submit): its unit, and its index in that unit's buffers (grown as needed). */
  private readonly where: Array<{ unit: Int32Array; index: Int32Array; n: number }>;
  private closed = false;
  /** 2 when batches can overlap (affinity without stamps), else 1. */
  private readonly slots: number;
  /** The number of the last batch submitted, and of the last one waited for (every unit done). */
  private submitted = 0;
  private collected = 0;

  private constructor(opts: FarmOptions) {
    if (!Number.isInteger(opts.units) || opts.units < 1 || opts.units > 64) throw new FarmError(`units must be 1..64, got ${opts.units}`);
    this.units = opts.units;
    this.capacity = opts.capacity ?? 16384;
    this.distribution = opts.distribution ?? 'affinity';
    const queueCapacity = this.distribution === 'dynamic' ? this.capacity * this.units : this.capacity;
    // Two slots where batches can overlap (affinity, no stamps): see submitQueued.
    this.slots = this.distribution === 'affinity' && opts.stamped !== true ? 2 : 1;
    this.shared = createShared(this.units, queueCapacity, opts.stamped === true, this.slots, opts.cache?.shared);
    this.ctl = new Int32Array(this.shared.control);
    this.invalidator = new FarmInvalidator(this.shared, { inject: opts.inject === 'early-sync' ? 'early-sync' : null });
    this.stats = new Float64Array(this.shared.stats);
    this.qSid = this.shared.reqSid.map((b) => new Int32Array(b));
    this.qVa = this.shared.reqVa.map((b) => new Float64Array(b));
    this.qAcc = this.shared.reqAcc.map((b) => new Uint8Array(b));
    this.qPa = this.shared.resPa.map((b) => new Float64Array(b));
    this.qStatus = this.shared.resStatus.map((b) => new Int8Array(b));
    this.counts = new Int32Array(this.units);
    this.where = Array.from({ length: this.slots }, () => ({ unit: new Int32Array(0), index: new Int32Array(0), n: 0 }));
    Atomics.store(this.ctl, CTL_MODE, this.distribution === 'dynamic' ? 1 : 0);
    this.pool = new Piscina({ filename: workerFile(), minThreads: this.units, maxThreads: this.units, concurrentTasksPerWorker: 1, idleTimeout: 60_000, atomics: 'disabled' });
    const mem = opts.mem.share();
    this.tasks = [];
    for (let u = 0; u < this.units; u++) {
      const inject = opts.inject === 'early-sync' || opts.inject === undefined ? null : opts.inject;
      const init: UnitInit = { shared: this.shared, mem, unit: u, cache: opts.cache, pollEvery: opts.pollEvery ?? DEFAULT_POLL_EVERY, chunk: opts.chunk ?? 256, inject };
      this.tasks.push(this.pool.run(init) as Promise<UnitSummary>);
    }
  }

  /** Starts the pool and waits until every unit is in its loop. */
  static async start(opts: FarmOptions): Promise<Farm> {
    const f = new Farm(opts);
    for (let u = 0; u < f.units; u++) {
      const i = CTL_WORDS + u * UNIT_WORDS + U_READY;
      const deadline = Date.now() + 30_000;
      while (Atomics.load(f.ctl, i) === 0) {
        // A task that failed to start rejects here instead of leaving us waiting.
        await Promise.race([...f.tasks, new Promise((res) => setTimeout(res, 5))]);
        if (Date.now() > deadline) throw new FarmError(`unit ${u} did not start within 30 s`);
      }
    }
    return f;
  }

  private u(unit: number, word: number): number {
    return CTL_WORDS + unit * UNIT_WORDS + word;
  }

  /** Loads what an SMMU model does with each of `sids` (a configuration snapshot) into every unit. */
  loadConfig(smmu: Smmu, sids: number[]): void {
    snapshotSmmu(smmu, sids, new Float64Array(this.shared.config), new Int32Array(this.shared.streams));
    Atomics.add(this.ctl, CTL_CONFIG_GEN, 1);
  }

  /**
   * Translates `n` requests: stream IDs, input addresses (signed numbers), access codes
   * (REQ_* of unit.ts); results into `pa` and `status` (RES_OK, RES_ABORT, or the walker's
   * fault type). Blocks the calling thread until every unit is done. A stamped farm also
   * copies each request's stamps into `stamps` when given.
   */
  translate(sids: Int32Array, vas: Float64Array, accs: Uint8Array, n: number, pa: Float64Array, status: Int8Array, stamps?: TranslateStamps): void {
    if (this.closed) throw new FarmError('the farm is closed');
    const s = this.shared;
    if (stamps !== undefined && s.stamps === undefined) throw new FarmError('stamps were asked of a farm started without `stamped: true`');
    if (this.distribution === 'dynamic') {
      if (n > this.capacity * this.units) throw new FarmError(`batch of ${n} exceeds the queue capacity ${this.capacity * this.units}`);
      new Int32Array(s.reqSid[0]!).set(sids.subarray(0, n));
      new Float64Array(s.reqVa[0]!).set(vas.subarray(0, n));
      new Uint8Array(s.reqAcc[0]!).set(accs.subarray(0, n));
      Atomics.store(this.ctl, CTL_QUEUE_NEXT, 0);
      Atomics.store(this.ctl, CTL_QUEUE_END, n);
      this.ring(null);
      pa.set(new Float64Array(s.resPa[0]!).subarray(0, n));
      status.set(new Int8Array(s.resStatus[0]!).subarray(0, n));
      if (stamps !== undefined) {
        stamps.start.set(new Int32Array(s.stamps!.start[0]!).subarray(0, n));
        stamps.end.set(new Int32Array(s.stamps!.end[0]!).subarray(0, n));
        stamps.detail.set(new Float64Array(s.stamps!.detail[0]!).subarray(0, n));
      }
      return;
    }
    // Affinity: stream s -> unit s mod units. Scatter into the next batch's slot, ring, gather.
    this.collect(this.submit(sids, vas, accs, n), pa, status, stamps);
  }

  /**
   * Affinity distribution: copies `n` requests into the units' queues for the next batch
   * (stream s to unit s mod units) and starts it; returns at once with the batch's number.
   * `collect` waits for it and copies its results out. Meanwhile the caller may prepare and
   * submit the next batch (the other slot): at most two batches are in flight.
   */
  submit(sids: Int32Array, vas: Float64Array, accs: Uint8Array, n: number): number {
    if (this.closed) throw new FarmError('the farm is closed');
    if (this.distribution !== 'affinity') throw new FarmError('submit() is for the affinity distribution (dynamic: use translate())');
    const next = this.submitted + 1;
    if (next - this.slots > this.collected) throw new FarmError(`submit: batch ${next - this.slots} is still in flight in the same slot: collect it first`);
    const base = this.slotBase(next);
    const where = this.where[next % this.slots]!;
    if (where.unit.length < n) {
      where.unit = new Int32Array(n);
      where.index = new Int32Array(n);
    }
    where.n = n;
    const counts = this.counts;
    counts.fill(0);
    const whereUnit = where.unit;
    const whereIndex = where.index;
    const units = this.units;
    const capacity = this.capacity;
    const sidV = this.qSid;
    const vaV = this.qVa;
    const accV = this.qAcc;
    for (let i = 0; i < n; i++) {
      const sid = sids[i]!;
      const u = sid % units;
      const k = counts[u]!++;
      if (k >= capacity) throw new FarmError(`unit ${u} would get more than ${capacity} requests in one batch`);
      sidV[u]![base + k] = sid;
      vaV[u]![base + k] = vas[i]!;
      accV[u]![base + k] = accs[i]!;
      whereUnit[i] = u;
      whereIndex[i] = base + k;
    }
    return this.submitBatch(counts);
  }

  /**
   * Waits for batch `d` (from submit()) and copies its results, in request order, into `pa`
   * and `status` (and its stamps into `stamps` for a stamped farm).
   */
  collect(d: number, pa: Float64Array, status: Int8Array, stamps?: TranslateStamps): void {
    if (!(Number.isInteger(d) && d <= this.submitted && d > this.submitted - this.slots)) {
      throw new FarmError(`collect(${d}): not one of the batches in flight (${Math.max(1, this.submitted - this.slots + 1)}..${this.submitted})`);
    }
    this.waitQueued(d);
    const { unit: whereUnit, index: whereIndex, n } = this.where[d % this.slots]!;
    const paV = this.qPa;
    const stV = this.qStatus;
    for (let i = 0; i < n; i++) {
      const u = whereUnit[i]!;
      const k = whereIndex[i]!;
      pa[i] = paV[u]![k]!;
      status[i] = stV[u]![k]!;
    }
    const s = this.shared;
    if (stamps !== undefined) {
      const t0V = s.stamps!.start.map((b) => new Int32Array(b));
      const t1V = s.stamps!.end.map((b) => new Int32Array(b));
      const dV = s.stamps!.detail.map((b) => new Float64Array(b));
      for (let i = 0; i < n; i++) {
        const u = whereUnit[i]!;
        const k = whereIndex[i]!;
        stamps.start[i] = t0V[u]![k]!;
        stamps.end[i] = t1V[u]![k]!;
        stamps.detail[i] = dV[u]![k]!;
      }
    }
  }

  /** Where batch `d`'s requests start in each unit's buffers. */
  private slotBase(d: number): number {
    return (d % this.slots) * this.capacity;
  }

  /**
   * Unit `u`'s request and result queues for the next batch submitted (affinity
   * distribution), for a caller that writes its requests in place: `sid`, `va`, `acc` in,
   * `pa`, `status` out, `capacity` slots each. Views into shared memory. Batches alternate
   * between two slots, so take the queues again for every batch; the results of batch d stay
   * in its queues until batch d + 2 is submitted.
   */
  queue(u: number): FarmQueue {
    if (this.distribution !== 'affinity') throw new FarmError('queue() is for the affinity distribution (dynamic has one shared queue: use translate())');
    if (this.shared.stamps !== undefined) throw new FarmError('queue(): a stamped farm takes its requests through translate()');
    if (!Number.isInteger(u) || u < 0 || u >= this.units) throw new FarmError(`unit ${u} does not exist (units 0..${this.units - 1})`);
    const next = this.submitted + 1;
    if (next - this.slots > this.collected) throw new FarmError(`queue(): batch ${next - this.slots} still uses these queues: waitQueued(${next - this.slots}) first`);
    const from = this.slotBase(next);
    const to = from + this.capacity;
    return { sid: this.qSid[u]!.subarray(from, to), va: this.qVa[u]!.subarray(from, to), acc: this.qAcc[u]!.subarray(from, to), pa: this.qPa[u]!.subarray(from, to), status: this.qStatus[u]!.subarray(from, to) };
  }

  /**
   * Starts the batch whose requests were written into each unit's queue (queue(u)):
   * `counts[u]` requests for unit u. Returns at once with the batch's number; waitQueued
   * waits for it. While the units translate it, the caller can fill and submit the next
   * batch (the other slot), so that filling overlaps translating; at most two batches are in
   * flight. The caller chooses which unit gets which request: no scatter, no gather.
   */
  submitQueued(counts: ArrayLike<number>): number {
    if (this.closed) throw new FarmError('the farm is closed');
    if (this.distribution !== 'affinity') throw new FarmError('submitQueued() is for the affinity distribution');
    if (this.shared.stamps !== undefined) throw new FarmError('submitQueued: a stamped farm takes its requests through translate()');
    if (counts.length !== this.units) throw new FarmError(`submitQueued: ${counts.length} counts for ${this.units} units`);
    for (let u = 0; u < this.units; u++) {
      const c = counts[u]!;
      if (!Number.isInteger(c) || c < 0 || c > this.capacity) throw new FarmError(`submitQueued: unit ${u} count ${c} is outside 0..${this.capacity}`);
    }
    const d = this.submitted + 1;
    if (d - this.slots > this.collected) throw new FarmError(`submitQueued: batch ${d - this.slots} is still in flight in the same slot: waitQueued(${d - this.slots}) first`);
    return this.submitBatch(counts);
  }

  /** Waits until every unit has finished batch `d` (and every batch before it). */
  waitQueued(d: number): void {
    if (d <= this.collected) return;
    if (d > this.submitted) throw new FarmError(`waitQueued(${d}): only ${this.submitted} batches were submitted`);
    for (let u = 0; u < this.units; u++) {
      const i = this.u(u, U_DONE);
      for (;;) {
        const done = Atomics.load(this.ctl, i);
        if (done >= d) break;
        Atomics.wait(this.ctl, i, done, 1000);
      }
    }
    this.collected = d;
  }

  /** submitQueued, then waitQueued: the batch's results are in the queues it was written to. */
  translateQueued(counts: ArrayLike<number>): void {
    this.waitQueued(this.submitQueued(counts));
  }

  /** Rings every unit's doorbell for the next batch (its per-unit counts in `counts`, for affinity); returns its number. */
  private submitBatch(counts: ArrayLike<number> | null): number {
    const d = this.submitted + 1;
    if (counts !== null) {
      const word = d % this.slots === 0 ? U_COUNT : U_COUNT1;
      for (let u = 0; u < this.units; u++) Atomics.store(this.ctl, this.u(u, word), counts[u]!);
    }
    for (let u = 0; u < this.units; u++) {
      Atomics.add(this.ctl, this.u(u, U_DOORBELL), 1);
      Atomics.notify(this.ctl, this.u(u, U_DOORBELL));
    }
    this.submitted = d;
    return d;
  }

  /** Runs one batch to the end: submit, then wait. */
  private ring(counts: ArrayLike<number> | null): void {
    this.waitQueued(this.submitBatch(counts));
  }

  /** Publishes one invalidation; returns its sequence number + 1 (what a sync waits for). See FarmInvalidator. */
  invalidate(scope: InvalidationScope): number {
    return this.invalidator.invalidate(scope);
  }

  /**
   * TLBSYNC: returns once every unit is idle or has applied every invalidation published
   * before this call (by any thread). See FarmInvalidator.
   */
  sync(): void {
    this.invalidator.sync();
  }

  /** Per-unit statistics. */
  unitStats(): UnitStats[] {
    const out: UnitStats[] = [];
    for (let u = 0; u < this.units; u++) {
      const b = u * STAT_FIELDS;
      const st = this.stats;
      out.push({
        translations: st[b + S_TRANSLATIONS]!,
        faults: st[b + S_FAULTS]!,
        aborts: st[b + S_ABORTS]!,
        walks: st[b + S_WALKS]!,
        descriptorReads: st[b + S_READS]!,
        hits: st[b + S_HITS]!,
        invalidationsApplied: st[b + S_INVALIDATIONS]!,
        busyMs: st[b + S_BUSY_NS]! / 1e6,
        batches: st[b + S_BATCHES]!,
        fullFlushes: st[b + S_FULL_FLUSHES]!,
      });
    }
    return out;
  }

  /** Stops every unit and the pool. */
  async close(): Promise<UnitSummary[]> {
    if (this.closed) return [];
    this.closed = true;
    Atomics.store(this.ctl, CTL_STOP, 1);
    for (let u = 0; u < this.units; u++) Atomics.notify(this.ctl, this.u(u, U_DOORBELL));
    const summaries = await Promise.all(this.tasks);
    await this.pool.destroy();
    return summaries;
  }
}
