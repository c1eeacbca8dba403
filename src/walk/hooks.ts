/**
 * What a walker may ask of walk caches. The walk layer declares it; the cache
 * layer (src/cache/walk-caches.ts) implements it, so that layers stay ordered.
 * With no hooks (null) the walker reads every descriptor.
 */

import type { Regime } from '../pgtable/regime.js';

export interface WalkCacheHooks {
  /** Output of the last successful find: a table address, and stage-1 hierarchical limits. */
  table: number;
  limits: number;
  /**
   * The deepest cached stage-1 table on the walk of `va` (a signed VA) in `regime`: returns
   * its level (the level its descriptors are at) and sets `table` (an IPA when nested) and
   * `limits`, or returns -1.
   */
  s1Find(regime: Regime, va: number): number;
  /** Records that the level-`level` table for `va` is at `table`, with the limits gathered above it. */
  s1Insert(regime: Regime, va: number, level: number, table: number, limits: number): void;
  /** The same for stage 2, keyed by the VMID and the IPA. */
  s2Find(regime: Regime, ipa: number): number;
  s2Insert(regime: Regime, ipa: number, level: number, table: number): void;
  /** The nested dimension: the PA of a stage-1 table page at `ipa` (-1 when not cached). */
  ptwFind(regime: Regime, ipa: number): number;
  /** Records the stage-2 translation of a stage-1 table page (a 2^size region). */
  ptwInsert(regime: Regime, ipa: number, pa: number, size: number): void;
}
