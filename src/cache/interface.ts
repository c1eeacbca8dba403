/**
 * How the SMMU model reaches whatever caches translations: one call per TLB
 * maintenance operation, and a sync that reports completion. The uncached
 * configuration (`NoCache`) walks every time, so every invalidation is
 * complete as soon as it is issued. Issue D's TLBs and walk caches implement
 * the same interface.
 */

import type { PhysMem } from '../memory/phys.js';
import type { Regime } from '../pgtable/regime.js';
import type { WalkResult } from '../walk/result.js';
import { translate as walk } from '../walk/walk.js';

/** The scope of one invalidation, after the SMMU has decoded the TLBI register value. */
export type InvalidationScope =
  /** TLBIALLNSNH / TLBIALLH: everything. */
  | { kind: 'all' }
  /** TLBIVMID (and a stage-2 bank's TLBIALL): every entry of a VMID. */
  | { kind: 'vmid'; vmid: number }
  /** TLBIALL of a stage-1 bank: every entry of that context bank. */
  | { kind: 'context'; cb: number; vmid: number }
  /** TLBIASID: entries of an ASID (global entries stay). */
  | { kind: 'asid'; vmid: number; asid: number }
  /**
   * TLBIVA/TLBIVAL (one ASID, plus global entries) and TLBIVAA/TLBIVAAL (all
   * ASIDs): entries translating the page at `va`; `leaf` limits it to the
   * last-level entry (walk caches keep their table entries).
   */
  | { kind: 'va'; vmid: number; asid: number; allAsids: boolean; va: number; leaf: boolean }
  /** TLBIIPAS2/TLBIIPAS2L: stage-2 entries for the page at `ipa`. */
  | { kind: 'ipa'; vmid: number; ipa: number; leaf: boolean };

export interface TranslationCache {
  /**
   * Translates `va` for access `acc` in `regime` (context bank `cb`, stream `sid`), using
   * whatever it caches and walking on a miss. The walker's contract: true with `res.pa`, or
   * false with the fault in `res`.
   */
  translate(mem: PhysMem, regime: Regime, cb: number, sid: number, va: number, acc: number, res: WalkResult): boolean;
  /** Applies one invalidation (it may complete later). */
  invalidate(scope: InvalidationScope): void;
  /** True once every invalidation issued before this call is complete (TLBSTATUS/sTLBGSTATUS read 0). */
  syncComplete(): boolean;
}

/** No caching: nothing to invalidate, and every sync is complete at once. */
export class NoCache implements TranslationCache {
  translate(mem: PhysMem, regime: Regime, _cb: number, _sid: number, va: number, acc: number, res: WalkResult): boolean {
    return walk(mem, regime, va, acc, res);
  }

  /** Invalidations seen, by kind (for tests and statistics). */
  readonly counts: Record<InvalidationScope['kind'], number> = { all: 0, vmid: 0, context: 0, asid: 0, va: 0, ipa: 0 };
  readonly log: InvalidationScope[] = [];
  keepLog = false;

  invalidate(scope: InvalidationScope): void {
    this.counts[scope.kind]++;
    if (this.keepLog) this.log.push(scope);
  }

  syncComplete(): boolean {
    return true;
  }
}
