/**
 * The stress tester (`smmu-farm stress`): mutator threads change live tables
 * at both stages of a nested configuration (src/farm/stress-mutator.ts) while
 * the farm's units translate with caches on, and a checker validates every
 * translation against the history of the tables.
 *
 * The clock. One shared Int32 logical clock (FarmShared.stamps.clock). All
 * accesses to it, to descriptors (wasm i64 atomics) and to the farm's
 * protocol words are sequentially consistent, so they fall in one total
 * order, and a clock value names a point in it:
 * - a unit reads the clock just before a translation (s) and just after it (e);
 * - a mutator bumps it just before it stores a descriptor (a), and again when
 *   the change is complete (z): after the sync covering its invalidations has
 *   returned, or right after the store when the state it removed was invalid
 *   (an invalid descriptor is never cached).
 * A read that returned v happened after the bump that produced v and before
 * the one that produced v + 1. So e < a means the translation was over before
 * the store; s >= z means it began after the change was complete.
 *
 * The rule. Each descriptor that a mutator changes (a leaf, or a level-2
 * descriptor pointing at a leaf table) is a component with a history of
 * versions v0 (the built state, a = z = 0), v1, ... Version k is ALLOWED for a
 * translation stamped [s, e] iff
 *     a_k <= e                  (it was written before the translation ended), and
 *     k is the last, or s < z_{k+1}   (the change that replaced it was not yet
 *                                      complete when the translation began).
 * A result is legal iff some choice of one allowed version per descriptor on
 * its path (the stage-1 table descriptor and leaf, and, through the IPA that
 * leaf names, the stage-2 table descriptor and leaf) produces it, exactly: the
 * status, the output address, and for a fault its stage (and the IPA of a
 * stage-2 fault). Versions are chosen independently per descriptor because a
 * walk reads its descriptors one after another, each single-copy atomic; the
 * window [s, e] covers reads from the tables (a_k <= e, and s < a_{k+1} <= z_{k+1})
 * and from caches (entries of a removed version may live until its
 * invalidations' sync completes, z_{k+1}). Nothing else is allowed: a result
 * that "not-yet-synced invalidations still allow" is exactly one whose
 * replacing change has z_{k+1} > s.
 *
 * A result with no legal explanation is a violation, classified:
 * - `stale`: it is explained by versions all written before the translation
 *   ended, one of which had been removed by a change whose sync completed
 *   before the translation began (a translation after a sync reflected what
 *   it removed);
 * - `future`: only versions written after the translation ended explain it;
 * - `torn`: no state ever written explains it (a torn descriptor, or a wrong
 *   translation of a page that never changed).
 * Targets are chosen so that both 32-bit halves of consecutive values of a
 * descriptor differ, so that a torn descriptor names an address that was
 * never written.
 *
 * The traffic. The tables are a nested configuration (4 KiB granule, 4
 * levels at both stages, one nested context bank behind streams 0-7) built
 * by the main thread: per mutator, groups of pages at stage 1 (VAs) and at
 * stage 2 (IPAs), each group with its own leaf table, plus pages that never
 * change. A stage-1 change points a page at a pool IPA (a stable one, or one
 * that stage 2 mutates); a stage-2 change points an IPA at a fresh PA.
 * Requests go to mutated pages (and 10% to stable ones), half of them to a
 * few hot pages that also get half of the changes, read or write, in batches
 * of 2048. Mutators change tables only while a batch is in flight and a unit
 * is busy, so that changes race with walks and syncs wait for busy units.
 *
 * The checker sees every change: a mutator counts a change as started before
 * its first stamp and publishes its record {component, value, a, z} once
 * complete; after each batch the driver waits until every change started
 * before the batch ended is recorded (the units are idle then, so syncs
 * return at once), which gives it every version a translation of the batch
 * could have seen, and every z that could be <= one of its s.
 */

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CACHE_PRESETS } from '../cache/presets.js';
import { ArmSmmuDriver, DriverError, type Domain } from '../driver/arm-smmu.js';
import { PhysMem } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, PageTable, createStage1, createStage2 } from '../pgtable/builder.js';
import { IpaTables, PhysTables } from '../pgtable/table-memory.js';
import { encodeIds } from '../smmu/id.js';
import { Smmu } from '../smmu/smmu.js';
import { AttachError, TopologyMachine } from '../topology/attach.js';
import { pickDmaSmmu } from '../topology/devices.js';
import { TopologyError } from '../topology/file.js';
import { UnknownTopologyError, loadTopologyNamed } from '../topology/index.js';
import { masterName, type TopologySpec } from '../topology/model.js';
import { resolveTopology } from '../topology/resolve.js';
import { FAULT_PERMISSION, FAULT_TRANSLATION } from '../walk/result.js';
import { Rng, deriveSeed } from '../workload/rng.js';
import { Farm, type Distribution } from './farm.js';
import type { InjectMode } from './inject.js';
import {
  INVALID,
  LOG_META,
  OP_NAMES,
  SCM_CONSUMED,
  SCM_RECORDED,
  SCM_STARTED,
  SCM_WORDS,
  SC_ACTIVE,
  SC_READY,
  SC_STOP,
  SC_WORDS,
  type GroupData,
  type MutatorData,
  type MutatorResult,
  type OpMix,
  type OpName,
} from './stress-mutator.js';
import { REQ_READ, REQ_WRITE, RES_OK } from './unit.js';

export const VIOLATION_KINDS = ['stale', 'future', 'torn'] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface StressOptions {
  /** Seconds of translating (default 5). */
  seconds?: number;
  /** Translation units (default 2). */
  workers?: number;
  /** Mutator threads (default 1). */
  mutators?: number;
  /** A deliberately broken variant (src/farm/inject.ts). */
  inject?: InjectMode | null;
  /** Seed of the tables, the mutators' choices and the request stream (default 1). */
  seed?: number;
  /** Cache preset of every unit (default 'mmu600'); it must cache something. */
  caches?: string;
  /** Translations per batch (default 2048). */
  batch?: number;
  distribution?: Distribution;
  /** Stop as soon as a violation is found (default false). */
  stopOnViolation?: boolean;
  /** Per mutator: leaf-table groups at each stage and pages per group (default 8 and 32). */
  groups?: number;
  pagesPerGroup?: number;
  /** Hot pages per mutator at each stage (default 16), and the fraction of changes and requests that go to them (default 0.5). */
  hotPages?: number;
  hotFraction?: number;
  /** Pages that never change (default 256), and the fraction of requests that go to them (default 0.1). */
  stablePages?: number;
  stableFraction?: number;
  mix?: Partial<OpMix>;
  /**
   * A topology (preset name, file, or validated spec) whose SMMU and DMA
   * devices carry the traffic: its SMMU is built with the topology's ID
   * registers, every DMA device's IOMMU group is attached to the one nested
   * domain, and translations use the devices' stream IDs. Default: one
   * built-in SMMU with stream IDs 0..7 in one masked SMR.
   */
  topology?: string | TopologySpec;
  /** With `topology`, the SMMU to use (default: the first with an attachable DMA device). */
  smmu?: string;
}

/** The devices that carried the traffic, when a topology was given. */
export interface StressTopologyReport {
  name: string;
  source: string;
  smmu: string;
  devices: Array<{ device: string; sid: number; group: number }>;
  /** DMA devices on that SMMU left unattached because its stream-map entries (SMRs) ran out. */
  unattached: number;
}

export interface ViolationExample {
  kind: ViolationKind;
  sid: number;
  va: string;
  access: 'r' | 'w';
  start: number;
  end: number;
  status: number;
  pa: string;
  detail: string;
}

export interface StressReport {
  translations: number;
  changes: number;
  invalidations: number;
  syncs: number;
  violations: number;
  violationsByKind: Record<ViolationKind, number>;
  syncLatencyUs: { p50: number; p99: number; max: number };
  workers: number;
  seconds: number;
  mutators: number;
  caches: string;
  /** How requests went to the units: 'affinity' (stream s to unit s mod units) or 'dynamic'. */
  distribution: Distribution;
  inject: InjectMode | null;
  seed: number;
  batch: number;
  translationsPerSecond: number;
  operations: Record<OpName, number>;
  /** Translations answered from a cache without a walk, over all translations. */
  hitRate: number;
  faults: number;
  /** Seconds from the start of translating to the first violation (null: none). */
  firstViolationSeconds: number | null;
  examples: ViolationExample[];
  /** The topology's devices in use, or null for the built-in SMMU. */
  topology: StressTopologyReport | null;
}

export class StressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StressError';
  }
}

const TWO32 = 4294967296;
const PAGE = 4096;
const RW = PROT_READ | PROT_WRITE | PROT_CACHE;
const RO = PROT_READ | PROT_CACHE;

// ---------------------------------------------------------------- the topology

const TABLES_PA = 0x4000_0000;
const GUEST_TABLES_BYTES = 4 << 20; // guest stage-1 tables at IPAs, mapped 1:1 by stage 2
const HOST_TABLES_BYTES = 12 << 20;
const STABLE_VA = 0x10_0000_0000;
const MUTATED_VA = 0x20_0000_0000;
const LOG_CAPACITY = 1 << 16;

/** A descriptor the mutators change, as the checker tracks it. */
class Component {
  readonly vals: number[];
  readonly as: number[] = [0];
  readonly zs: number[] = [0];
  private readonly firstByVal = new Map<number, number>();
  private firstInvalid = Infinity;
  private firstValid = Infinity;
  private firstRo = Infinity;

  constructor(initial: number) {
    this.vals = [];
    this.note(initial, 0);
    this.vals.push(initial);
  }

  private note(v: number, k: number): void {
    if (v === INVALID) {
      if (this.firstInvalid === Infinity) this.firstInvalid = k;
      return;
    }
    if (this.firstValid === Infinity) this.firstValid = k;
    if (v % 2 === 1 && this.firstRo === Infinity) this.firstRo = k;
    if (!this.firstByVal.has(v)) this.firstByVal.set(v, k);
  }

  push(v: number, a: number, z: number): void {
    this.note(v, this.vals.length);
    this.vals.push(v);
    this.as.push(a);
    this.zs.push(z);
  }

  /** The first version of class `cls` (CLS_* or an exact value >= 0), or Infinity. */
  first(cls: number): number {
    if (cls >= 0) return this.firstByVal.get(cls) ?? Infinity;
    return cls === CLS_INVALID ? this.firstInvalid : cls === CLS_VALID ? this.firstValid : this.firstRo;
  }

  /** The last version written before clock value `e` ended a translation (a <= e). */
  lastBy(e: number): number {
    let k = this.as.length - 1;
    while (this.as[k]! > e) k--;
    return k;
  }
}

/** Value classes: a component's value is INVALID (-1), or >= 0 with bit 0 = read-only. */
const CLS_INVALID = -1;
const CLS_VALID = -2;
const CLS_RO = -3;

function matches(v: number, cls: number): boolean {
  if (cls >= 0) return v === cls;
  if (cls === CLS_INVALID) return v === INVALID;
  if (v === INVALID) return false;
  return cls === CLS_VALID || v % 2 === 1;
}

interface Topology {
  mem: PhysMem;
  smmu: Smmu;
  /** The stream IDs translations are issued with. */
  sids: number[];
  used: StressTopologyReport | null;
  vmid: number;
  asid: number;
  components: Component[];
  /** Per mutator: its groups at each stage. */
  s1Groups: GroupData[][];
  s2Groups: GroupData[][];
  s1Attrs: MutatorData['s1Attrs'];
  s2Attrs: MutatorData['s2Attrs'];
  /** Mutated stage-1 pages: VA, leaf component, table component. */
  pageVa: Float64Array;
  pageL1: Int32Array;
  pageT1: Int32Array;
  /** Stable pages: VA and the PA they translate to. */
  stableVa: Float64Array;
  stablePa: Float64Array;
  /** The stage-1 target pool: IPA, and for stage-2-mutated IPAs their leaf and table components (else -1, with stablePa). */
  pool: number[];
  poolL2: Int32Array;
  poolT2: Int32Array;
  poolPa: Float64Array;
  poolByIpa: Map<number, number>;
  /** Pool index of the stage-2 leaf component j (index by component id; -1 elsewhere). */
  poolOfComp: Int32Array;
  /** Hot stage-1 pages (indices into pageVa), and pool indices of hot stage-2 pages. */
  hotPages: Int32Array;
  hotPool: number[];
}

/** Leaf attribute bits (low word bits [11:0], high word bits [31:16]) the builder writes for RW and RO. */
function leafAttrs(stage: 1 | 2): { rw: [number, number]; ro: [number, number] } {
  const mem = PhysMem.create({ regions: [{ base: 0x10_0000, size: 1 << 20 }] });
  const tables = new PhysTables(mem, 0x10_0000, 0x20_0000);
  const geo = { granule: 4 as const, ias: 48, oas: 48 };
  const pt = stage === 1 ? createStage1(tables, geo, 1) : createStage2(tables, geo, 1);
  pt.map(0, 0x1000_0000, PAGE, RW);
  pt.map(PAGE, 0x1000_0000, PAGE, RO);
  const attrs = (va: number): [number, number] => {
    const l = pt.lookup(va)!;
    return [l.lo & 0xfff, l.hi & 0xffff0000];
  };
  return { rw: attrs(0), ro: attrs(PAGE) };
}

/** The table-memory address of the level-`level` descriptor on the walk of `iova` (4 KiB granule, start level 0). */
function descriptorAddress(pt: PageTable, iova: number, level: number): number {
  let table = pt.root;
  for (let l = pt.startLevel; ; l++) {
    const slot = table + (Math.floor(iova / 2 ** (12 + 9 * (3 - l))) % 512) * 8;
    if (l === level) return slot;
    const lo = pt.tables.load(slot);
    const hi = pt.tables.hi;
    if ((lo & 3) !== 3) throw new StressError(`no table at level ${l} for 0x${iova.toString(16)}`);
    table = (hi & 0xffff) * TWO32 + ((lo & 0xfffff000) >>> 0);
  }
}

/** A topology resolved for the stress run: the spec, where it came from, and the SMMU to use. */
interface TopologyChoice {
  spec: TopologySpec;
  source: string;
  smmu: string | undefined;
}

function buildTopology(mutators: number, groups: number, perGroup: number, stablePages: number, hot: number, seed: number, choice: TopologyChoice | null): Topology {
  if (perGroup < 1 || perGroup > 512) throw new StressError(`pages per group must be 1..512, got ${perGroup}`);
  const rand = new Rng(seed);
  const mem = PhysMem.create({ regions: [{ base: TABLES_PA, size: GUEST_TABLES_BYTES + HOST_TABLES_BYTES, name: 'page tables' }] });
  const geo = { granule: 4 as const, ias: 48, oas: 48 };
  const stage2 = createStage2(new PhysTables(mem, TABLES_PA + GUEST_TABLES_BYTES, TABLES_PA + GUEST_TABLES_BYTES + HOST_TABLES_BYTES), geo, 1);
  for (let off = 0; off < GUEST_TABLES_BYTES; off += PAGE) stage2.map(TABLES_PA + off, TABLES_PA + off, PAGE, RW);
  const stage1 = new PageTable({ stage: 1, ...geo, tables: new IpaTables(mem, stage2, TABLES_PA, TABLES_PA + GUEST_TABLES_BYTES), asid: 1 });
  const s1Off = (va: number, level: number): number => mem.offsetOf(stage2.ipaToPa(descriptorAddress(stage1, va, level)));
  const s2Off = (ipa: number, level: number): number => mem.offsetOf(descriptorAddress(stage2, ipa, level));
  const components: Component[] = [];
  const comp = (initial: number): number => components.push(new Component(initial)) - 1;

  // The pool of stage-1 targets. Low words are unique across the pool and high words vary, so
  // that the halves of two different targets never combine into a third.
  const pool: number[] = [];
  const poolL2: number[] = [];
  const poolT2: number[] = [];
  const poolPa: number[] = [];
  // Stable IPAs: stage 2 never changes them.
  const stableVa = new Float64Array(stablePages);
  const stablePa = new Float64Array(stablePages);
  for (let i = 0; i < stablePages; i++) {
    const ipa = (0x100 + (i & 15)) * TWO32 + i * PAGE;
    const pa = 0xffff * TWO32 + (0x80000 + i) * PAGE;
    stage2.map(ipa, pa, PAGE, RW);
    pool.push(ipa);
    poolL2.push(-1);
    poolT2.push(-1);
    poolPa.push(pa);
    stableVa[i] = STABLE_VA + i * PAGE;
    stablePa[i] = pa;
  }
  // Stage-2 groups: each in its own 4 GiB of IPA space (its own high word), its own leaf table.
  const s2Groups: GroupData[][] = [];
  const hotPool: number[] = [];
  const hotPages: number[] = [];
  let g2 = 0;
  for (let m = 0; m < mutators; m++) {
    const mine: GroupData[] = [];
    for (let g = 0; g < groups; g++, g2++) {
      const base = (0x400 + g2) * TWO32 + 0x8000_0000 + g2 * (2 << 20);
      const gd: GroupData = { tComp: -1, tOff: 0, tLo: 0, tHi: 0, comps: [], offs: [], addrs: [], init: [] };
      for (let i = 0; i < perGroup; i++) {
        const ipa = base + i * PAGE;
        const pa = 0xffff * TWO32 + (g2 * 512 + i) * PAGE;
        stage2.map(ipa, pa, PAGE, RW);
        gd.addrs.push(ipa);
        gd.init.push(pa);
        gd.offs.push(s2Off(ipa, 3));
        gd.comps.push(comp(pa));
      }
      const t = descriptorAddress(stage2, base, 2);
      [gd.tLo, gd.tHi] = mem.read64Parts(t).map((w) => w | 0) as [number, number];
      gd.tOff = mem.offsetOf(t);
      gd.tComp = comp(0);
      for (let i = 0; i < perGroup; i++) {
        if (g === 0 && i < hot) hotPool.push(pool.length);
        pool.push(gd.addrs[i]!);
        poolL2.push(gd.comps[i]!);
        poolT2.push(gd.tComp);
        poolPa.push(-1);
      }
      mine.push(gd);
    }
    s2Groups.push(mine);
  }
  // Stable stage-1 pages.
  for (let i = 0; i < stablePages; i++) stage1.map(stableVa[i]!, pool[i]!, PAGE, RW);
  // Mutated stage-1 groups: 2 MiB apart, each its own leaf table.
  const s1Groups: GroupData[][] = [];
  const pageVa: number[] = [];
  const pageL1: number[] = [];
  const pageT1: number[] = [];
  let g1 = 0;
  for (let m = 0; m < mutators; m++) {
    const mine: GroupData[] = [];
    for (let g = 0; g < groups; g++, g1++) {
      const base = MUTATED_VA + g1 * (2 << 20);
      const gd: GroupData = { tComp: -1, tOff: 0, tLo: 0, tHi: 0, comps: [], offs: [], addrs: [], init: [] };
      for (let i = 0; i < perGroup; i++) {
        const va = base + i * PAGE;
        const x = rand.below(pool.length);
        stage1.map(va, pool[x]!, PAGE, RW);
        gd.addrs.push(va);
        gd.init.push(x * 2);
        gd.offs.push(s1Off(va, 3));
        gd.comps.push(comp(x * 2));
      }
      const t = stage2.ipaToPa(descriptorAddress(stage1, base, 2));
      [gd.tLo, gd.tHi] = mem.read64Parts(t).map((w) => w | 0) as [number, number];
      gd.tOff = mem.offsetOf(t);
      gd.tComp = comp(0);
      for (let i = 0; i < perGroup; i++) {
        if (g === 0 && i < hot) hotPages.push(pageVa.length);
        pageVa.push(gd.addrs[i]!);
        pageL1.push(gd.comps[i]!);
        pageT1.push(gd.tComp);
      }
      mine.push(gd);
    }
    s1Groups.push(mine);
  }

  // The SMMU: one nested context bank over these tables; by default a built-in SMMU with
  // streams 0..7 in one masked SMR, else the topology's SMMU with its DMA devices.
  let smmu: Smmu;
  let dn: Domain;
  let sids: number[];
  let used: StressTopologyReport | null = null;
  try {
    if (choice === null) {
      smmu = new Smmu(encodeIds({ smrs: 16, contextBanks: 8, s2OnlyBanks: 2 }), mem);
      const drv = new ArmSmmuDriver(smmu);
      drv.probe();
      drv.reset();
      dn = drv.createDomain('nested', stage1, drv.createDomain('s2', stage2));
      drv.attach(dn, [{ id: 0, mask: 7 }]);
      sids = [0, 1, 2, 3, 4, 5, 6, 7];
    } else {
      const resolved = resolveTopology(choice.spec);
      const machine = new TopologyMachine(resolved, mem);
      const picked = pickDmaSmmu(machine, choice.spec, resolved, choice.smmu);
      if ('error' in picked) throw new StressError(picked.error);
      const { unit, devices } = picked;
      smmu = unit.smmu;
      dn = unit.driver.createDomain('nested', stage1, unit.driver.createDomain('s2', stage2));
      // Attach every DMA device's group, in topology order, while stream-map entries last
      // (a large topology can have more groups than SMRs: the rest stay unattached, and reported).
      const attached = new Set<number>();
      let full = false;
      for (const d of devices) {
        if (full || attached.has(d.group.id)) continue;
        try {
          machine.attachGroup(d.group, dn);
          attached.add(d.group.id);
        } catch (e) {
          if (!(e instanceof AttachError && e.code === 'ENOSPC')) throw e;
          full = true;
        }
      }
      const inUse = devices.filter((d) => attached.has(d.group.id));
      if (inUse.length === 0) throw new StressError(`${unit.spec.name}: no DMA device's group could be attached`);
      sids = [...new Set(inUse.map((d) => d.sid))];
      used = {
        name: choice.spec.name,
        source: choice.source,
        smmu: unit.spec.name,
        devices: inUse.map((d) => ({ device: masterName(d.master), sid: d.sid, group: d.group.id })),
        unattached: devices.length - inUse.length,
      };
    }
  } catch (e) {
    if (e instanceof DriverError || e instanceof AttachError || e instanceof TopologyError) throw new StressError(e.message);
    throw e;
  }

  const poolByIpa = new Map<number, number>();
  pool.forEach((ipa, x) => poolByIpa.set(ipa, x));
  const poolOfComp = new Int32Array(components.length).fill(-1);
  poolL2.forEach((c, x) => {
    if (c >= 0) poolOfComp[c] = x;
  });
  return {
    mem,
    smmu,
    sids,
    used,
    vmid: dn.vmid,
    asid: dn.asid,
    components,
    s1Groups,
    s2Groups,
    s1Attrs: leafAttrs(1),
    s2Attrs: leafAttrs(2),
    pageVa: Float64Array.from(pageVa),
    pageL1: Int32Array.from(pageL1),
    pageT1: Int32Array.from(pageT1),
    stableVa,
    stablePa,
    pool,
    poolL2: Int32Array.from(poolL2),
    poolT2: Int32Array.from(poolT2),
    poolPa: Float64Array.from(poolPa),
    poolByIpa,
    poolOfComp,
    hotPages: Int32Array.from(hotPages),
    hotPool,
  };
}

// ---------------------------------------------------------------- the checker

const MODE_ALLOWED = 0; // versions allowed for [s, e]
const MODE_WRITTEN = 1; // versions written before e
const MODE_EVER = 2; // every version known

class Checker {
  private s = 0;
  private e = 0;
  private mode = MODE_ALLOWED;
  /** Stage-2 leaf components that ever had each target PA. */
  private readonly l2ByTarget = new Map<number, number[]>();
  private readonly stableByPa = new Map<number, number>();
  readonly byKind: Record<ViolationKind, number> = { stale: 0, future: 0, torn: 0 };
  violations = 0;
  checked = 0;
  faults = 0;

  constructor(private readonly t: Topology) {
    t.poolPa.forEach((pa, x) => {
      if (pa >= 0) this.stableByPa.set(pa, x);
    });
    for (let x = 0; x < t.pool.length; x++) {
      const c = t.poolL2[x]!;
      if (c >= 0) this.noteL2(c, t.components[c]!.vals[0]!);
    }
  }

  private noteL2(c: number, v: number): void {
    if (v === INVALID) return;
    const target = v - (v % 2);
    const list = this.l2ByTarget.get(target);
    if (list === undefined) this.l2ByTarget.set(target, [c]);
    else if (!list.includes(c)) list.push(c);
  }

  /** Records a change from a mutator's log. */
  add(c: number, v: number, a: number, z: number): void {
    this.t.components[c]!.push(v, a, z);
    if (this.t.poolOfComp[c]! >= 0) this.noteL2(c, v);
  }

  /** Is there a version of `c` in class `cls` among those the current mode admits? */
  private has(c: number, cls: number): boolean {
    const k = this.t.components[c]!;
    if (this.mode === MODE_ALLOWED) {
      let i = k.lastBy(this.e);
      for (;;) {
        if (matches(k.vals[i]!, cls)) return true;
        // Version i-1 is allowed only if the change that replaced it completed after s.
        if (i === 0 || k.zs[i]! <= this.s) return false;
        i--;
      }
    }
    const last = this.mode === MODE_WRITTEN ? k.lastBy(this.e) : k.vals.length - 1;
    return k.first(cls) <= last;
  }

  /** Stage 1 of pool target x, value x*2 (RW) or, for a read, x*2+1 (RO) too. */
  private s1To(l1: number, x: number, w: boolean): boolean {
    return this.has(l1, x * 2) || (!w && this.has(l1, x * 2 + 1));
  }

  /** Can the outcome of a translation of mutated stage-1 page p be explained under the current mode? */
  private explain(p: number, w: boolean, off: number, status: number, pa: number, detail: number): boolean {
    const t = this.t;
    const t1 = t.pageT1[p]!;
    const l1 = t.pageL1[p]!;
    if (detail === -1) {
      if (status === FAULT_TRANSLATION) return this.has(t1, CLS_INVALID) || (this.has(t1, CLS_VALID) && this.has(l1, CLS_INVALID));
      if (status === FAULT_PERMISSION) return w && this.has(t1, CLS_VALID) && this.has(l1, CLS_RO);
      return false;
    }
    if (!this.has(t1, CLS_VALID)) return false;
    if (status === FAULT_TRANSLATION || status === FAULT_PERMISSION) {
      const x = t.poolByIpa.get(detail - off);
      if (x === undefined) return false;
      const l2 = t.poolL2[x]!;
      const t2 = t.poolT2[x]!;
      if (l2 < 0) return false; // a stable IPA never faults at stage 2
      if (status === FAULT_TRANSLATION) {
        return this.s1To(l1, x, w) && (this.has(t2, CLS_INVALID) || (this.has(t2, CLS_VALID) && this.has(l2, CLS_INVALID)));
      }
      return w && this.has(l1, x * 2) && this.has(t2, CLS_VALID) && this.has(l2, CLS_RO);
    }
    if (status !== RES_OK) return false;
    const target = pa - off;
    const xs = this.stableByPa.get(target);
    if (xs !== undefined && this.s1To(l1, xs, w)) return true;
    const cands = this.l2ByTarget.get(target);
    if (cands === undefined) return false;
    for (const l2 of cands) {
      const x = t.poolOfComp[l2]!;
      if (this.s1To(l1, x, w) && this.has(t.poolT2[x]!, CLS_VALID) && (this.has(l2, target) || (!w && this.has(l2, target + 1)))) return true;
    }
    return false;
  }

  /**
   * Checks one translation: request page (>= 0 mutated, < 0 stable -(i+1)), access, offset
   * in the page, stamps and outcome. Returns null when legal, else the violation's kind.
   */
  check(page: number, w: boolean, off: number, s: number, e: number, status: number, pa: number, detail: number): ViolationKind | null {
    this.checked++;
    if (status !== RES_OK) this.faults++;
    if (page < 0) {
      // A page that never changes has exactly one legal outcome.
      if (status === RES_OK && pa === this.t.stablePa[-page - 1]! + off) return null;
      return this.violation('torn');
    }
    this.s = s;
    this.e = e;
    this.mode = MODE_ALLOWED;
    if (this.explain(page, w, off, status, pa, detail)) return null;
    this.mode = MODE_WRITTEN;
    if (this.explain(page, w, off, status, pa, detail)) return this.violation('stale');
    this.mode = MODE_EVER;
    return this.violation(this.explain(page, w, off, status, pa, detail) ? 'future' : 'torn');
  }

  private violation(kind: ViolationKind): ViolationKind {
    this.violations++;
    this.byKind[kind]++;
    return kind;
  }
}

// ---------------------------------------------------------------- the run

function distFile(name: string): string {
  const here = fileURLToPath(import.meta.url);
  const i = here.lastIndexOf(`${'/'}dist${'/'}`);
  const root = i >= 0 ? here.slice(0, i) : resolve(dirname(here), '..', '..');
  const file = join(root, 'dist', 'workers', name);
  if (!existsSync(file)) throw new StressError(`the mutator worker ${file} is missing: run \`npm run build\` first`);
  return file;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))]!;
}

const hexa = (n: number): string => (n < 0 ? '-0x' + (-n).toString(16) : '0x' + n.toString(16));

/** Runs the stress tester; resolves to its report (violations > 0 means a bug was caught). */
export async function runStress(opts: StressOptions = {}): Promise<StressReport> {
  const seconds = opts.seconds ?? 5;
  const workers = opts.workers ?? 2;
  const mutators = opts.mutators ?? 1;
  const seed = opts.seed ?? 1;
  const cacheName = opts.caches ?? 'mmu600';
  const batch = opts.batch ?? 2048;
  const inject = opts.inject ?? null;
  const groups = opts.groups ?? 8;
  const perGroup = opts.pagesPerGroup ?? 32;
  const stablePages = opts.stablePages ?? 256;
  const stableFraction = opts.stableFraction ?? 0.1;
  const hotPages = opts.hotPages ?? 16;
  const hotFraction = opts.hotFraction ?? 0.5;
  const mix: OpMix = { table: 0.01, stage2: 0.25, remap: 0.4, protect: 0.35, ...opts.mix };
  if (!(seconds > 0)) throw new StressError(`seconds must be positive, got ${seconds}`);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new StressError(`workers must be 1..64, got ${workers}`);
  if (!Number.isInteger(mutators) || mutators < 1 || mutators > 8) throw new StressError(`mutators must be 1..8, got ${mutators}`);
  if (!Number.isInteger(batch) || batch < 1 || batch > 1 << 20) throw new StressError(`batch must be 1..1048576, got ${batch}`);
  if (!Number.isInteger(groups) || groups < 1 || groups > 64) throw new StressError(`groups must be 1..64, got ${groups}`);
  if (!(cacheName in CACHE_PRESETS)) throw new StressError(`unknown cache preset "${cacheName}" (valid: ${Object.keys(CACHE_PRESETS).join(', ')})`);
  const cache = CACHE_PRESETS[cacheName]!;
  if (cache === null) throw new StressError('the stress tester needs a caching preset (invalidations are what it tests)');

  if (!Number.isInteger(hotPages) || hotPages < 1) throw new StressError(`hot pages must be a positive integer, got ${hotPages}`);
  let choice: TopologyChoice | null = null;
  if (opts.topology !== undefined) {
    try {
      choice = { ...loadTopologyNamed(opts.topology), smmu: opts.smmu };
    } catch (e) {
      if (e instanceof UnknownTopologyError || e instanceof TopologyError) throw new StressError(e.message);
      throw e;
    }
  } else if (opts.smmu !== undefined) throw new StressError('--smmu needs --topology');
  const topo = buildTopology(mutators, groups, perGroup, stablePages, hotPages, seed, choice);
  const checker = new Checker(topo);
  const farm = await Farm.start({ mem: topo.mem, units: workers, cache, distribution: opts.distribution ?? 'affinity', capacity: batch, stamped: true, inject });
  const control = new SharedArrayBuffer(4 * (SC_WORDS + mutators * SCM_WORDS));
  const sc = new Int32Array(control);
  const logs = Array.from({ length: mutators }, () => ({ meta: new SharedArrayBuffer(4 * LOG_META * LOG_CAPACITY), val: new SharedArrayBuffer(8 * LOG_CAPACITY) }));
  const consumed = new Array<number>(mutators).fill(0);
  const threads: Worker[] = [];
  const results: Array<Promise<MutatorResult>> = [];
  let firstError: Error | null = null;
  try {
    farm.loadConfig(topo.smmu, topo.sids);
    const file = distFile('stress-mutator.js');
    for (let m = 0; m < mutators; m++) {
      const data: MutatorData = {
        index: m,
        seed: deriveSeed(seed, m + 1),
        mem: topo.mem.share(),
        farm: farm.shared,
        inject: inject === 'early-sync' ? 'early-sync' : null,
        control,
        logMeta: logs[m]!.meta,
        logVal: logs[m]!.val,
        logCapacity: LOG_CAPACITY,
        vmid: topo.vmid,
        asid: topo.asid,
        s1: topo.s1Groups[m]!,
        s2: topo.s2Groups[m]!,
        s1Attrs: topo.s1Attrs,
        s2Attrs: topo.s2Attrs,
        pool: topo.pool,
        hot: { fraction: hotFraction, pages: hotPages, pool: topo.hotPool },
        mix,
        maxSamples: 1 << 20,
      };
      const w = new Worker(file, { workerData: data });
      threads.push(w);
      results.push(
        new Promise<MutatorResult>((res, rej) => {
          w.once('message', (r: MutatorResult) => res(r));
          w.once('error', (e) => {
            firstError ??= e;
            rej(e);
          });
          w.once('exit', (code) => rej(new StressError(`mutator ${m} exited (${code}) without a result`)));
        }),
      );
    }
    results.forEach((p) => p.catch(() => undefined));
    const deadline = Date.now() + 30_000;
    while (Atomics.load(sc, SC_READY) < mutators) {
      if (firstError !== null) throw firstError;
      if (Date.now() > deadline) throw new StressError('the mutators did not start within 30 s');
      await new Promise((r) => setTimeout(r, 2));
    }

    // Pull every record a batch's translations could depend on (see the header).
    const pull = (): void => {
      for (let m = 0; m < mutators; m++) {
        const mb = SC_WORDS + m * SCM_WORDS;
        const started = Atomics.load(sc, mb + SCM_STARTED);
        const t0 = Date.now();
        let spins = 0;
        let recorded = Atomics.load(sc, mb + SCM_RECORDED);
        while (recorded < started) {
          if (++spins > 200) Atomics.wait(sc, mb + SCM_RECORDED, recorded, 0.05);
          if (Date.now() - t0 > 10_000) throw new StressError(`mutator ${m} stopped recording its changes`);
          recorded = Atomics.load(sc, mb + SCM_RECORDED);
        }
        const meta = new Int32Array(logs[m]!.meta);
        const val = new Float64Array(logs[m]!.val);
        for (let r = consumed[m]!; r < recorded; r++) {
          const i = r % LOG_CAPACITY;
          checker.add(meta[i * LOG_META]!, val[i]!, meta[i * LOG_META + 1]!, meta[i * LOG_META + 2]!);
        }
        consumed[m] = recorded;
        Atomics.store(sc, mb + SCM_CONSUMED, recorded);
        Atomics.notify(sc, mb + SCM_CONSUMED);
      }
    };

    const rng = new Rng(deriveSeed(seed, 0));
    const streamIds = Int32Array.from(topo.sids);
    const sids = new Int32Array(batch);
    const vas = new Float64Array(batch);
    const accs = new Uint8Array(batch);
    const page = new Int32Array(batch);
    const pa = new Float64Array(batch);
    const status = new Int8Array(batch);
    const stamps = { start: new Int32Array(batch), end: new Int32Array(batch), detail: new Float64Array(batch) };
    const clock = new Int32Array(farm.shared.stamps!.clock);
    const nPages = topo.pageVa.length;
    const examples: ViolationExample[] = [];
    let firstViolation: number | null = null;
    const t0 = performance.now();
    let lastYield = t0;
    let now = t0;
    while (now - t0 < seconds * 1000) {
      for (let i = 0; i < batch; i++) {
        let va: number;
        if (rng.float() < stableFraction) {
          const k = rng.below(stablePages);
          page[i] = -k - 1;
          va = topo.stableVa[k]!;
        } else {
          const p = rng.float() < hotFraction ? topo.hotPages[rng.below(topo.hotPages.length)]! : rng.below(nPages);
          page[i] = p;
          va = topo.pageVa[p]!;
        }
        vas[i] = va + rng.below(512) * 8;
        accs[i] = rng.float() < 0.3 ? REQ_WRITE : REQ_READ;
        sids[i] = streamIds[rng.below(streamIds.length)]!;
      }
      Atomics.store(sc, SC_ACTIVE, 1);
      Atomics.notify(sc, SC_ACTIVE);
      farm.translate(sids, vas, accs, batch, pa, status, stamps);
      Atomics.store(sc, SC_ACTIVE, 0);
      pull();
      for (let i = 0; i < batch; i++) {
        const off = vas[i]! % PAGE;
        const kind = checker.check(page[i]!, accs[i] === REQ_WRITE, off, stamps.start[i]!, stamps.end[i]!, status[i]!, pa[i]!, stamps.detail[i]!);
        if (kind !== null) {
          firstViolation ??= (performance.now() - t0) / 1000;
          if (examples.length < 8) {
            examples.push({
              kind,
              sid: sids[i]!,
              va: hexa(vas[i]!),
              access: accs[i] === REQ_WRITE ? 'w' : 'r',
              start: stamps.start[i]!,
              end: stamps.end[i]!,
              status: status[i]!,
              pa: status[i] === RES_OK ? hexa(pa[i]!) : '-',
              detail: status[i] === RES_OK ? '' : stamps.detail[i] === -1 ? 'stage 1' : `stage 2, IPA ${hexa(stamps.detail[i]!)}`,
            });
          }
        }
      }
      now = performance.now();
      if (opts.stopOnViolation === true && checker.violations > 0) break;
      if (Atomics.load(clock, 0) > 2 ** 31 - 2 ** 24) break; // the Int32 clock is nearly spent
      if (now - lastYield > 100) {
        // Let worker events (a mutator's error) through.
        await new Promise((r) => setImmediate(r));
        if (firstError !== null) throw firstError;
        lastYield = now;
      }
    }
    const elapsed = (now - t0) / 1000;
    Atomics.store(sc, SC_STOP, 1);
    for (let m = 0; m < mutators; m++) Atomics.notify(sc, SC_WORDS + m * SCM_WORDS + SCM_CONSUMED);
    const res = await Promise.all(results);
    const units = farm.unitStats();
    const translations = units.reduce((a, u) => a + u.translations, 0);
    const hits = units.reduce((a, u) => a + u.hits, 0);
    let nLat = 0;
    for (const r of res) nLat += r.syncUs.length;
    const lat = new Float64Array(nLat);
    let o = 0;
    for (const r of res) {
      lat.set(r.syncUs, o);
      o += r.syncUs.length;
    }
    lat.sort();
    const operations = Object.fromEntries(OP_NAMES.map((k) => [k, res.reduce((a, r) => a + r.ops[k], 0)])) as Record<OpName, number>;
    const round = (x: number): number => Math.round(x * 100) / 100;
    return {
      translations: checker.checked,
      changes: res.reduce((a, r) => a + r.changes, 0),
      invalidations: res.reduce((a, r) => a + r.invalidations, 0),
      syncs: res.reduce((a, r) => a + r.syncs, 0),
      violations: checker.violations,
      violationsByKind: { ...checker.byKind },
      syncLatencyUs: { p50: round(percentile(lat, 0.5)), p99: round(percentile(lat, 0.99)), max: round(res.reduce((a, r) => Math.max(a, r.maxUs), 0)) },
      workers,
      seconds: round(elapsed),
      mutators,
      caches: cacheName,
      distribution: opts.distribution ?? 'affinity',
      inject,
      seed,
      batch,
      translationsPerSecond: Math.round(checker.checked / elapsed),
      operations,
      hitRate: translations === 0 ? 0 : round((hits / translations) * 100) / 100,
      faults: checker.faults,
      firstViolationSeconds: firstViolation === null ? null : round(firstViolation),
      examples,
      topology: topo.used,
    };
  } finally {
    Atomics.store(sc, SC_STOP, 1);
    for (let m = 0; m < mutators; m++) Atomics.notify(sc, SC_WORDS + m * SCM_WORDS + SCM_CONSUMED);
    await Promise.allSettled(results);
    await Promise.all(threads.map((w) => w.terminate()));
    await farm.close();
  }
}
