/**
 * Named caching configurations that mirror designs users know. Sizes are
 * "like" the named design, not a claim about any particular implementation's
 * exact microarchitecture.
 */

import { TranslationCaches, type CacheConfig } from './caches.js';
import { NoCache, type TranslationCache } from './interface.js';
import type { WalkCacheConfig } from './walk-caches.js';

/** MMU-600-like walk caches: 256 entries, 4-way, per stage-1 level, stage-2 level, and the nested dimension. */
const MMU600_WALK: WalkCacheConfig = {
  s1: { entries: 256, ways: 4, replacement: 'plru' },
  s2: { entries: 256, ways: 4, replacement: 'plru' },
  ptw: { entries: 256, ways: 4, replacement: 'plru' },
};

export const CACHE_PRESETS: Record<string, CacheConfig | null> = {
  /** Walk every time. */
  none: null,
  /** QEMU's IOTLB: one 256-entry table, wiped when an insertion finds it full; IPA invalidations skip combined entries. */
  qemu: { name: 'qemu', main: { entries: 256, ways: 256, replacement: 'flush-when-full' }, ipaInvalidation: 'architectural' },
  /**
   * MMU-500-like: a 32-entry fully associative micro-TLB per stream (TBU) in front of a split
   * TCU: a 2048-entry 4-way stage-1 TLB and a 512-entry 4-way IPA -> PA cache.
   */
  mmu500: {
    name: 'mmu500',
    micro: { entries: 32, ways: 32, replacement: 'lru' },
    s1: { entries: 2048, ways: 4, replacement: 'plru' },
    s2: { entries: 512, ways: 4, replacement: 'plru' },
    ipaInvalidation: 'architectural',
  },
  /** gem5's SMMUv3 defaults: a 32-entry micro-TLB and a 2048-entry 4-way main TLB, round-robin. */
  gem5: {
    name: 'gem5',
    micro: { entries: 32, ways: 32, replacement: 'round-robin' },
    main: { entries: 2048, ways: 4, replacement: 'round-robin' },
    ipaInvalidation: 'architectural',
  },
  /**
   * MMU-600-like: a micro-TLB per stream, a 2048-entry main TLB, and 8 walk caches of 256
   * entries (4-way): stage-1 tables at levels 1-3, stage-2 tables at levels 1-3 (one structure
   * per level, shared geometry), and the nested-dimension cache of stage-1 table pages.
   */
  mmu600: {
    name: 'mmu600',
    micro: { entries: 32, ways: 32, replacement: 'lru' },
    main: { entries: 2048, ways: 4, replacement: 'plru' },
    walk: MMU600_WALK,
    ipaInvalidation: 'architectural',
  },
  /**
   * mmu600 with its main TLB in shared memory: one 2048-entry 4-way TLB (FIFO per set) for all
   * the translation units of a farm, as a TCU TLB serves every TBU (gem5's SMMU TLB behind its
   * per-interface TLBs). Micro-TLBs and walk caches stay private to each unit. In one thread it
   * behaves as mmu600 with FIFO replacement in the main TLB.
   */
  'mmu600-shared': {
    name: 'mmu600-shared',
    micro: { entries: 32, ways: 32, replacement: 'lru' },
    shared: { entries: 2048, ways: 4, replacement: 'fifo' },
    walk: MMU600_WALK,
    ipaInvalidation: 'architectural',
  },
  /** Walk caches alone (no TLB): every translation walks, from the deepest cached table. */
  'walk-only': {
    name: 'walk-only',
    walk: {
      s1: { entries: 256, ways: 4, replacement: 'lru' },
      s2: { entries: 256, ways: 4, replacement: 'lru' },
      ptw: { entries: 256, ways: 4, replacement: 'lru' },
    },
  },
  /** A combined VA -> PA TLB, 512 entries 4-way LRU. */
  combined: { name: 'combined', main: { entries: 512, ways: 4, replacement: 'lru' }, ipaInvalidation: 'architectural' },
  /** The same, removing combined entries on IPA invalidations too. */
  'combined-conservative': { name: 'combined-conservative', main: { entries: 512, ways: 4, replacement: 'lru' }, ipaInvalidation: 'conservative' },
  /** Split stage-1 TLB and stage-2 cache, 512 entries each, 4-way LRU. */
  split: {
    name: 'split',
    s1: { entries: 512, ways: 4, replacement: 'lru' },
    s2: { entries: 512, ways: 4, replacement: 'lru' },
    ipaInvalidation: 'architectural',
  },
};

export function presetNames(): string[] {
  return Object.keys(CACHE_PRESETS);
}

/** A fresh cache system for a preset; throws with the valid names for an unknown one. */
export function makeCache(name: string): TranslationCache {
  if (!(name in CACHE_PRESETS)) throw new Error(`unknown cache preset "${name}" (valid: ${presetNames().join(', ')})`);
  const c = CACHE_PRESETS[name]!;
  return c === null ? new NoCache() : new TranslationCaches(c);
}
