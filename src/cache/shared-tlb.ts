/**
 * A TLB in shared memory: one set of combined (VA -> PA) entries that every
 * thread of a farm reads and fills, as an SMMU's TCU TLB serves all its TBUs
 * (gem5's SMMUv3 "SMMU TLB" behind its per-interface TLBs). It sits behind
 * each translation unit's private structures (src/cache/caches.ts, the
 * `shared` field of a CacheConfig).
 *
 * Entries are struct-of-arrays in one SharedArrayBuffer, tagged and indexed
 * as in the private Tlb (src/cache/tlb.ts): an entry maps a naturally aligned
 * 2^size region for (cb, vmid, asid), a lookup probes one key per size class
 * ever filled.
 *
 * Concurrency, per set (`sets` x `ways`):
 * - A sequence word per set: even while the set is stable, odd while one
 *   thread writes it. A writer takes the set by compare-exchange (even to
 *   odd) and releases it with the next even value.
 * - Lookups write nothing. A lookup reads the sequence word, the ways, and
 *   the sequence word again (all three Atomics or ordered by them); if the
 *   word was odd or moved, the lookup counts as a miss. The entry it returns
 *   is copied out of shared memory (`hit*` fields) before the second read, so
 *   a torn entry is never returned.
 * - A fill gives up rather than wait when the set is taken: dropping a fill
 *   only costs a later walk.
 * - Invalidations wait for the set (they must not be dropped) and first bump
 *   a generation word. A fill passes the generation it read before its walk
 *   began and, holding the set, inserts only if the generation has not moved:
 *   a walk that began before an invalidation never fills after it, whichever
 *   thread applied the invalidation. (The same rule as the private caches'
 *   epoch, made global.)
 * - Replacement is FIFO per set, its pointer written under the set's lock, so
 *   hits never write shared state.
 *
 * Who applies an invalidation: every translation unit applies every
 * invalidation to its caches, this one included (src/farm/unit.ts). The
 * repeats cost a scan each, but they are what makes TLBSYNC hold here: a
 * unit fills this TLB only while it translates, so any stale entry it fills
 * (from a walk that read the old tables, or from its own private caches not
 * yet invalidated) is filled before that unit's own application of the
 * invalidation, which removes it; and a TLBSYNC waits for that application
 * on every busy unit (an idle unit applies it before it translates again).
 * The generation rule adds to this: once any thread has applied an
 * invalidation here, no walk that began before it can put an entry back, so
 * other units do not meet the stale entry in the meantime either. (Turning
 * the rule off alone is not caught by the stress tester, for the reason
 * above; test/shared-tlb.test.ts checks the rule itself.)
 */

import { INV_POW2, POW2 } from '../pgtable/geometry.js';
import { ANY_CB, checkSets, GLOBAL, setIndex, TlbError, type TlbGeometry, type TlbStats } from './tlb.js';

/** Control words: the generation, the size classes ever filled (a 64-bit mask in two words), then per set its sequence and FIFO pointer. */
const C_GEN = 0;
const C_SIZES_LO = 1;
const C_SIZES_HI = 2;
const C_WORDS = 4;

/** The shared memory of one shared TLB (plain data: it crosses to workers with postMessage). */
export interface SharedTlbStorage {
  sets: number;
  ways: number;
  /** Int32: C_WORDS, then `sets` sequence words, then `sets` FIFO pointers. */
  control: SharedArrayBuffer;
  /** Int32 x entries each: size (0 = invalid), cb, vmid, asid, perm, aux. */
  ints: SharedArrayBuffer;
  /** Float64 x entries each: key (input address / 2^size), out (output base), ipa (IPA base or -1). */
  floats: SharedArrayBuffer;
}

/** A private Tlb's statistics (droppedFills: an invalidation by any thread since the walk began), and contention. */
export interface SharedTlbStats extends TlbStats {
  /** Fills dropped because another thread held the set. */
  contendedFills: number;
  /** Lookups that found the set being written and counted as misses. */
  contendedLookups: number;
}

/** Checks a shared TLB's geometry; throws a TlbError saying what is wrong. */
export function checkSharedGeometry(g: TlbGeometry): void {
  checkSets(g, 'shared TLB: ');
  if (g.replacement !== 'fifo') {
    throw new TlbError(`shared TLB: replacement must be 'fifo', got '${g.replacement}' (lookups do not write shared memory, so recency cannot be kept)`);
  }
}

/** Allocates the shared memory of a shared TLB, empty. */
export function createSharedTlbStorage(g: TlbGeometry): SharedTlbStorage {
  checkSharedGeometry(g);
  const sets = g.entries / g.ways;
  return {
    sets,
    ways: g.ways,
    control: new SharedArrayBuffer(4 * (C_WORDS + 2 * sets)),
    ints: new SharedArrayBuffer(4 * 6 * g.entries),
    floats: new SharedArrayBuffer(8 * 3 * g.entries),
  };
}

/** One thread's view of a shared TLB. Several views (one per thread) share one storage. */
export class SharedTlb {
  readonly entries: number;
  readonly ways: number;
  readonly sets: number;
  readonly storage: SharedTlbStorage;
  private readonly setMask: number;
  private readonly ctl: Int32Array;
  private readonly seqBase: number;
  private readonly fifoBase: number;
  readonly size: Int32Array;
  readonly cb: Int32Array;
  readonly vmid: Int32Array;
  readonly asid: Int32Array;
  readonly perm: Int32Array;
  readonly aux: Int32Array;
  readonly key: Float64Array;
  readonly out: Float64Array;
  readonly ipa: Float64Array;
  private readonly counters: SharedTlbStats = { lookups: 0, hits: 0, misses: 0, fills: 0, evictions: 0, invalidated: 0, droppedFills: 0, contendedFills: 0, contendedLookups: 0, flushes: 0 };
  // Hits and misses are counted in plain fields on the lookup path and folded into `stats` when read (as Tlb does).
  private nHits = 0;
  private nMisses = 0;

  /** This view's statistics (each thread counts its own; the same object every time). */
  get stats(): SharedTlbStats {
    const c = this.counters;
    c.hits = this.nHits;
    c.misses = this.nMisses;
    c.lookups = this.nHits + this.nMisses;
    return c;
  }
  /**
   * The generation rule of fills (see the header). Only the stress tester's `late-fill`
   * injection turns it off, to show that its checker catches the bug.
   */
  enforceGeneration = true;

  // The entry of the last successful lookup, copied out of shared memory.
  hitOut = 0;
  hitIpa = -1;
  hitPerm = 0;
  hitSize = 0;
  hitAsid = 0;
  hitAux = 0;
  hitKey = 0;

  // The size classes this view has seen in the shared mask, as a list (refreshed when the mask moves).
  private sizesLo = 0;
  private sizesHi = 0;
  private sizesPresent: number[] = [];

  constructor(storage: SharedTlbStorage) {
    const { sets, ways } = storage;
    this.storage = storage;
    this.sets = sets;
    this.ways = ways;
    this.entries = sets * ways;
    this.setMask = sets - 1;
    this.ctl = new Int32Array(storage.control);
    this.seqBase = C_WORDS;
    this.fifoBase = C_WORDS + sets;
    const n = this.entries;
    const ib = storage.ints;
    this.size = new Int32Array(ib, 0, n);
    this.cb = new Int32Array(ib, 4 * n, n);
    this.vmid = new Int32Array(ib, 8 * n, n);
    this.asid = new Int32Array(ib, 12 * n, n);
    this.perm = new Int32Array(ib, 16 * n, n);
    this.aux = new Int32Array(ib, 20 * n, n);
    const fb = storage.floats;
    this.key = new Float64Array(fb, 0, n);
    this.out = new Float64Array(fb, 8 * n, n);
    this.ipa = new Float64Array(fb, 16 * n, n);
  }

  /** The invalidation generation: read it before a walk, pass it to fill(). */
  generation(): number {
    return Atomics.load(this.ctl, C_GEN);
  }

  private refreshSizes(): void {
    const lo = Atomics.load(this.ctl, C_SIZES_LO);
    const hi = Atomics.load(this.ctl, C_SIZES_HI);
    if (lo === this.sizesLo && hi === this.sizesHi) return;
    const s: number[] = [];
    for (let i = 0; i < 32; i++) if ((lo & (1 << i)) !== 0) s.push(i);
    for (let i = 0; i < 32; i++) if ((hi & (1 << i)) !== 0) s.push(32 + i);
    this.sizesLo = lo;
    this.sizesHi = hi;
    this.sizesPresent = s;
  }

  /**
   * Finds the entry translating `va` for (cb, vmid, asid). True with the entry copied into the
   * `hit*` fields, or false (also when the set was being written: a miss).
   */
  lookup(cb: number, vmid: number, asid: number, va: number): boolean {
    this.refreshSizes();
    const sizes = this.sizesPresent;
    const ctl = this.ctl;
    const ways = this.ways;
    for (let k = 0; k < sizes.length; k++) {
      const s = sizes[k]!;
      const key = Math.floor(va * INV_POW2[s]!);
      const set = setIndex(key, s, this.setMask);
      const seqAt = this.seqBase + set;
      const seq0 = Atomics.load(ctl, seqAt);
      if ((seq0 & 1) !== 0) {
        this.counters.contendedLookups++;
        continue;
      }
      const base = set * ways;
      let found = -1;
      for (let w = base; w < base + ways; w++) {
        if (
          this.key[w] === key &&
          this.size[w] === s &&
          this.vmid[w] === vmid &&
          (this.cb[w] === cb || this.cb[w] === ANY_CB) &&
          (this.asid[w] === asid || this.asid[w] === GLOBAL)
        ) {
          found = w;
          break;
        }
      }
      if (found < 0) {
        continue;
      }
      this.hitOut = this.out[found]!;
      this.hitIpa = this.ipa[found]!;
      this.hitPerm = this.perm[found]!;
      this.hitSize = s;
      this.hitAsid = this.asid[found]!;
      this.hitAux = this.aux[found]!;
      this.hitKey = key;
      // The copy is good only if no writer touched the set meanwhile.
      if (Atomics.load(ctl, seqAt) !== seq0) {
        this.counters.contendedLookups++;
        continue;
      }
      this.nHits++;
      return true;
    }
    this.nMisses++;
    return false;
  }

  /** The output address for `va` through the last lookup's entry. */
  hitOutput(va: number): number {
    return this.hitOut + (va - this.hitKey * POW2[this.hitSize]!);
  }

  /** The IPA for `va` through the last lookup's entry (-1 if the entry has none). */
  hitIpaOf(va: number): number {
    return this.hitIpa < 0 ? -1 : this.hitIpa + (va - this.hitKey * POW2[this.hitSize]!);
  }

  /**
   * Inserts an entry for the 2^size region containing `va`, if the generation is still
   * `generation` (read before the walk) and no other thread holds the set. Returns whether it
   * was inserted.
   */
  fill(generation: number, cb: number, vmid: number, asid: number, va: number, size: number, out: number, ipa: number, perm: number, aux: number): boolean {
    if (!(size >= 1 && size < 64)) throw new TlbError(`entry size 2^${size} is out of range`);
    const key = Math.floor(va * INV_POW2[size]!);
    const set = setIndex(key, size, this.setMask);
    const seqAt = this.seqBase + set;
    const ctl = this.ctl;
    const seq = Atomics.load(ctl, seqAt);
    if ((seq & 1) !== 0 || Atomics.compareExchange(ctl, seqAt, seq, seq + 1) !== seq) {
      this.counters.contendedFills++;
      return false;
    }
    // Holding the set: an invalidation bumps the generation before it takes any set, so either
    // it has not begun (and will remove this entry when it reaches the set) or we see the bump.
    if (this.enforceGeneration && Atomics.load(ctl, C_GEN) !== generation) {
      Atomics.store(ctl, seqAt, seq + 2);
      this.counters.droppedFills++;
      return false;
    }
    const ways = this.ways;
    const base = set * ways;
    let slot = -1;
    for (let w = base; w < base + ways; w++) {
      if (this.size[w] === size && this.key[w] === key && this.vmid[w] === vmid && this.cb[w] === cb && this.asid[w] === asid) {
        slot = w;
        break;
      }
    }
    if (slot < 0) {
      for (let w = base; w < base + ways; w++) {
        if (this.size[w] === 0) {
          slot = w;
          break;
        }
      }
    }
    if (slot < 0) {
      const f = this.fifoBase + set;
      const v = ctl[f]!;
      ctl[f] = (v + 1) % ways;
      slot = base + v;
      this.counters.evictions++;
    }
    const span = POW2[size]!;
    const inv = INV_POW2[size]!;
    this.size[slot] = size;
    this.key[slot] = key;
    this.cb[slot] = cb;
    this.vmid[slot] = vmid;
    this.asid[slot] = asid;
    this.out[slot] = Math.floor(out * inv) * span;
    this.ipa[slot] = ipa < 0 ? -1 : Math.floor(ipa * inv) * span;
    this.perm[slot] = perm;
    this.aux[slot] = aux;
    if (size < 32) Atomics.or(ctl, C_SIZES_LO, 1 << size);
    else Atomics.or(ctl, C_SIZES_HI, 1 << (size - 32));
    Atomics.store(ctl, seqAt, seq + 2);
    this.counters.fills++;
    return true;
  }

  /** Takes set `set` for writing, waiting for another writer to finish; returns the even sequence value it held. */
  private lockSet(set: number): number {
    const ctl = this.ctl;
    const seqAt = this.seqBase + set;
    for (;;) {
      const seq = Atomics.load(ctl, seqAt);
      if ((seq & 1) === 0 && Atomics.compareExchange(ctl, seqAt, seq, seq + 1) === seq) return seq;
    }
  }

  /**
   * Removes every entry for which `match(slot)` is true (the slot's fields may be read in
   * `match`); returns how many. Bumps the generation first, so that no fill from a walk that
   * began before this call lands after it.
   */
  invalidateWhere(match: (slot: number) => boolean): number {
    Atomics.add(this.ctl, C_GEN, 1);
    let n = 0;
    const ways = this.ways;
    for (let set = 0; set < this.sets; set++) {
      const base = set * ways;
      // A set that is empty, with no writer before or after we looked, is skipped without
      // taking it: a fill that takes it later reads the generation after our bump, and drops.
      const seqAt = this.seqBase + set;
      const seq0 = Atomics.load(this.ctl, seqAt);
      if ((seq0 & 1) === 0) {
        let any = false;
        for (let w = base; w < base + ways; w++) if (this.size[w] !== 0) any = true;
        if (!any && Atomics.load(this.ctl, seqAt) === seq0) continue;
      }
      const seq = this.lockSet(set);
      for (let w = base; w < base + ways; w++) {
        if (this.size[w] !== 0 && match(w)) {
          this.size[w] = 0;
          n++;
        }
      }
      Atomics.store(this.ctl, this.seqBase + set, seq + 2);
    }
    this.counters.invalidated += n;
    return n;
  }

  /** Removes everything. */
  invalidateAll(): number {
    this.counters.flushes++;
    return this.invalidateWhere(() => true);
  }

  /** Whether the entry in `slot` covers input address `va`. */
  covers(slot: number, va: number): boolean {
    return Math.floor(va * INV_POW2[this.size[slot]!]!) === this.key[slot];
  }

  /** Whether the entry's IPA range covers `ipa` (combined entries with a known IPA). */
  coversIpa(slot: number, ipa: number): boolean {
    const base = this.ipa[slot]!;
    return base >= 0 && ipa >= base && ipa < base + POW2[this.size[slot]!]!;
  }

  /** Valid entries (a snapshot; other threads may be changing them). */
  get occupancy(): number {
    let n = 0;
    for (let w = 0; w < this.entries; w++) if (this.size[w] !== 0) n++;
    return n;
  }
}
