/**
 * The farm's shared layout: everything the translation units (workers) and
 * the threads that drive them share lives in SharedArrayBuffers, and each
 * worker builds its typed-array views once at start-up.
 *
 * | buffer        | view         | contents                                                            |
 * |---------------|--------------|---------------------------------------------------------------------|
 * | memory        | PhysMem      | physical memory (page tables and data), memory/phys.ts                |
 * | control       | Int32Array   | CTL_* words below, then UNIT_WORDS words per unit                     |
 * | invalidations | Float64Array | ring of INV_RING entries x INV_FIELDS (see `InvRecord`)               |
 * | config        | Float64Array | MAX_CONTEXTS context records x CTX_FIELDS (decoded regimes)          |
 * | streams       | Int32Array   | stream ID -> context record index (-1: unknown stream, aborts)       |
 * | requests      | per unit     | sid (Int32), va (Float64), acc (Uint8), pa (Float64), status (Int8)  |
 * |               |              | in `slots` slots of `slotCapacity` (slot of batch d: d mod slots)     |
 * | stats         | Float64Array | STAT_FIELDS per unit                                                  |
 * | stamps        | optional     | only for the stress tester (src/farm/stress.ts), see `FarmStamps`     |
 * | sharedTlb     | optional     | a shared TLB's sequence words, entries (src/cache/shared-tlb.ts)      |
 *
 * Control words (Int32, all accessed with Atomics):
 *   CTL_STOP        1 asks every unit to leave its loop
 *   CTL_CONFIG_GEN  bumped whenever the config/streams buffers change
 *   CTL_PUBLISHED   number of invalidations published so far (ring index = seq % INV_RING)
 *   CTL_QUEUE_NEXT  next request index to take in dynamic distribution
 *   CTL_QUEUE_END   number of requests in the shared queue (dynamic distribution)
 *   CTL_MODE        0 = affinity, 1 = dynamic distribution
 *   CTL_PUB_LOCK    publisher lock: invalidations may be published from several threads
 *                   (src/farm/invalidator.ts); 1 while one of them writes a ring entry
 * Per unit u (base = CTL_WORDS + u * UNIT_WORDS):
 *   U_DOORBELL  bumped by the driver to start a batch (the unit waits on it); its value is
 *               the batch number, the same for every unit (every batch rings every unit)
 *   U_DONE      the number of the last batch the unit finished (the driver waits on it)
 *   U_COUNT     requests in the unit's own queue for a batch in slot 0 (affinity)
 *   U_COUNT1    the same for slot 1 (two-slot farms)
 *   U_BUSY      1 while the unit is translating; 0 while idle
 *   U_ACKED     invalidations applied by the unit (it may hold no entry they cover)
 *   U_READY     1 once the unit has built its views and entered its loop
 */

import { createSharedTlbStorage, type SharedTlbStorage } from '../cache/shared-tlb.js';
import type { TlbGeometry } from '../cache/tlb.js';

export const CTL_STOP = 0;
export const CTL_CONFIG_GEN = 1;
export const CTL_PUBLISHED = 2;
export const CTL_QUEUE_NEXT = 3;
export const CTL_QUEUE_END = 4;
export const CTL_MODE = 5; // 0 = affinity (each unit its own queue), 1 = dynamic (shared queue)
export const CTL_PUB_LOCK = 6;
export const CTL_WORDS = 16;

export const U_DOORBELL = 0;
export const U_DONE = 1;
export const U_COUNT = 2;
export const U_BUSY = 3;
export const U_ACKED = 4;
export const U_READY = 5;
export const U_COUNT1 = 6;
export const UNIT_WORDS = 16;

/** Invalidation ring: entries and fields per entry. */
export const INV_RING = 4096;
export const INV_FIELDS = 8;
export const INV_KIND = 0; // index into INV_KINDS
export const INV_VMID = 1;
export const INV_ASID = 2;
export const INV_ALL_ASIDS = 3;
export const INV_LEAF = 4;
export const INV_ADDR = 5; // va or ipa
export const INV_CB = 6;
export const INV_KINDS = ['all', 'vmid', 'context', 'asid', 'va', 'ipa'] as const;

/** Context records: a decoded regime (pgtable/regime.ts) as numbers. */
export const MAX_CONTEXTS = 256;
export const CTX_FIELDS = 40;
export const MAX_STREAMS = 65536;

/** Per-unit statistics. */
export const STAT_FIELDS = 16;
export const S_TRANSLATIONS = 0;
export const S_FAULTS = 1;
export const S_ABORTS = 2;
export const S_WALKS = 3;
export const S_READS = 4;
export const S_HITS = 5;
export const S_INVALIDATIONS = 6;
export const S_BUSY_NS = 7;
export const S_BATCHES = 8;
export const S_FULL_FLUSHES = 9;

export interface FarmShared {
  units: number;
  /** Requests each per-unit buffer holds: slots x slotCapacity. */
  capacity: number;
  /**
   * 2 for an affinity farm without stamps: batch d uses slot d mod 2, so the driver can fill
   * the next batch while the units translate this one (Farm.submitQueued). Otherwise 1.
   */
  slots: number;
  slotCapacity: number;
  control: SharedArrayBuffer;
  invalidations: SharedArrayBuffer;
  config: SharedArrayBuffer;
  streams: SharedArrayBuffer;
  stats: SharedArrayBuffer;
  reqSid: SharedArrayBuffer[];
  reqVa: SharedArrayBuffer[];
  reqAcc: SharedArrayBuffer[];
  resPa: SharedArrayBuffer[];
  resStatus: SharedArrayBuffer[];
  /** Present only when the farm was created with `stamped: true` (the stress tester). */
  stamps?: FarmStamps;
  /**
   * The shared TLB (src/cache/shared-tlb.ts) of a caching configuration with `shared`: every
   * unit's caches look it up and fill it. Absent otherwise.
   */
  sharedTlb?: SharedTlbStorage;
}

/**
 * Per-request timestamps for the stress tester: a logical clock (Int32 word 0 of `clock`,
 * bumped with Atomics.add by whoever changes tables) that a unit reads with Atomics.load
 * immediately before and after each translation into `start`/`end` (Int32, one per request
 * slot, parallel to the request buffers), and `detail` (Float64): for a fault, -1 when it
 * was a stage-1 fault, or the faulting IPA for a stage-2 fault (0 for a translation).
 * Without stamps a unit runs its ordinary loop: the stamped loop is a separate function.
 */
export interface FarmStamps {
  clock: SharedArrayBuffer;
  start: SharedArrayBuffer[];
  end: SharedArrayBuffer[];
  detail: SharedArrayBuffer[];
}

export function createShared(units: number, slotCapacity: number, stamped = false, slots = 1, sharedTlb?: TlbGeometry): FarmShared {
  const capacity = slotCapacity * slots;
  const per = (bytes: number): SharedArrayBuffer[] => Array.from({ length: units }, () => new SharedArrayBuffer(bytes));
  const streams = new SharedArrayBuffer(4 * MAX_STREAMS);
  new Int32Array(streams).fill(-1);
  return {
    units,
    capacity,
    slots,
    slotCapacity,
    control: new SharedArrayBuffer(4 * (CTL_WORDS + units * UNIT_WORDS)),
    invalidations: new SharedArrayBuffer(8 * INV_RING * INV_FIELDS),
    config: new SharedArrayBuffer(8 * MAX_CONTEXTS * CTX_FIELDS),
    streams,
    stats: new SharedArrayBuffer(8 * units * STAT_FIELDS),
    reqSid: per(4 * capacity),
    reqVa: per(8 * capacity),
    reqAcc: per(capacity),
    resPa: per(8 * capacity),
    resStatus: per(capacity),
    ...(stamped ? { stamps: { clock: new SharedArrayBuffer(64), start: per(4 * capacity), end: per(4 * capacity), detail: per(8 * capacity) } } : {}),
    ...(sharedTlb !== undefined ? { sharedTlb: createSharedTlbStorage(sharedTlb) } : {}),
  };
}
