/**
 * The measurable logic of `smmu-farm bench tables` (issue F): shared CPU page
 * tables vs private IOMMU tables (src/vsmmu/owners.ts) at both stages.
 *
 * One world holds two VMs on one physical SMMUv2, each with a guest process
 * whose address space an assigned device works in (nested translation: the
 * guest's stage 1 over KVM's stage 2). In the `shared` VM the SMMU walks the
 * CPU's own tables at both stages (the process's page tables, KVM's stage 2);
 * in the `private` VM it walks VFIO-style IOMMU tables mirrored from every
 * change. Both VMs have the same memory layout, so a change is the same change
 * in both.
 *
 * What is here:
 * - `changeCosts`: the exact descriptor writes, TLBIs and syncs of each change
 *   kind, counted by the owners in a fresh world;
 * - `tableMemory`: table pages for a mapped footprint;
 * - `TablesWorld.cycle`: one timed round of every change kind (each checked by
 *   DMA through the SMMU model before the next), used for the time a change
 *   takes until every device sees it, through the register model alone or
 *   with a farm of translation units (`runFarmTiming`) whose sync waits for
 *   every busy unit;
 * - `throughput`: nested translations/s through the SMMU model over each VM's
 *   tables.
 */

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import type { InvalidationScope, TranslationCache } from '../cache/interface.js';
import { CACHE_PRESETS, makeCache } from '../cache/presets.js';
import { ArmSmmuDriver, leafStep } from '../driver/arm-smmu.js';
import { snapshotSmmu } from '../farm/config.js';
import { Farm, type UnitStats } from '../farm/farm.js';
import { FarmInvalidator } from '../farm/invalidator.js';
import { CTL_CONFIG_GEN, CTL_WORDS, UNIT_WORDS, U_BUSY, type FarmShared } from '../farm/layout.js';
import { REQ_READ, RES_OK } from '../farm/unit.js';
import { PhysMem, type PhysMemShared } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, createGuestStage1 } from '../pgtable/builder.js';
import type { InvalidatorOptions } from '../farm/invalidator.js';
import type { Regime } from '../pgtable/regime.js';
import { PhysTables } from '../pgtable/table-memory.js';
import { encodeIds } from '../smmu/id.js';
import { Smmu } from '../smmu/smmu.js';
import { Stage1Owner, Stage2Owner, type ChangeCost, type Ownership } from '../vsmmu/owners.js';
import { Vm } from '../vsmmu/vm.js';
import { VSmmu } from '../vsmmu/vsmmu.js';
import type { WalkResult } from '../walk/result.js';

export const OWNERSHIPS: readonly Ownership[] = ['shared', 'private'];

const KiB = 1024;
const MiB = 1 << 20;
const PAGE = 4096;
const RW = PROT_READ | PROT_WRITE;
const S2_RW = PROT_READ | PROT_WRITE | PROT_CACHE;
const S2_RO = PROT_READ | PROT_CACHE;

// ---------------------------------------------------------------------------
// Owners with the two changes owners.ts does not model
// ---------------------------------------------------------------------------

/** A stage-1 owner that also does mprotect: rewrite the leaves (in both table sets when private), TLBIVAL per page, sync. */
export class BenchStage1Owner extends Stage1Owner {
  mprotect(va: number, size: number, prot: number): ChangeCost {
    return this.measure(() => {
      const step = leafStep(this.process, va);
      const n = this.process.protect(va, size, prot);
      if (this.mode === 'private') this.iommuTable!.protect(va, size, prot);
      if (n > 0) this.guest.flushRange(this.domain, va, size, true, true, step);
    });
  }
}

/**
 * A stage-2 owner that also does KVM's write-protection for dirty logging and the
 * break-before-make split of a 2 MiB block into pages (KVM's eager split when dirty
 * logging starts).
 *
 * Write-protect changes KVM's tables only. Shared: the SMMU walks them, so it needs
 * TLBIIPAS2 per page, a sync, TLBIVMID and a global sync, and afterwards the device's
 * writes fault at stage 2 (SMMUv2 has no hardware dirty-state update). Private: VFIO's
 * tables are not touched, nothing is invalidated on the SMMU, the device keeps writing,
 * and its writes are not logged (VFIO must report its pinned pages dirty).
 */
export class BenchStage2Owner extends Stage2Owner {
  writeProtect(ipa: number, size: number, prot = S2_RO): ChangeCost {
    return this.measure(() => {
      const step = leafStep(this.vm.stage2, ipa);
      const n = this.vm.stage2.protect(ipa, size, prot);
      if (this.mode === 'shared' && n > 0) {
        this.host.flushRange(this.domain, ipa, size, true, true, step);
        this.host.flushVmid(this.domain);
      }
    });
  }

  /** Splits the 2 MiB block at `ipa` into 4 KiB pages of the same output (break-before-make). */
  splitBlock(ipa: number): ChangeCost {
    const leaf = this.vm.stage2.lookup(ipa);
    if (leaf === null || leaf.shift !== 21) throw new Error(`splitBlock: no 2 MiB block at ${hex(ipa)}`);
    const pa = leaf.pa - (ipa % (2 * MiB));
    return this.measure(() => {
      const tabs = this.mode === 'shared' ? [this.vm.stage2] : [this.vm.stage2, this.smmuTable];
      for (const t of tabs) t.unmap(ipa, 2 * MiB);
      this.host.flushRange(this.domain, ipa, 2 * MiB, false, true, 2 * MiB);
      this.host.flushVmid(this.domain);
      for (const t of tabs) for (let o = 0; o < 2 * MiB; o += PAGE) t.map(ipa + o, pa + o, PAGE, S2_RW);
    });
  }
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

// ---------------------------------------------------------------------------
// A cache that forwards TLB maintenance to a farm, and times the phases of a change
// ---------------------------------------------------------------------------

/**
 * The physical SMMU's translation cache: a local cache system (what the register model
 * translates with), optionally a farm's invalidation protocol (every TLBI published to
 * the farm's units; TLBSTATUS reads complete once every busy unit has acknowledged), and
 * the time of the first invalidation since `mark()`.
 */
export class ForwardingCache implements TranslationCache {
  farm: FarmInvalidator | null = null;
  firstInvalidation = -1;
  /** When the last sync since `mark()` completed. */
  lastSync = -1;
  invalidations = 0;
  published = 0;

  constructor(readonly local: TranslationCache) {}

  translate(mem: PhysMem, regime: Regime, cb: number, sid: number, va: number, acc: number, res: WalkResult): boolean {
    return this.local.translate(mem, regime, cb, sid, va, acc, res);
  }

  invalidate(scope: InvalidationScope): void {
    if (this.firstInvalidation < 0) this.firstInvalidation = performance.now();
    this.invalidations++;
    this.local.invalidate(scope);
    if (this.farm !== null) {
      this.farm.invalidate(scope);
      this.published++;
    }
  }

  syncComplete(): boolean {
    if (this.farm !== null) this.farm.sync();
    const done = this.local.syncComplete();
    if (done) this.lastSync = performance.now();
    return done;
  }

  mark(): void {
    this.firstInvalidation = -1;
    this.lastSync = -1;
  }
}

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

/** Guest RAM (backed): the guest's table pages live here. */
const RAM_IPA = 0x4000_0000;
const RAM_SIZE = 16 * MiB;
/** A memslot backed by 2 MiB blocks (THP), data only (not backed in the model: nothing reads it). */
const BLOCKS_IPA = 0x1_0000_0000;
/** A memslot backed by 4 KiB pages (its PA is 4 KiB aligned only). */
const PAGES_IPA = 0x2_0000_0000;
const PAGES_SIZE = 8 * MiB;
/** Stage-1 windows of the guest process. */
const W_PAGES_VA = 0x10_0000_1000; // -> PAGES_IPA, 4 KiB leaves at both stages (24 reads per walk)
const W_BLOCKS_VA = 0x20_0000_0000; // -> BLOCKS_IPA, 2 MiB blocks at both stages
const S1_CHANGE_VA = 0x7f00_0000_0000; // mmap/mprotect/munmap, a fresh 2 MiB region per cycle
const S1_CHANGE_IPA = BLOCKS_IPA + 2 * MiB + 0x1000;
const S1_PAGES = 64;
const S1_SUB = 16;

export interface Side {
  mode: Ownership;
  vm: Vm;
  s1: BenchStage1Owner;
  s2: BenchStage2Owner;
  /** Physical stream IDs of the VM's assigned devices (all attached to the process's domain). */
  psids: number[];
  /** Host PA of the memslots' data (for checks). */
  blocksPa: number;
  pagesPa: number;
}

export interface WorldOptions {
  /** Assigned devices per VM (default 2). */
  devices?: number;
  /** Cache preset of the physical SMMU's local caches (default mmu600). */
  cache?: string;
  /** Size of the 2 MiB-block memslot (default 8 MiB). */
  blocksSize?: number;
  /** Map the process's windows (default true; false for table-memory counts). */
  windows?: boolean;
}

/** The change kinds, in the order a cycle makes them. */
export const CHANGES = [
  { key: 'mmap 64 pages', stage: 1 },
  { key: 'mprotect 16 pages', stage: 1 },
  { key: 'munmap 16 pages', stage: 1 },
  { key: 'S2 unmap 1 page', stage: 2 },
  { key: 'S2 write-protect 16 pages', stage: 2 },
  { key: 'S2 reclaim 2 MiB block', stage: 2 },
  { key: 'S2 map 2 MiB block', stage: 2 },
  { key: 'S2 split 2 MiB block', stage: 2 },
] as const;
export type ChangeKind = (typeof CHANGES)[number]['key'];

export class CheckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckError';
  }
}

export class TablesWorld {
  readonly mem: PhysMem;
  readonly phys: Smmu;
  readonly host: ArmSmmuDriver;
  readonly cache: ForwardingCache;
  readonly sides: Record<Ownership, Side>;
  /** Runs (untimed) before every timed change: the farm timing waits there until every unit is busy. */
  beforeChange: (() => void) | null = null;
  private cycles = 0;

  constructor(opts: WorldOptions = {}) {
    const devices = opts.devices ?? 2;
    const blocksSize = opts.blocksSize ?? 8 * MiB;
    const windows = opts.windows ?? true;
    const HOST_TABLES = 0x4000_0000;
    const HOST_TABLES_SIZE = 4 * MiB; // per table set: KVM shared, KVM private, VFIO private
    const RAM_PA = [0x8_0000_0000, 0x9_0000_0000];
    this.mem = PhysMem.create({
      regions: [
        { base: HOST_TABLES, size: 3 * HOST_TABLES_SIZE, name: 'host tables' },
        { base: RAM_PA[0]!, size: RAM_SIZE, name: 'guest RAM (shared VM)' },
        { base: RAM_PA[1]!, size: RAM_SIZE, name: 'guest RAM (private VM)' },
      ],
    });
    this.cache = new ForwardingCache(makeCache(opts.cache ?? 'mmu600'));
    this.phys = new Smmu(encodeIds({ smrs: 32, sidBits: 12, contextBanks: 8, s2OnlyBanks: 2 }), this.mem, this.cache);
    this.host = new ArmSmmuDriver(this.phys, { disableBypass: true });
    this.host.probe();
    this.host.reset();
    this.phys.on('contextFault', (cb) => this.host.contextFaultIrq(cb));
    const tables = (i: number): PhysTables => new PhysTables(this.mem, HOST_TABLES + i * HOST_TABLES_SIZE, HOST_TABLES + (i + 1) * HOST_TABLES_SIZE);
    const make = (mode: Ownership, i: number): Side => {
      const blocksPa = (0x10 + 8 * i) * 2 ** 36 + 2 * MiB; // 2 MiB aligned, not 1 GiB: 2 MiB blocks
      const pagesPa = (0x20 + 8 * i) * 2 ** 36 + PAGE; // 4 KiB aligned only: 4 KiB pages
      const vm = new Vm(this.mem, {
        vmid: 5 + i,
        memslots: [
          { ipa: RAM_IPA, size: RAM_SIZE, pa: RAM_PA[i]! },
          { ipa: BLOCKS_IPA, size: blocksSize, pa: blocksPa },
          { ipa: PAGES_IPA, size: PAGES_SIZE, pa: pagesPa },
        ],
        hostTables: mode === 'shared' ? tables(0) : tables(1),
      });
      const s2 = new BenchStage2Owner(vm, this.host, mode, { vfioTables: tables(2) });
      const psids = Array.from({ length: devices }, (_, d) => 0x100 * (i + 1) + d);
      const vsmmu = new VSmmu(vm, this.phys, this.host, psids.map((psid, d) => ({ vsid: d + 1, psid })), { stage2Domain: s2.domain });
      const guest = new ArmSmmuDriver(vsmmu);
      guest.probe();
      guest.reset();
      const g = { granule: 4 as const, ias: 48, oas: 40 };
      const process = createGuestStage1(this.mem, vm.stage2, RAM_IPA, RAM_IPA + 6 * MiB, g, 9);
      const iommu = createGuestStage1(this.mem, vm.stage2, RAM_IPA + 6 * MiB, RAM_IPA + 12 * MiB, g, 9);
      const s1 = new BenchStage1Owner(process, guest, mode, mode === 'private' ? iommu : undefined);
      guest.attach(s1.domain, psids.map((_, d) => ({ id: d + 1 })));
      if (windows) {
        s1.mmap(W_PAGES_VA, PAGES_IPA, PAGES_SIZE, RW);
        s1.mmap(W_BLOCKS_VA, BLOCKS_IPA, 4 * MiB, RW);
      }
      return { mode, vm, s1, s2, psids, blocksPa, pagesPa };
    };
    this.sides = { shared: make('shared', 0), private: make('private', 1) };
  }

  // ---- checks by DMA through the SMMU model (the register model's own caches)

  private expectPa(side: Side, va: number, acc: 'r' | 'w', pa: number, what: string): void {
    for (const psid of side.psids) {
      const o = this.phys.dma(psid, va, acc, false);
      if (o.kind !== 'pa' || o.pa !== pa) throw new CheckError(`${side.mode}: ${what}: DMA ${acc} of ${hex(va)} by stream ${hex(psid)} gave ${JSON.stringify(o)}, expected pa ${hex(pa)}`);
    }
  }

  private expectAbort(side: Side, va: number, acc: 'r' | 'w', what: string): void {
    for (const psid of side.psids) {
      const o = this.phys.dma(psid, va, acc, false);
      if (o.kind !== 'abort') throw new CheckError(`${side.mode}: ${what}: DMA ${acc} of ${hex(va)} by stream ${hex(psid)} gave ${JSON.stringify(o)}, expected a fault`);
    }
  }

  /** The VA of page `p` of the 4 KiB-page window, and its PA. */
  static pagesVa(p: number): number {
    return W_PAGES_VA + p * PAGE;
  }

  /**
   * One of every change kind on `side`, each timed (ms from the change's start to its end, and
   * from its first TLBI to its last sync's completion) and checked by DMA afterwards; caches
   * are warmed by DMA before each change, so its TLBIs remove real entries. Returns the cost
   * counts and times per change kind.
   */
  cycle(side: Side): Record<ChangeKind, { cost: ChangeCost; ms: number; invalidateMs: number }> {
    const k = this.cycles++;
    const out = {} as Record<ChangeKind, { cost: ChangeCost; ms: number; invalidateMs: number }>;
    const timed = (kind: ChangeKind, change: () => ChangeCost): void => {
      this.beforeChange?.();
      this.cache.mark();
      const t0 = performance.now();
      const cost = change();
      const t1 = performance.now();
      const inv = this.cache.firstInvalidation;
      const sync = this.cache.lastSync;
      out[kind] = { cost, ms: t1 - t0, invalidateMs: inv < 0 || sync < inv ? 0 : sync - inv };
    };
    const { s1, s2 } = side;
    // ---- stage 1: the guest process (a fresh 2 MiB-aligned region each cycle)
    const va = S1_CHANGE_VA + (k % 1024) * 2 * MiB;
    const ipa = S1_CHANGE_IPA;
    const paOf = (i: number): number => side.blocksPa + (ipa - BLOCKS_IPA) + i * PAGE;
    timed('mmap 64 pages', () => s1.mmap(va, ipa, S1_PAGES * PAGE, RW));
    for (let i = 0; i < S1_PAGES; i++) this.expectPa(side, va + i * PAGE + 8, 'w', paOf(i) + 8, 'after mmap');
    timed('mprotect 16 pages', () => s1.mprotect(va + S1_SUB * PAGE, S1_SUB * PAGE, PROT_READ));
    for (let i = S1_SUB; i < 2 * S1_SUB; i++) {
      this.expectAbort(side, va + i * PAGE, 'w', 'a write after mprotect(PROT_READ)');
      this.expectPa(side, va + i * PAGE, 'r', paOf(i), 'a read after mprotect(PROT_READ)');
    }
    timed('munmap 16 pages', () => s1.munmap(va, S1_SUB * PAGE));
    for (let i = 0; i < S1_SUB; i++) this.expectAbort(side, va + i * PAGE, 'r', 'after munmap');
    this.expectPa(side, va + S1_SUB * PAGE, 'r', paOf(S1_SUB), 'the page after the munmapped range');
    s1.munmap(va + S1_SUB * PAGE, (S1_PAGES - S1_SUB) * PAGE); // clean-up, not timed
    // ---- stage 2: KVM unmaps one 4 KiB page (and gives it back, not timed)
    const pages = PAGES_SIZE / PAGE;
    const p = (k * 17) % pages;
    const pIpa = PAGES_IPA + p * PAGE;
    this.expectPa(side, TablesWorld.pagesVa(p), 'r', side.pagesPa + p * PAGE, 'before the stage-2 unmap');
    timed('S2 unmap 1 page', () => s2.unmap(pIpa, PAGE));
    this.expectAbort(side, TablesWorld.pagesVa(p), 'r', 'after the stage-2 unmap of its page');
    s2.map(pIpa, side.pagesPa + p * PAGE, PAGE);
    this.expectPa(side, TablesWorld.pagesVa(p), 'r', side.pagesPa + p * PAGE, 'after the stage-2 page came back');
    // ---- stage 2: write-protect 16 pages for dirty logging (and restore, not timed)
    const q = (k * 16) % (pages - 16);
    for (let i = 0; i < 16; i++) this.expectPa(side, TablesWorld.pagesVa(q + i), 'w', side.pagesPa + (q + i) * PAGE, 'a write before write-protect');
    timed('S2 write-protect 16 pages', () => s2.writeProtect(PAGES_IPA + q * PAGE, 16 * PAGE));
    for (let i = 0; i < 16; i++) {
      const v = TablesWorld.pagesVa(q + i);
      if (side.mode === 'shared') this.expectAbort(side, v, 'w', 'a write after the stage-2 write-protect (shared tables)');
      else this.expectPa(side, v, 'w', side.pagesPa + (q + i) * PAGE, 'a write after the stage-2 write-protect (private tables: VFIO keeps them writable)');
      this.expectPa(side, v, 'r', side.pagesPa + (q + i) * PAGE, 'a read after the stage-2 write-protect');
    }
    s2.writeProtect(PAGES_IPA + q * PAGE, 16 * PAGE, S2_RW);
    this.expectPa(side, TablesWorld.pagesVa(q), 'w', side.pagesPa + q * PAGE, 'a write after the write-protect was lifted');
    // ---- stage 2: reclaim the 2 MiB block under the blocks window, map it back, split it
    const bva = W_BLOCKS_VA + 0x1234;
    this.expectPa(side, bva, 'r', side.blocksPa + 0x1234, 'before the block reclaim');
    timed('S2 reclaim 2 MiB block', () => s2.unmap(BLOCKS_IPA, 2 * MiB));
    this.expectAbort(side, bva, 'r', 'after the 2 MiB block reclaim');
    this.expectAbort(side, bva + MiB, 'r', 'after the 2 MiB block reclaim');
    timed('S2 map 2 MiB block', () => s2.map(BLOCKS_IPA, side.blocksPa, 2 * MiB));
    this.expectPa(side, bva, 'r', side.blocksPa + 0x1234, 'after the block came back');
    timed('S2 split 2 MiB block', () => s2.splitBlock(BLOCKS_IPA));
    if (side.vm.stage2.lookup(BLOCKS_IPA + 0x5000)?.shift !== 12 || s2.smmuTable.lookup(BLOCKS_IPA + 0x5000)?.shift !== 12) throw new CheckError(`${side.mode}: the split left no 4 KiB page`);
    this.expectPa(side, bva, 'r', side.blocksPa + 0x1234, 'after the split');
    this.expectPa(side, bva + MiB + 0x40, 'w', side.blocksPa + 0x1234 + MiB + 0x40, 'after the split');
    // Back to a block (not timed): unmapping the whole range frees the page table; one
    // TLBIIPAS2 for the range and TLBIVMID (Linux would walk it page by page: 512 TLBIs).
    side.vm.stage2.unmap(BLOCKS_IPA, 2 * MiB);
    if (side.mode === 'private') s2.smmuTable.unmap(BLOCKS_IPA, 2 * MiB);
    this.host.flushRange(s2.domain, BLOCKS_IPA, 2 * MiB, false, true, 2 * MiB);
    this.host.flushVmid(s2.domain);
    s2.map(BLOCKS_IPA, side.blocksPa, 2 * MiB);
    if (side.vm.stage2.lookup(BLOCKS_IPA)?.shift !== 21) throw new CheckError(`${side.mode}: the block did not come back as a block`);
    return out;
  }
}

// ---------------------------------------------------------------------------
// Exact counts
// ---------------------------------------------------------------------------

export interface CostRow {
  ownership: Ownership;
  change: ChangeKind;
  stage: 1 | 2;
  cost: ChangeCost;
}

/** The cost counts of the first cycle of each change kind in a fresh world (deterministic). */
export function changeCosts(opts: WorldOptions = {}): CostRow[] {
  const w = new TablesWorld(opts);
  const rows: CostRow[] = [];
  for (const mode of OWNERSHIPS) {
    const c = w.cycle(w.sides[mode]);
    for (const ch of CHANGES) rows.push({ ownership: mode, change: ch.key, stage: ch.stage, cost: c[ch.key].cost });
  }
  return rows;
}

export interface TableMemoryRow {
  ownership: Ownership;
  stage: 1 | 2;
  /** How the footprint is mapped: the leaf size at that stage. */
  leaves: '4 KiB pages' | '2 MiB blocks';
  footprintMiB: number;
  tablePages: number;
}

/**
 * Table pages (4 KiB) each owner's table sets use once `footprintMiB` is mapped:
 * stage 1, a process mapping of 4 KiB pages (not 2 MiB aligned in IPA) in an
 * otherwise empty address space; stage 2, a VM with one memslot of that size
 * backed by 2 MiB blocks or by 4 KiB pages.
 */
export function tableMemory(footprintsMiB: number[]): TableMemoryRow[] {
  const rows: TableMemoryRow[] = [];
  for (const f of footprintsMiB) {
    // Stage 1
    const w = new TablesWorld({ windows: false, blocksSize: (f + 4) * MiB, devices: 1, cache: 'none' });
    for (const mode of OWNERSHIPS) {
      const s = w.sides[mode];
      s.s1.mmap(0x10_0000_1000, BLOCKS_IPA, f * MiB, RW);
      rows.push({ ownership: mode, stage: 1, leaves: '4 KiB pages', footprintMiB: f, tablePages: s.s1.costs().tablePages });
    }
    // Stage 2
    for (const leaves of ['2 MiB blocks', '4 KiB pages'] as const) {
      for (const mode of OWNERSHIPS) {
        const mem = PhysMem.create({ regions: [{ base: 0x4000_0000, size: 8 * MiB }] });
        const phys = new Smmu(encodeIds({ smrs: 16, sidBits: 12, contextBanks: 8, s2OnlyBanks: 2 }), mem);
        const host = new ArmSmmuDriver(phys, { disableBypass: true });
        host.probe();
        host.reset();
        const vm = new Vm(mem, {
          vmid: mode === 'shared' ? 1 : 2,
          memslots: [{ ipa: BLOCKS_IPA, size: f * MiB, pa: 0x10_0000_0000 + (leaves === '2 MiB blocks' ? 2 * MiB : PAGE) }],
          hostTables: new PhysTables(mem, 0x4000_0000, 0x4000_0000 + 4 * MiB),
        });
        const s2 = new Stage2Owner(vm, host, mode, { vfioTables: new PhysTables(mem, 0x4000_0000 + 4 * MiB, 0x4000_0000 + 8 * MiB) });
        const expectShift = leaves === '2 MiB blocks' ? 21 : 12;
        if (s2.smmuTable.lookup(BLOCKS_IPA)?.shift !== expectShift) throw new CheckError(`stage-2 table memory: expected ${leaves}`);
        rows.push({ ownership: mode, stage: 2, leaves, footprintMiB: f, tablePages: s2.costs().tablePages });
      }
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------
// Translation throughput
// ---------------------------------------------------------------------------

/**
 * Nested translations per second through the SMMU model (`phys.dma`) over the 4 KiB-page
 * window of each VM (4 KiB leaves at both stages), in a pseudo-random page order; per round,
 * both ownerships are measured back to back (alternating which goes first). Checks that both
 * VMs translate every request to the same offset in their memslot.
 */
export function throughput(cache: string, rounds: number, translations: number): Record<Ownership, number[]> {
  const w = new TablesWorld({ cache, devices: 1 });
  const pages = PAGES_SIZE / PAGE;
  const order = new Float64Array(translations);
  let x = 12345;
  for (let i = 0; i < translations; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    order[i] = TablesWorld.pagesVa(x % pages) + (i & 0xff) * 8;
  }
  const sums: Record<Ownership, number> = { shared: 0, private: 0 };
  const run = (mode: Ownership): number => {
    const side = w.sides[mode];
    const psid = side.psids[0]!;
    const phys = w.phys;
    let sum = 0;
    const t0 = performance.now();
    for (let i = 0; i < translations; i++) {
      const o = phys.dma(psid, order[i]!, 'r', false);
      if (o.kind !== 'pa') throw new CheckError(`${mode}: throughput: DMA of ${hex(order[i]!)} gave ${JSON.stringify(o)}`);
      sum += o.pa - side.pagesPa;
    }
    const ms = performance.now() - t0;
    sums[mode] = sum;
    return translations / (ms / 1000);
  };
  run('shared');
  run('private'); // warm-up
  const out: Record<Ownership, number[]> = { shared: [], private: [] };
  for (let r = 0; r < rounds; r++) {
    const first: Ownership = r % 2 === 0 ? 'shared' : 'private';
    const second: Ownership = first === 'shared' ? 'private' : 'shared';
    out[first].push(run(first));
    out[second].push(run(second));
    if (sums.shared !== sums.private) throw new CheckError(`throughput: the two VMs translated to different offsets (${sums.shared} vs ${sums.private})`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Timing changes: register model alone, or with a farm of translation units
// ---------------------------------------------------------------------------

export interface TimedChange {
  ownership: Ownership;
  change: ChangeKind;
  stage: 1 | 2;
  /** Per round: the median over the round's cycles, in microseconds. */
  us: number[];
  /** The same for the phase from the first TLBI to the last sync's completion (0 without TLBIs). */
  invalidateUs: number[];
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Runs `rounds` rounds of `cycles` cycles on each side (interleaved: one cycle of each side
 * in turn, alternating which goes first) and returns per-round medians per change kind.
 */
export function timeChanges(w: TablesWorld, rounds: number, cycles: number): TimedChange[] {
  const rows = new Map<string, TimedChange>();
  for (const mode of OWNERSHIPS) for (const ch of CHANGES) rows.set(`${mode}/${ch.key}`, { ownership: mode, change: ch.key, stage: ch.stage, us: [], invalidateUs: [] });
  for (let r = 0; r < rounds; r++) {
    const samples = new Map<string, { t: number[]; inv: number[] }>();
    for (let c = 0; c < cycles; c++) {
      for (const mode of c % 2 === 0 ? OWNERSHIPS : [...OWNERSHIPS].reverse()) {
        const res = w.cycle(w.sides[mode]);
        for (const ch of CHANGES) {
          const key = `${mode}/${ch.key}`;
          const s = samples.get(key) ?? { t: [], inv: [] };
          s.t.push(res[ch.key].ms * 1000);
          s.inv.push(res[ch.key].invalidateMs * 1000);
          samples.set(key, s);
        }
      }
    }
    for (const [key, s] of samples) {
      const row = rows.get(key)!;
      row.us.push(median(s.t));
      row.invalidateUs.push(median(s.inv));
    }
  }
  return [...rows.values()];
}

/** Where the compiled copy of this module is (workers run compiled JavaScript, also under the test runner). */
function compiledModuleUrl(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return import.meta.url;
  const i = here.lastIndexOf(`${'/'}dist${'/'}`);
  const root = i >= 0 ? here.slice(0, i) : resolve(dirname(here), '..', '..');
  const file = join(root, 'dist', 'src', 'bench', 'tables.js');
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\` first`);
  return pathToFileURL(file).href;
}

interface DriverData {
  mem: PhysMemShared;
  units: number;
  batch: number;
  /** [0] go, [1] stop, [2] batches translated. */
  control: SharedArrayBuffer;
  sids: number[];
  vas: number[];
  /** The final check: translate each of these (sid, va) on every unit; the caller says what to expect. */
  check: Array<{ sid: number; va: number }>;
}

interface DriverResult {
  stats: UnitStats[];
  /** Per check request: true when it translated (RES_OK). */
  checkOk: boolean[];
  batches: number;
}

/**
 * The farm-driving worker's body: starts a farm of `units` translation units (mmu600 caches)
 * over the shared memory, hands its FarmShared to the main thread, and keeps every unit busy
 * translating until told to stop; then runs the final check and reports.
 */
export async function tablesFarmDriver(): Promise<void> {
  const d = workerData as DriverData;
  const mem = PhysMem.attach(d.mem);
  const farm = await Farm.start({ mem, units: d.units, cache: CACHE_PRESETS.mmu600!, distribution: 'affinity', capacity: d.batch });
  parentPort!.postMessage({ shared: farm.shared });
  const ctl = new Int32Array(d.control);
  while (Atomics.load(ctl, 0) === 0) Atomics.wait(ctl, 0, 0, 5);
  const n = d.batch;
  const s = new Int32Array(n);
  const vas = new Float64Array(n);
  const accs = new Uint8Array(n).fill(REQ_READ);
  const pa = new Float64Array(n);
  const st = new Int8Array(n);
  let cursor = 0;
  let batches = 0;
  while (Atomics.load(ctl, 1) === 0) {
    for (let i = 0; i < n; i++) {
      s[i] = d.sids[(cursor + i) % d.sids.length]!;
      vas[i] = d.vas[(cursor * 7 + i * 13) % d.vas.length]!;
    }
    cursor += n;
    farm.translate(s, vas, accs, n, pa, st);
    batches++;
    Atomics.store(ctl, 2, batches);
  }
  // The final check: every check request on every unit (affinity: sid mod units), after a batch
  // that made every unit busy with it.
  const m = d.check.length;
  const cs = new Int32Array(m);
  const cv = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    cs[i] = d.check[i]!.sid;
    cv[i] = d.check[i]!.va;
  }
  const cpa = new Float64Array(m);
  const cst = new Int8Array(m);
  farm.translate(cs, cv, new Uint8Array(m).fill(REQ_READ), m, cpa, cst);
  const stats = farm.unitStats();
  await farm.close();
  const result: DriverResult = { stats, checkOk: Array.from(cst, (x) => x === RES_OK), batches };
  parentPort!.postMessage(result);
}

export interface FarmTiming {
  units: number;
  rows: TimedChange[];
  /** Changes that started with every unit busy, out of all changes timed. */
  changesAllBusy: number;
  changes: number;
  invalidationsPublished: number;
  stats: UnitStats[];
  batches: number;
}

/**
 * The time a change takes until every device sees it, with a farm of `units` translation
 * units translating both VMs' devices' DMA the whole time (driven from a worker thread): every
 * TLBI the physical SMMU receives is published to the farm, and each TLBSYNC / sTLBGSYNC
 * completes once every busy unit has applied them (FarmInvalidator.sync). Before each cycle
 * the main thread waits until every unit is busy. Afterwards, a page unmapped at stage 2 is
 * translated by every device on every unit: it must fault (no unit kept it), and its
 * neighbour must not.
 */
export async function runFarmTiming(units: number, rounds: number, cycles: number, invalidator: InvalidatorOptions = {}): Promise<FarmTiming> {
  const w = new TablesWorld({ devices: Math.max(2, units) });
  // Warm-up cycles (and the JIT) before the farm starts.
  for (const mode of OWNERSHIPS) w.cycle(w.sides[mode]);
  const sids = OWNERSHIPS.flatMap((m) => w.sides[m].psids);
  const vas = Array.from({ length: 256 }, (_, i) => TablesWorld.pagesVa(i * 7));
  const control = new SharedArrayBuffer(12);
  const ctl = new Int32Array(control);
  const victim = 5 * 7; // page 35 of the 4 KiB-page window: in the farm's working set
  const check = sids.flatMap((sid) => [
    { sid, va: TablesWorld.pagesVa(victim) },
    { sid, va: TablesWorld.pagesVa(victim + 1) },
  ]);
  const data: DriverData = { mem: w.mem.share(), units, batch: 16384, control, sids, vas, check };
  const code = `const { workerData } = require('node:worker_threads');
    import(workerData.module).then((m) => m.tablesFarmDriver()).catch((e) => { setImmediate(() => { throw e; }); });`;
  const worker = new Worker(code, { eval: true, workerData: { ...data, module: compiledModuleUrl() } });
  const messages: unknown[] = [];
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  worker.on('message', (m) => {
    messages.push(m);
    wake?.();
  });
  worker.on('error', (e) => {
    failure = e;
    wake?.();
  });
  const next = async (): Promise<unknown> => {
    const deadline = Date.now() + 60_000;
    while (messages.length === 0) {
      if (failure !== null) throw failure;
      if (Date.now() > deadline) throw new Error('the farm driver did not answer within 60 s');
      await new Promise<void>((res) => {
        wake = res;
        setTimeout(res, 50);
      });
      wake = null;
    }
    return messages.shift();
  };
  try {
    const { shared } = (await next()) as { shared: FarmShared };
    snapshotSmmu(w.phys, sids, new Float64Array(shared.config), new Int32Array(shared.streams));
    const fctl = new Int32Array(shared.control);
    Atomics.add(fctl, CTL_CONFIG_GEN, 1);
    w.cache.farm = new FarmInvalidator(shared, invalidator);
    Atomics.store(ctl, 0, 1);
    Atomics.notify(ctl, 0);
    // Let the units start (and fill their caches).
    while (Atomics.load(ctl, 2) < 4) await new Promise((r) => setTimeout(r, 1));
    let allBusy = 0;
    let total = 0;
    const busyWords = Array.from({ length: units }, (_, u) => CTL_WORDS + u * UNIT_WORDS + U_BUSY);
    const waitAllBusy = (): void => {
      total++;
      const deadline = performance.now() + 20;
      while (performance.now() < deadline) {
        if (busyWords.every((i) => Atomics.load(fctl, i) === 1)) {
          allBusy++;
          return;
        }
        Atomics.wait(ctl, 1, 0, 0.01);
      }
    };
    w.beforeChange = waitAllBusy;
    const rows = timeChanges(w, rounds, cycles);
    w.beforeChange = null;
    // The final check: unmap the victim page at stage 2 on the shared VM (synced through the farm).
    const side = w.sides.shared;
    side.s2.unmap(PAGES_IPA + victim * PAGE, PAGE);
    const published = w.cache.published;
    Atomics.store(ctl, 1, 1);
    const res = (await next()) as DriverResult;
    w.cache.farm = null;
    check.forEach((c, i) => {
      const shouldFault = side.psids.includes(c.sid) && c.va === TablesWorld.pagesVa(victim);
      if (res.checkOk[i] === shouldFault) {
        throw new CheckError(`farm check: stream ${hex(c.sid)} at ${hex(c.va)} ${shouldFault ? 'still translated after its stage-2 unmap and sync' : 'faulted, but its mapping is intact'}`);
      }
    });
    for (const [u, s] of res.stats.entries()) {
      if (s.translations === 0 || s.invalidationsApplied === 0) throw new CheckError(`farm: unit ${u} translated ${s.translations} times and applied ${s.invalidationsApplied} invalidations`);
    }
    return { units, rows, changesAllBusy: allBusy, changes: total, invalidationsPublished: published, stats: res.stats, batches: res.batches };
  } finally {
    await worker.terminate();
  }
}

export { KiB, MiB };
