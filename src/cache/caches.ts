/**
 * Translation caching strategies in front of the walker, behind the SMMU's
 * TranslationCache interface:
 *
 * - `none`: walk every time (NoCache in interface.ts).
 * - combined (`main`): VA -> PA entries, sized by the smaller of the two
 *   stages' leaves (QEMU's combine_tlb, gem5's combineTranslations).
 * - split (`s1` + `s2`): a stage-1 TLB (VA -> IPA, sized by the stage-1 leaf)
 *   and a separate stage-2 cache (IPA -> PA, per VMID), as MMU-500 has.
 * - hierarchy (`micro` + `main`): a small per-stream micro-TLB in front of the
 *   main TLB (TBU / TCU).
 * - `shared`: a combined TLB in shared memory (src/cache/shared-tlb.ts), one
 *   for every thread of a farm, as a TCU TLB serves all TBUs. It is looked up
 *   after the private micro and main TLBs, and a hit there fills them.
 * The pieces combine: any subset of micro, main, shared, s1, s2.
 *
 * Invalidations are exact per structure (see `invalidate`). An IPA
 * invalidation (TLBIIPAS2/L) removes stage-2 entries; whether it also removes
 * combined stage 1+2 entries is `ipaInvalidation`: 'architectural' (the
 * minimum the architecture requires: it need not, so software follows KVM's
 * rule and invalidates the VMID's stage-1 entries too) or 'conservative'
 * (combined entries whose IPA range contains the address go as well).
 *
 * Race-free fills by construction: every invalidation bumps `epoch`; a
 * translation captures the epoch before it walks and fills only if no
 * invalidation was applied in between, so a walk that began before an
 * invalidation never inserts its (possibly stale) result after it.
 */

import type { PhysMem } from '../memory/phys.js';
import type { Regime } from '../pgtable/regime.js';
import { ACC_EXEC, ACC_KIND_MASK, ACC_UNPRIV, ACC_WRITE, PERM_PR, PERM_PW, PERM_PX, type WalkResult } from '../walk/result.js';
import { POW2 } from '../pgtable/geometry.js';
import { translate, walkStage2 } from '../walk/walk.js';
import type { InvalidationScope, TranslationCache } from './interface.js';
import { createSharedTlbStorage, SharedTlb, type SharedTlbStorage } from './shared-tlb.js';
import { ANY_CB, GLOBAL, Tlb, TlbError, type TlbGeometry, type TlbStats } from './tlb.js';
import { WalkCaches, type WalkCacheConfig } from './walk-caches.js';

/** What an entry was made from (kept in Tlb.aux). */
const KIND_S1 = 1; // stage 1 only (stage 2 off)
const KIND_S2 = 2; // stage 2 only (stage 1 off): input is an IPA
const KIND_NESTED = 3; // combined stage 1 + 2

export interface CacheConfig {
  /** A name for reports. */
  name: string;
  /** Combined VA -> PA TLB. */
  main?: TlbGeometry;
  /** Per-stream micro-TLB in front of the other structures (combined entries). */
  micro?: TlbGeometry;
  /**
   * A combined TLB in shared memory, behind micro and main: one for all the threads of a farm
   * (each unit's TranslationCaches gets the same storage), like a TCU TLB behind TBUs.
   * Replacement must be 'fifo' (src/cache/shared-tlb.ts).
   */
  shared?: TlbGeometry;
  /** Split: stage-1 TLB (VA -> IPA) ... */
  s1?: TlbGeometry;
  /** ... and stage-2 cache (IPA -> PA). */
  s2?: TlbGeometry;
  /** Whether IPA invalidations also remove combined entries (default 'architectural': they need not). */
  ipaInvalidation?: 'architectural' | 'conservative';
  /** Walk caches per stage and level, and the nested-dimension cache (src/cache/walk-caches.ts). */
  walk?: WalkCacheConfig;
}

function permBit(acc: number): number {
  const kind = acc & ACC_KIND_MASK;
  const bit = kind === ACC_WRITE ? PERM_PW : kind === ACC_EXEC ? PERM_PX : PERM_PR;
  return (acc & ACC_UNPRIV) !== 0 ? bit << 3 : bit;
}

export interface CacheStats {
  translations: number;
  /** Translations answered without any walk. */
  hits: number;
  walks: number;
  /** Descriptors read by walks (both stages). */
  descriptorReads: number;
}

export class TranslationCaches implements TranslationCache {
  readonly config: CacheConfig;
  readonly main: Tlb | null;
  readonly s1: Tlb | null;
  readonly s2: Tlb | null;
  readonly walk: WalkCaches | null;
  /** This thread's view of the shared TLB, or null. */
  readonly shared: SharedTlb | null;
  private readonly micro = new Map<number, Tlb>();
  readonly stats: CacheStats = { translations: 0, hits: 0, walks: 0, descriptorReads: 0 };
  /** Bumped by every invalidation; fills from walks that began before the bump are dropped. */
  epoch = 0;
  /**
   * Test hook: called after a walk and before its fills (where another thread's invalidation
   * could land in a concurrent farm). Null in normal use.
   */
  afterWalk: (() => void) | null = null;
  /**
   * The epoch rule above. Only the stress tester's `late-fill` injection (src/farm/inject.ts)
   * turns it off, to show that its checker catches a walk filling after an invalidation. It is
   * read only when a fill finds the epoch changed, so it costs nothing otherwise. Setting it
   * sets the shared TLB's generation rule (SharedTlb.enforceGeneration) too.
   */
  get enforceEpoch(): boolean {
    return this.enforce;
  }
  set enforceEpoch(on: boolean) {
    this.enforce = on;
    if (this.shared !== null) this.shared.enforceGeneration = on;
  }
  private enforce = true;
  private readonly conservativeIpa: boolean;

  /**
   * `sharedTlb`: the storage of the shared TLB when `config.shared` is set and several threads
   * share it (a farm makes it once, src/farm/farm.ts); without it this instance makes its own.
   */
  constructor(config: CacheConfig, opts: { sharedTlb?: SharedTlbStorage } = {}) {
    this.config = config;
    if (config.micro !== undefined && config.main === undefined && config.s1 === undefined && config.shared === undefined) {
      throw new Error(`cache configuration ${config.name}: a micro-TLB needs a main, shared or stage-1 TLB behind it`);
    }
    if (config.shared !== undefined) {
      const st = opts.sharedTlb ?? createSharedTlbStorage(config.shared);
      if (st.sets * st.ways !== config.shared.entries || st.ways !== config.shared.ways) {
        throw new TlbError(`cache configuration ${config.name}: the shared TLB's storage has ${st.sets * st.ways} entries, ${st.ways}-way; the configuration says ${config.shared.entries}, ${config.shared.ways}-way`);
      }
      this.shared = new SharedTlb(st);
    } else if (opts.sharedTlb !== undefined) {
      throw new TlbError(`cache configuration ${config.name} has no shared TLB, but a shared TLB storage was given`);
    } else this.shared = null;
    this.main = config.main ? new Tlb(config.main) : null;
    this.s1 = config.s1 ? new Tlb(config.s1) : null;
    this.s2 = config.s2 ? new Tlb(config.s2) : null;
    this.walk = config.walk ? new WalkCaches(config.walk) : null;
    this.conservativeIpa = config.ipaInvalidation === 'conservative';
  }

  private microFor(sid: number): Tlb {
    let t = this.micro.get(sid);
    if (t === undefined) {
      t = new Tlb(this.config.micro!);
      this.micro.set(sid, t);
    }
    return t;
  }

  /** Statistics of every structure, by name. */
  structureStats(): Record<string, TlbStats> {
    const out: Record<string, TlbStats> = {};
    const add = (name: string, t: Tlb | null): void => {
      if (t !== null) out[name] = { ...t.stats };
    };
    if (this.micro.size > 0) {
      const sum: TlbStats = { lookups: 0, hits: 0, misses: 0, fills: 0, evictions: 0, invalidated: 0, droppedFills: 0, flushes: 0 };
      for (const t of this.micro.values()) for (const k of Object.keys(sum) as Array<keyof TlbStats>) sum[k] += t.stats[k];
      out.micro = sum;
    }
    add('main', this.main);
    if (this.shared !== null) out.shared = { ...this.shared.stats };
    add('s1', this.s1);
    add('s2', this.s2);
    if (this.walk !== null) Object.assign(out, this.walk.stats());
    return out;
  }

  /**
   * Translates through the caches, walking on a miss. Same contract as the walker's
   * `translate`: true with `res.pa`, or false with the fault in `res`.
   */
  translate(mem: PhysMem, regime: Regime, cb: number, sid: number, va: number, acc: number, res: WalkResult): boolean {
    this.stats.translations++;
    const need = permBit(acc);
    const kind = regime.s1 ? (regime.s2 ? KIND_NESTED : KIND_S1) : regime.s2 ? KIND_S2 : 0;
    if (kind === 0) return translate(mem, regime, va, acc, res);
    const vmid = regime.vmid;
    const asid = kind === KIND_S2 ? GLOBAL : regime.asid;
    const micro = this.config.micro !== undefined ? this.microFor(sid) : null;

    // 1. Combined entries: micro, then main.
    if (micro !== null) {
      const slot = micro.lookup(cb, vmid, asid, va);
      if (slot >= 0 && (micro.perm[slot]! & need) !== 0) return this.hit(res, micro.outputOf(slot, va), micro.perm[slot]!, micro.size[slot]!);
    }
    if (this.main !== null) {
      const m = this.main;
      const slot = m.lookup(cb, vmid, asid, va);
      if (slot >= 0 && (m.perm[slot]! & need) !== 0) {
        const pa = m.outputOf(slot, va);
        if (micro !== null) micro.fill(cb, vmid, m.asid[slot]!, va, m.size[slot]!, pa, m.ipa[slot]! < 0 ? -1 : m.ipa[slot]! + (va - m.key[slot]! * POW2[m.size[slot]!]!), m.perm[slot]!, m.aux[slot]!);
        return this.hit(res, pa, m.perm[slot]!, m.size[slot]!);
      }
    }
    const sh = this.shared;
    if (sh !== null && sh.lookup(cb, vmid, asid, va) && (sh.hitPerm & need) !== 0) {
      // A hit in the shared TLB, copied out of shared memory: it fills the private TLBs.
      const pa = sh.hitOutput(va);
      const ipa = sh.hitIpaOf(va);
      if (this.main !== null) this.main.fill(cb, vmid, sh.hitAsid, va, sh.hitSize, pa, ipa, sh.hitPerm, sh.hitAux);
      if (micro !== null) micro.fill(cb, vmid, sh.hitAsid, va, sh.hitSize, pa, ipa, sh.hitPerm, sh.hitAux);
      return this.hit(res, pa, sh.hitPerm, sh.hitSize);
    }

    const epoch = this.epoch;
    // The shared TLB's invalidation generation, read before any walk (see SharedTlb.fill).
    const sharedGen = sh !== null ? sh.generation() : 0;
    const walk = this.walk;
    if (walk !== null) walk.walkEpoch = walk.epoch;
    // 2. Split: a stage-1 hit gives the IPA; the stage-2 cache (or a stage-2 walk) the PA.
    if (this.s1 !== null && kind !== KIND_S2) {
      const t = this.s1;
      const slot = t.lookup(cb, vmid, asid, va);
      if (slot >= 0 && (t.perm[slot]! & need) !== 0) {
        const ipa = t.outputOf(slot, va);
        const s1perm = t.perm[slot]!;
        const s1size = t.size[slot]!;
        if (kind === KIND_S1) return this.hit(res, ipa, s1perm, s1size);
        if (this.stage2(mem, regime, ipa, acc, res, epoch)) {
          const pa = res.pa;
          const perm = s1perm & res.perm;
          const size = Math.min(s1size, res.sizeShift);
          this.fillCombined(micro, cb, vmid, asid, va, size, pa, ipa, perm, KIND_NESTED, epoch, sharedGen);
          return this.hit(res, pa, perm, size, res.reads);
        }
        return false;
      }
    } else if (this.s2 !== null && kind === KIND_S2) {
      const ok = this.stage2(mem, regime, va, acc, res, epoch);
      if (ok && res.reads === 0) this.stats.hits++;
      return ok;
    }

    // 3. Walk.
    this.stats.walks++;
    const ok = translate(mem, regime, va, acc, res, walk);
    this.stats.descriptorReads += res.reads;
    if (this.afterWalk !== null) this.afterWalk();
    if (!ok) return false;
    const entryAsid = kind === KIND_S2 || res.nG === 0 ? GLOBAL : asid;
    this.fillCombined(micro, cb, vmid, entryAsid, va, res.sizeShift, res.pa, kind === KIND_S1 ? -1 : res.ipa, res.perm, kind, epoch, sharedGen);
    if (this.s1 !== null && kind !== KIND_S2 && (epoch === this.epoch || !this.enforceEpoch)) {
      this.s1.fill(cb, vmid, entryAsid, va, res.s1SizeShift, res.ipa, -1, kind === KIND_NESTED ? this.s1PermOf(res) : res.perm, kind);
    }
    if (this.s2 !== null && kind !== KIND_S1 && (epoch === this.epoch || !this.enforceEpoch)) {
      this.s2.fill(ANY_CB, vmid, GLOBAL, res.ipa, res.s2SizeShift, res.pa, res.ipa, this.s2PermOf(res), KIND_S2);
    }
    return true;
  }

  // The walker reports combined permissions; the split structures need each stage's own.
  // Stage 1's are recomputed from the combined value conservatively: the combined permission
  // is a subset of each stage's, so caching it per stage can only cause extra walks, never
  // a wrong answer.
  private s1PermOf(res: WalkResult): number {
    return res.perm;
  }

  private s2PermOf(res: WalkResult): number {
    return res.perm;
  }

  /** Stage 2 of `ipa` through the stage-2 cache, walking on a miss. */
  private stage2(mem: PhysMem, regime: Regime, ipa: number, acc: number, res: WalkResult, epoch: number): boolean {
    const need = permBit(acc);
    const t = this.s2!;
    const slot = t.lookup(ANY_CB, regime.vmid, GLOBAL, ipa);
    if (slot >= 0 && (t.perm[slot]! & need) !== 0) {
      res.reset();
      res.pa = t.outputOf(slot, ipa);
      res.ipa = ipa;
      res.perm = t.perm[slot]!;
      res.sizeShift = t.size[slot]!;
      return true;
    }
    this.stats.walks++;
    res.reset();
    res.s2In = ipa;
    const ok = walkStage2(mem, regime.vttbr, acc & ACC_KIND_MASK, res, false, this.walk, regime) === 0;
    this.stats.descriptorReads += res.reads;
    if (this.afterWalk !== null) this.afterWalk();
    if (!ok) return false;
    res.pa = res.s2Out;
    res.ipa = ipa;
    res.sizeShift = res.s2SizeShift;
    if (epoch === this.epoch || !this.enforceEpoch) t.fill(ANY_CB, regime.vmid, GLOBAL, ipa, res.s2SizeShift, res.pa, ipa, res.perm, KIND_S2);
    else t.stats.droppedFills++;
    return true;
  }

  private fillCombined(micro: Tlb | null, cb: number, vmid: number, asid: number, va: number, size: number, pa: number, ipa: number, perm: number, kind: number, epoch: number, sharedGen: number): void {
    if (epoch !== this.epoch && this.enforceEpoch) {
      // An invalidation was applied after this walk began: its result may be stale.
      if (this.main !== null) this.main.stats.droppedFills++;
      else if (this.shared !== null) this.shared.stats.droppedFills++;
      else if (micro !== null) micro.stats.droppedFills++;
      return;
    }
    // The shared TLB checks its own generation: an invalidation applied by any thread since the walk began drops the fill.
    if (this.shared !== null) this.shared.fill(sharedGen, cb, vmid, asid, va, size, pa, ipa, perm, kind);
    if (this.main !== null) this.main.fill(cb, vmid, asid, va, size, pa, ipa, perm, kind);
    if (micro !== null) micro.fill(cb, vmid, asid, va, size, pa, ipa, perm, kind);
  }

  private hit(res: WalkResult, pa: number, perm: number, size: number, reads = 0): boolean {
    if (reads === 0) this.stats.hits++;
    res.fault = 0;
    res.pa = pa;
    res.perm = perm;
    res.sizeShift = size;
    res.reads = reads;
    return true;
  }

  // ---------------------------------------------------------------- invalidation

  /** Applies one invalidation to every structure, exactly as its scope says. */
  invalidate(scope: InvalidationScope): void {
    this.epoch++;
    this.walk?.invalidate(scope);
    const combined: Array<Tlb | SharedTlb> = [];
    if (this.main !== null) combined.push(this.main);
    if (this.shared !== null) combined.push(this.shared);
    for (const t of this.micro.values()) combined.push(t);
    if (this.s1 !== null) combined.push(this.s1);
    const s2 = this.s2;
    switch (scope.kind) {
      case 'all':
        for (const t of combined) t.invalidateAll();
        s2?.invalidateAll();
        return;
      case 'vmid':
        for (const t of combined) t.invalidateWhere((w) => t.vmid[w] === scope.vmid);
        s2?.invalidateWhere((w) => s2.vmid[w] === scope.vmid);
        return;
      case 'context':
        for (const t of combined) t.invalidateWhere((w) => t.cb[w] === scope.cb);
        return;
      case 'asid':
        // Stage-1 entries of the ASID (global entries stay); stage-2 entries are not ASID-tagged.
        for (const t of combined) t.invalidateWhere((w) => t.aux[w] !== KIND_S2 && t.vmid[w] === scope.vmid && t.asid[w] === scope.asid);
        return;
      case 'va':
        // Stage-1 entries containing the address, for the ASID and global ones (or all ASIDs).
        for (const t of combined) {
          t.invalidateWhere(
            (w) =>
              t.aux[w] !== KIND_S2 &&
              t.vmid[w] === scope.vmid &&
              (scope.allAsids || t.asid[w] === scope.asid || t.asid[w] === GLOBAL) &&
              t.covers(w, scope.va),
          );
        }
        return;
      case 'ipa':
        // Stage-2 entries containing the IPA; combined entries only in the conservative mode.
        s2?.invalidateWhere((w) => s2.vmid[w] === scope.vmid && s2.covers(w, scope.ipa));
        for (const t of combined) {
          t.invalidateWhere(
            (w) =>
              t.vmid[w] === scope.vmid &&
              ((t.aux[w] === KIND_S2 && t.covers(w, scope.ipa)) || (this.conservativeIpa && t.aux[w] === KIND_NESTED && t.coversIpa(w, scope.ipa))),
          );
        }
        return;
    }
  }

  /** Invalidations apply at once here, so every sync is complete. */
  syncComplete(): boolean {
    return true;
  }
}
