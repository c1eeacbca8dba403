/**
 * A translation lookaside buffer: `sets` x `ways` entries in typed arrays
 * (struct of arrays, no object per entry), from direct-mapped (ways = 1) to
 * fully associative (sets = 1).
 *
 * An entry maps one naturally aligned region of 2^size bytes (a page or a
 * block, or the smaller of two stages' leaves for a combined entry). It is
 * tagged with the context bank, the VMID and the ASID (or GLOBAL for nG = 0
 * entries), and indexed by its page number at its own size. A lookup probes
 * one key per size class that the TLB currently holds (QEMU's
 * smmu_iotlb_lookup_all_levels does the same per level), so a block entry is
 * found from any address inside it; an invalidation by address removes every
 * entry that contains the address, whatever its size.
 */

export type Replacement = 'lru' | 'plru' | 'round-robin' | 'random' | 'fifo' | 'flush-when-full';

export interface TlbGeometry {
  entries: number;
  /** Ways per set: 1 = direct-mapped, `entries` = fully associative. */
  ways: number;
  replacement: Replacement;
  /** Seed for `random` replacement. */
  seed?: number;
}

export interface TlbStats {
  lookups: number;
  hits: number;
  misses: number;
  fills: number;
  evictions: number;
  invalidated: number;
  /** Fills dropped because an invalidation happened after the walk began (see TranslationCaches). */
  droppedFills: number;
  /** Whole-TLB flushes done by `flush-when-full`. */
  flushes: number;
}

/** ASID value of an entry that matches every ASID (nG = 0). */
export const GLOBAL = -1;
/** `cb` of an entry that matches every context bank (a stage-2 entry shared by a VMID). */
export const ANY_CB = -1;

import { INV_POW2, POW2 } from '../pgtable/geometry.js';

const INV_TWO32 = 1 / 4294967296;

export class TlbError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlbError';
  }
}

/**
 * The set of an entry: its page number `key` at its size class `size` (log2 bytes), the low and
 * high words of the key mixed with the size, masked to `setMask` (sets - 1). Tlb.lookup inlines it.
 */
export function setIndex(key: number, size: number, setMask: number): number {
  const lo = key | 0;
  const hi = (key * INV_TWO32) | 0;
  return (lo ^ hi ^ Math.imul(size, 0x9e3779b1) ^ (lo >>> 13)) & setMask;
}

/**
 * Checks `entries` and `ways` (sets = entries / ways, a power of two) and returns the number of
 * sets; throws a TlbError saying what is wrong, after `what` (e.g. "shared TLB: ").
 */
export function checkSets(g: TlbGeometry, what = ''): number {
  const { entries, ways } = g;
  if (!Number.isInteger(entries) || entries < 1) throw new TlbError(`${what}entries must be a positive integer, got ${entries}`);
  if (!Number.isInteger(ways) || ways < 1 || ways > entries) throw new TlbError(`${what}ways must be 1..entries (${entries}), got ${ways}`);
  if (entries % ways !== 0) throw new TlbError(`${what}entries (${entries}) must be a multiple of ways (${ways})`);
  const sets = entries / ways;
  if ((sets & (sets - 1)) !== 0) throw new TlbError(`${what}entries / ways must be a power of two (got ${sets} sets)`);
  return sets;
}

export class Tlb {
  readonly entries: number;
  readonly ways: number;
  readonly sets: number;
  private readonly setMask: number;
  readonly replacement: Replacement;
  private readonly counters: TlbStats = { lookups: 0, hits: 0, misses: 0, fills: 0, evictions: 0, invalidated: 0, droppedFills: 0, flushes: 0 };
  // Hits and misses are counted in plain fields on the hot path and folded into `stats` when read.
  private nHits = 0;
  private nMisses = 0;

  /** Statistics (the same object every time; its counters may be updated by the owner). */
  get stats(): TlbStats {
    const c = this.counters;
    c.hits = this.nHits;
    c.misses = this.nMisses;
    c.lookups = this.nHits + this.nMisses;
    return c;
  }

  // Per slot (set * ways + way). size = 0 marks an invalid slot.
  readonly size: Uint8Array;
  readonly key: Float64Array; // input address / 2^size (a signed number for the TTBR1 half)
  readonly cb: Int32Array;
  readonly vmid: Int32Array;
  readonly asid: Int32Array;
  /** Output base (PA, or IPA for a stage-1-only entry) of the region. */
  readonly out: Float64Array;
  /** IPA base of the region for combined entries (-1 when not known). */
  readonly ipa: Float64Array;
  readonly perm: Uint8Array;
  /** Whatever the owner wants to keep with the entry (attributes, levels). */
  readonly aux: Int32Array;
  // True LRU: a doubly linked recency list per set (head = most recent), so touch and victim are O(1).
  private readonly lruPrev: Int32Array;
  private readonly lruNext: Int32Array;
  private readonly lruHead: Int32Array;
  private readonly lruTail: Int32Array;
  /** Valid entries per set (a full set needs no search for a free way). */
  private readonly setValid: Int32Array;

  // Per set replacement state.
  private readonly plru: Int32Array;
  private readonly fifo: Int32Array;
  private rr = 0;
  private rand: number;
  private valid = 0;
  /** Valid entries per size class (index: log2 size), so lookups skip absent sizes. */
  private readonly sizeCount = new Int32Array(64);
  private sizesPresent: number[] = [];

  constructor(g: TlbGeometry) {
    const { entries, ways } = g;
    const sets = checkSets(g);
    if (g.replacement === 'plru' && (ways & (ways - 1)) !== 0) throw new TlbError(`tree PLRU needs a power-of-two number of ways, got ${ways}`);
    if (g.replacement === 'plru' && ways > 32) throw new TlbError('tree PLRU supports at most 32 ways');
    this.entries = entries;
    this.ways = ways;
    this.sets = sets;
    this.setMask = sets - 1;
    this.replacement = g.replacement;
    this.size = new Uint8Array(entries);
    this.key = new Float64Array(entries);
    this.cb = new Int32Array(entries);
    this.vmid = new Int32Array(entries);
    this.asid = new Int32Array(entries);
    this.out = new Float64Array(entries);
    this.ipa = new Float64Array(entries);
    this.perm = new Uint8Array(entries);
    this.aux = new Int32Array(entries);
    this.lruPrev = new Int32Array(entries);
    this.lruNext = new Int32Array(entries);
    this.lruHead = new Int32Array(sets);
    this.lruTail = new Int32Array(sets);
    this.setValid = new Int32Array(sets);
    // Each set's list starts as its ways in order (way 0 most recent, the last way least recent).
    for (let set = 0; set < sets; set++) {
      const base = set * ways;
      this.lruHead[set] = base;
      this.lruTail[set] = base + ways - 1;
      for (let w = 0; w < ways; w++) {
        this.lruPrev[base + w] = w === 0 ? -1 : base + w - 1;
        this.lruNext[base + w] = w === ways - 1 ? -1 : base + w + 1;
      }
    }
    this.plru = new Int32Array(sets);
    this.fifo = new Int32Array(sets);
    this.rand = (g.seed ?? 0x2545f491) >>> 0 || 1;
  }

  /** Number of valid entries. */
  get occupancy(): number {
    return this.valid;
  }

  private setOf(key: number, size: number): number {
    return setIndex(key, size, this.setMask);
  }

  /**
   * Finds the entry translating `va` for (cb, vmid, asid); returns its slot or -1.
   * `cb` may be ANY_CB in an entry to match every bank; `asid` GLOBAL in an entry to match every ASID.
   */
  lookup(cb: number, vmid: number, asid: number, va: number): number {
    const sizes = this.sizesPresent;
    const n = sizes.length;
    const ways = this.ways;
    const keys = this.key;
    for (let k = 0; k < n; k++) {
      const s = sizes[k]!;
      const key = Math.floor(va * INV_POW2[s]!);
      // The set: setIndex(key, s, setMask), inlined.
      const lo = key | 0;
      const base = ((lo ^ ((key * INV_TWO32) | 0) ^ Math.imul(s, 0x9e3779b1) ^ (lo >>> 13)) & this.setMask) * ways;
      for (let w = base; w < base + ways; w++) {
        if (
          keys[w] === key &&
          this.size[w] === s &&
          this.vmid[w] === vmid &&
          (this.cb[w] === cb || this.cb[w] === ANY_CB) &&
          (this.asid[w] === asid || this.asid[w] === GLOBAL)
        ) {
          if (ways > 1) this.touch(w, base);
          this.nHits++;
          return w;
        }
      }
    }
    this.nMisses++;
    return -1;
  }

  private touch(slot: number, base: number): void {
    switch (this.replacement) {
      case 'lru': {
        const set = (base / this.ways) | 0;
        if (this.lruHead[set] === slot) return;
        // Unlink, then push to the front.
        const p = this.lruPrev[slot]!;
        const n = this.lruNext[slot]!;
        if (p >= 0) this.lruNext[p] = n;
        if (n >= 0) this.lruPrev[n] = p;
        else this.lruTail[set] = p;
        const h = this.lruHead[set]!;
        this.lruPrev[slot] = -1;
        this.lruNext[slot] = h;
        this.lruPrev[h] = slot;
        this.lruHead[set] = slot;
        return;
      }
      case 'plru': {
        // Tree PLRU: on each level, point away from the half that holds the touched way.
        const ways = this.ways;
        const set = base / ways;
        let bits = this.plru[set]!;
        let node = 1;
        let lo = 0;
        let span = ways;
        const way = slot - base;
        while (span > 1) {
          span >>= 1;
          const right = way >= lo + span;
          if (right) {
            bits &= ~(1 << node); // 0: the next victim is on the left
            lo += span;
            node = node * 2 + 1;
          } else {
            bits |= 1 << node; // 1: the next victim is on the right
            node = node * 2;
          }
        }
        this.plru[set] = bits;
        return;
      }
      default:
        return;
    }
  }

  private victim(base: number): number {
    const ways = this.ways;
    if (this.setValid[(base / ways) | 0]! < ways) for (let w = base; w < base + ways; w++) if (this.size[w] === 0) return w;
    switch (this.replacement) {
      case 'lru':
        return this.lruTail[(base / ways) | 0]!;
      case 'plru': {
        const bits = this.plru[base / ways]!;
        let node = 1;
        let lo = 0;
        let span = ways;
        while (span > 1) {
          span >>= 1;
          if ((bits & (1 << node)) !== 0) {
            lo += span;
            node = node * 2 + 1;
          } else node = node * 2;
        }
        return base + lo;
      }
      case 'round-robin': {
        // One counter for the whole cache (gem5's round-robin).
        const v = base + (this.rr % ways);
        this.rr = (this.rr + 1) % ways;
        return v;
      }
      case 'random': {
        let x = this.rand;
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        this.rand = x >>> 0;
        return base + (this.rand % ways);
      }
      case 'fifo': {
        const set = base / ways;
        const v = base + this.fifo[set]!;
        this.fifo[set] = (this.fifo[set]! + 1) % ways;
        return v;
      }
      case 'flush-when-full':
        return -1;
    }
  }

  /**
   * Inserts an entry for the 2^size region containing `va`. Returns the slot used. An entry for
   * the same region and tags is replaced in place.
   */
  fill(cb: number, vmid: number, asid: number, va: number, size: number, out: number, ipa: number, perm: number, aux: number, alignOut = true): number {
    if (!(size >= 1 && size < 64)) throw new TlbError(`entry size 2^${size} is out of range`);
    const key = Math.floor(va * INV_POW2[size]!);
    const base = this.setOf(key, size) * this.ways;
    let slot = -1;
    for (let w = base; w < base + this.ways; w++) {
      if (this.size[w] === size && this.key[w] === key && this.vmid[w] === vmid && this.cb[w] === cb && this.asid[w] === asid) {
        slot = w;
        break;
      }
    }
    if (slot < 0) {
      slot = this.victim(base);
      if (slot < 0) {
        // flush-when-full: QEMU wipes its IOTLB when an insertion finds it full.
        if (this.valid >= this.entries || this.setFull(base)) {
          this.stats.flushes++;
          this.stats.evictions += this.valid;
          this.clearAll();
        }
        slot = this.victim(base);
      } else if (this.size[slot] !== 0) {
        this.stats.evictions++;
        this.drop(slot);
      }
    } else {
      this.drop(slot);
    }
    this.size[slot] = size;
    this.key[slot] = key;
    this.cb[slot] = cb;
    this.vmid[slot] = vmid;
    this.asid[slot] = asid;
    // Translation entries keep the output base of the region; walk-cache entries a table address as is.
    const span = POW2[size]!;
    const inv = INV_POW2[size]!;
    this.out[slot] = alignOut ? Math.floor(out * inv) * span : out;
    this.ipa[slot] = ipa < 0 ? -1 : Math.floor(ipa * inv) * span;
    this.perm[slot] = perm;
    this.aux[slot] = aux;
    this.valid++;
    this.setValid[(base / this.ways) | 0]!++;
    if (this.sizeCount[size]++ === 0) this.recomputeSizes();
    if (this.replacement === 'plru' || this.replacement === 'lru') this.touch(slot, base);
    this.stats.fills++;
    return slot;
  }

  private setFull(base: number): boolean {
    for (let w = base; w < base + this.ways; w++) if (this.size[w] === 0) return false;
    return true;
  }

  private recomputeSizes(): void {
    const s: number[] = [];
    for (let i = 0; i < 64; i++) if (this.sizeCount[i]! > 0) s.push(i);
    this.sizesPresent = s;
  }

  private drop(slot: number): void {
    const s = this.size[slot]!;
    if (s === 0) return;
    this.size[slot] = 0;
    this.valid--;
    this.setValid[(slot / this.ways) | 0]!--;
    if (--this.sizeCount[s]! === 0) this.recomputeSizes();
  }

  private clearAll(): void {
    this.size.fill(0);
    this.setValid.fill(0);
    this.sizeCount.fill(0);
    this.sizesPresent = [];
    this.valid = 0;
  }

  /** The output address for `va` through the entry in `slot`. */
  outputOf(slot: number, va: number): number {
    return this.out[slot]! + (va - this.key[slot]! * POW2[this.size[slot]!]!);
  }

  /** Removes every entry for which `match(slot)` is true; returns how many. */
  invalidateWhere(match: (slot: number) => boolean): number {
    let n = 0;
    for (let w = 0; w < this.entries; w++) {
      if (this.size[w] !== 0 && match(w)) {
        this.drop(w);
        n++;
      }
    }
    this.stats.invalidated += n;
    return n;
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

  /** Removes everything. */
  invalidateAll(): number {
    const n = this.valid;
    this.clearAll();
    this.stats.invalidated += n;
    return n;
  }
}
