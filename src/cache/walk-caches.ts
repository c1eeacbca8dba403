/**
 * Walk caches (as MMU-600's TCU has): table descriptors cached per stage and
 * level, so that a walk starts at the deepest table it already knows, and the
 * nested dimension: stage-2 translations of stage-1 table pages, so that a
 * nested walk's stage-1 table fetches skip their stage-2 walks.
 *
 * - Stage 1, level L: "for VAs in this 2^levelShift(L-1) region, the level-L
 *   table is at X" (X an IPA when nested: a stage-2 change never makes it
 *   stale), with the APTable/XNTable limits gathered above it; tagged with the
 *   context bank, VMID and ASID.
 * - Stage 2, level L: the same for IPAs, tagged with the VMID.
 * - Nested (`ptw`): IPA -> PA of the pages holding stage-1 tables, per VMID.
 *
 * Invalidation (see `invalidate`): TLBIVA/VAA remove stage-1 walk entries
 * covering the address; their leaf-only forms (TLBIVAL/VAAL) leave walk
 * caches alone, as the architecture allows; TLBIIPAS2 removes stage-2 walk and
 * nested entries covering the IPA, TLBIIPAS2L only the nested (leaf) ones.
 * Inserts made by a walk that began before an invalidation are dropped
 * (the same epoch rule as the TLBs).
 */

import { levelShift } from '../pgtable/geometry.js';
import type { Regime } from '../pgtable/regime.js';
import type { WalkCacheHooks } from '../walk/hooks.js';
import type { InvalidationScope } from './interface.js';
import { ANY_CB, GLOBAL, Tlb, type TlbGeometry, type TlbStats } from './tlb.js';

export interface WalkCacheConfig {
  /** Per stage-1 level (tables at levels 1, 2, 3), one structure each. */
  s1?: TlbGeometry;
  /** Per stage-2 level. */
  s2?: TlbGeometry;
  /** Stage-2 translations of stage-1 table pages (the nested dimension). */
  ptw?: TlbGeometry;
}

export class WalkCaches implements WalkCacheHooks {
  table = 0;
  limits = 0;
  /** s1[L] caches level-L tables (L = 1..3); index 0 unused. */
  readonly s1: Array<Tlb | null>;
  readonly s2: Array<Tlb | null>;
  readonly ptw: Tlb | null;
  /** Inserts are made only while `epoch` equals `walkEpoch` (set when a translation begins). */
  epoch = 0;
  walkEpoch = 0;

  constructor(readonly config: WalkCacheConfig) {
    this.s1 = [null, ...[1, 2, 3].map(() => (config.s1 ? new Tlb(config.s1) : null))];
    this.s2 = [null, ...[1, 2, 3].map(() => (config.s2 ? new Tlb(config.s2) : null))];
    this.ptw = config.ptw ? new Tlb(config.ptw) : null;
  }

  private fresh(): boolean {
    return this.epoch === this.walkEpoch;
  }

  s1Find(regime: Regime, va: number): number {
    const root = va >= 0 ? regime.ttbr0 : regime.ttbr1;
    for (let level = 3; level > root.startLevel; level--) {
      const t = this.s1[level];
      if (t === null || t === undefined || t.occupancy === 0) continue;
      const slot = t.lookup(regime.cb, regime.vmid, regime.asid, va);
      if (slot >= 0) {
        this.table = t.out[slot]!;
        this.limits = t.aux[slot]!;
        return level;
      }
    }
    return -1;
  }

  s1Insert(regime: Regime, va: number, level: number, table: number, limits: number): void {
    const t = this.s1[level];
    if (t === null || t === undefined || !this.fresh()) return;
    const root = va >= 0 ? regime.ttbr0 : regime.ttbr1;
    // The level-(L-1) descriptor that points at this table covers 2^levelShift(L-1) bytes.
    t.fill(regime.cb, regime.vmid, regime.asid, va, levelShift(root.granuleShift, level - 1), table, -1, 0, limits, false);
  }

  s2Find(regime: Regime, ipa: number): number {
    for (let level = 3; level > regime.vttbr.startLevel; level--) {
      const t = this.s2[level];
      if (t === null || t === undefined || t.occupancy === 0) continue;
      const slot = t.lookup(ANY_CB, regime.vmid, GLOBAL, ipa);
      if (slot >= 0) {
        this.table = t.out[slot]!;
        return level;
      }
    }
    return -1;
  }

  s2Insert(regime: Regime, ipa: number, level: number, table: number): void {
    const t = this.s2[level];
    if (t === null || t === undefined || !this.fresh()) return;
    t.fill(ANY_CB, regime.vmid, GLOBAL, ipa, levelShift(regime.vttbr.granuleShift, level - 1), table, -1, 0, 0, false);
  }

  ptwFind(regime: Regime, ipa: number): number {
    const t = this.ptw;
    if (t === null || t.occupancy === 0) return -1;
    const slot = t.lookup(ANY_CB, regime.vmid, GLOBAL, ipa);
    return slot >= 0 ? t.outputOf(slot, ipa) : -1;
  }

  ptwInsert(regime: Regime, ipa: number, pa: number, size: number): void {
    const t = this.ptw;
    if (t === null || !this.fresh()) return;
    t.fill(ANY_CB, regime.vmid, GLOBAL, ipa, size, pa, ipa, 0, 0);
  }

  private all(): Tlb[] {
    const out: Tlb[] = [];
    for (const t of [...this.s1, ...this.s2, this.ptw]) if (t !== null && t !== undefined) out.push(t);
    return out;
  }

  invalidate(scope: InvalidationScope): void {
    this.epoch++;
    const s1 = this.s1.filter((t): t is Tlb => t !== null);
    const s2 = this.s2.filter((t): t is Tlb => t !== null);
    const ptw = this.ptw;
    switch (scope.kind) {
      case 'all':
        for (const t of this.all()) t.invalidateAll();
        return;
      case 'vmid':
        for (const t of this.all()) t.invalidateWhere((w) => t.vmid[w] === scope.vmid);
        return;
      case 'context':
        for (const t of s1) t.invalidateWhere((w) => t.cb[w] === scope.cb);
        return;
      case 'asid':
        for (const t of s1) t.invalidateWhere((w) => t.vmid[w] === scope.vmid && t.asid[w] === scope.asid);
        return;
      case 'va':
        if (scope.leaf) return; // TLBIVAL/VAAL: last-level entries only; walk caches keep their tables
        for (const t of s1) {
          t.invalidateWhere((w) => t.vmid[w] === scope.vmid && (scope.allAsids || t.asid[w] === scope.asid) && t.covers(w, scope.va));
        }
        return;
      case 'ipa':
        ptw?.invalidateWhere((w) => ptw.vmid[w] === scope.vmid && ptw.covers(w, scope.ipa));
        if (scope.leaf) return;
        for (const t of s2) t.invalidateWhere((w) => t.vmid[w] === scope.vmid && t.covers(w, scope.ipa));
        return;
    }
  }

  stats(): Record<string, TlbStats> {
    const out: Record<string, TlbStats> = {};
    this.s1.forEach((t, l) => {
      if (t !== null) out[`walk-s1-l${l}`] = { ...t.stats };
    });
    this.s2.forEach((t, l) => {
      if (t !== null) out[`walk-s2-l${l}`] = { ...t.stats };
    });
    if (this.ptw !== null) out['walk-nested'] = { ...this.ptw.stats };
    return out;
  }
}
