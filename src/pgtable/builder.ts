/**
 * A translation table builder with the semantics of Linux's io-pgtable-arm
 * (drivers/iommu/io-pgtable-arm.c) together with the iommu core's range
 * splitting (iommu_map / iommu_unmap):
 *
 * - `map(iova, pa, size, prot)` splits the range into the largest pages and
 *   blocks that the granule allows and the alignment of iova and pa permits,
 *   refuses to overwrite an existing leaf (io-pgtable's -EEXIST), rejects
 *   out-of-range or misaligned addresses, and leaves nothing mapped when it
 *   fails part-way;
 * - `unmap(iova, size)` returns the number of bytes it unmapped, stopping at
 *   the first hole; unmapping part of a block unmaps nothing (the behaviour
 *   since Linux v6.13, which removed split-on-unmap);
 * - `protect(iova, size, prot)` rewrites the permissions of the leaves in a
 *   range in place;
 * - `lookup(iova)` is the builder's own software walk (iova_to_phys).
 *
 * Stage 1 (with an ASID) and stage 2 (with a VMID) differ only in the leaf
 * encoding and in how the root is chosen: a stage-2 root may be 2..16
 * concatenated tables, used where Arm DDI 0487 K.a makes them mandatory
 * (R_DXBSH, R_SRKBC; the rule newest Linux follows).
 */

import {
  AF,
  DESC_TYPE_BLOCK,
  DESC_TYPE_PAGE,
  DESC_TYPE_TABLE,
  OA_HI_MASK,
  S1_AP1,
  S1_AP2,
  S1_ATTRINDX_SHIFT,
  S1_NG,
  S1_PXN_HI,
  S1_UXN_HI,
  S2_MEMATTR_SHIFT,
  S2_S2AP_R,
  S2_S2AP_W,
  S2_XN_HI,
  SH_INNER,
  SH_OUTER,
  SH_SHIFT,
} from './descriptor.js';
import { blockAllowed, granuleShift, levelShift, naturalStartLevel, paSizeEncoding, type GranuleKiB } from './geometry.js';
import { granuleToTg0, s2ConfigError, s2Sl0For, type Stage1Fields, type Stage2Fields } from './regime.js';
import type { PhysMem } from '../memory/phys.js';
import { IpaTables, type IpaResolver, type TableMemory } from './table-memory.js';

/** Mapping permissions and attributes (io-pgtable's IOMMU_* prot flags). */
export const PROT_READ = 1;
export const PROT_WRITE = 2;
/** Execute-never (stage 1 UXN+PXN, stage 2 XN). */
export const PROT_NOEXEC = 4;
/** Privileged only: stage 1 AP[1] = 0 (no EL0 / unprivileged access). */
export const PROT_PRIV = 8;
/** Normal write-back cacheable (stage 1 AttrIndx 1, stage 2 MemAttr 0xf, inner shareable). */
export const PROT_CACHE = 16;
/** Device memory (stage 1 AttrIndx 2, stage 2 MemAttr 0x1). */
export const PROT_MMIO = 32;
/** Stage 1 global: nG = 0 (io-pgtable always sets nG; this keeps the option). */
export const PROT_GLOBAL = 64;

const PROT_ALL = 127;

export class PgTableError extends Error {
  constructor(
    message: string,
    readonly code: 'EINVAL' | 'ERANGE' | 'EEXIST' | 'ENOMEM',
  ) {
    super(message);
    this.name = 'PgTableError';
  }
}

export interface PageTableOptions {
  stage: 1 | 2;
  granule: GranuleKiB;
  /** Input address size in bits (32..48). */
  ias: number;
  /** Output address size in bits: 32, 36, 40, 42, 44 or 48. */
  oas: number;
  /** Where the tables live (PAs, or IPAs behind a stage 2). */
  tables: TableMemory;
  asid?: number;
  vmid?: number;
}

export interface Leaf {
  /** The output address of `iova`. */
  pa: number;
  level: number;
  /** log2 of the leaf's size. */
  shift: number;
  lo: number;
  hi: number;
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

export class PageTable implements IpaResolver {
  readonly stage: 1 | 2;
  readonly granule: GranuleKiB;
  readonly ias: number;
  readonly oas: number;
  readonly tables: TableMemory;
  readonly gShift: number;
  readonly stride: number;
  readonly startLevel: number;
  /** Index bits at the start level (more than `stride` when the stage-2 root is concatenated). */
  readonly rootIndexBits: number;
  readonly rootBytes: number;
  /** The root table's address (TTBR0 / VTTBR BADDR). */
  readonly root: number;
  readonly asid: number;
  readonly vmid: number;
  /** Descriptors written since creation (maps, unmaps, permission changes, table installs). */
  descriptorWrites = 0;
  /** Leaf sizes (log2) map() may use, largest first. */
  readonly leafShifts: number[];

  constructor(opts: PageTableOptions) {
    const { stage, granule, ias, oas } = opts;
    if (stage !== 1 && stage !== 2) throw new PgTableError(`stage must be 1 or 2, got ${stage as number}`, 'EINVAL');
    if (granule !== 4 && granule !== 16 && granule !== 64) {
      throw new PgTableError(`granule must be 4, 16 or 64 (KiB), got ${granule as number}`, 'EINVAL');
    }
    paSizeEncodingOrThrow(oas);
    if (!Number.isInteger(ias) || ias < 25 || ias > 48) throw new PgTableError(`ias must be 25..48 bits, got ${ias}`, 'EINVAL');
    this.stage = stage;
    this.granule = granule;
    this.ias = ias;
    this.oas = oas;
    this.tables = opts.tables;
    this.asid = opts.asid ?? 0;
    this.vmid = opts.vmid ?? 0;
    this.gShift = granuleShift(granule);
    this.stride = this.gShift - 3;
    let start = naturalStartLevel(this.gShift, ias);
    if (stage === 2 && concatMandatory(granule, start, ias, oas)) start++;
    this.startLevel = start;
    this.rootIndexBits = ias - levelShift(this.gShift, start);
    if (stage === 2) {
      const err = s2ConfigError(granule, 64 - ias, s2Sl0For(granule, start));
      if (err !== null) throw new PgTableError(`no valid stage-2 start level for a ${ias}-bit IPA: ${err}`, 'EINVAL');
    }
    this.rootBytes = Math.max(8 << this.rootIndexBits, 64);
    this.leafShifts = [];
    for (let level = 3; level >= 1; level--) {
      if (level >= start && (level === 3 || blockAllowed(this.gShift, level))) this.leafShifts.unshift(levelShift(this.gShift, level));
    }
    this.root = this.tables.allocTable(this.rootBytes);
  }

  /** The register fields that describe this table to the walker (stage 1: TCR/TTBR0). */
  stage1Fields(): Stage1Fields {
    if (this.stage !== 1) throw new PgTableError('stage1Fields() on a stage-2 table', 'EINVAL');
    return { T0SZ: 64 - this.ias, TG0: granuleToTg0(this.granule), IPS: paSizeEncoding(this.oas), TTBR0: this.root, ASID: this.asid, EPD1: 1 };
  }

  /** The register fields that describe this table to the walker (stage 2: VTCR/VTTBR). */
  stage2Fields(): Stage2Fields {
    if (this.stage !== 2) throw new PgTableError('stage2Fields() on a stage-1 table', 'EINVAL');
    return {
      T0SZ: 64 - this.ias,
      SL0: s2Sl0For(this.granule, this.startLevel),
      TG0: granuleToTg0(this.granule),
      PS: paSizeEncoding(this.oas),
      VTTBR: this.root,
      VMID: this.vmid,
    };
  }

  /** Number of stage-2 root tables concatenated at the start level (1 when none). */
  get concatenatedTables(): number {
    return Math.max(1, 2 ** (this.rootIndexBits - this.stride));
  }

  // ---- descriptor encoding: one small function per descriptor kind ----

  /** Leaf attributes for `prot` (both words), without the type bits and the address. */
  private leafAttrs(prot: number): [number, number] {
    const cache = (prot & PROT_CACHE) !== 0;
    const mmio = (prot & PROT_MMIO) !== 0;
    let lo = AF | ((cache ? SH_INNER : SH_OUTER) << SH_SHIFT);
    let hi = 0;
    if (this.stage === 1) {
      if ((prot & PROT_PRIV) === 0) lo |= S1_AP1;
      if ((prot & PROT_WRITE) === 0) lo |= S1_AP2;
      if ((prot & PROT_GLOBAL) === 0) lo |= S1_NG;
      lo |= (mmio ? 2 : cache ? 1 : 0) << S1_ATTRINDX_SHIFT;
      if ((prot & PROT_NOEXEC) !== 0) hi |= S1_UXN_HI | S1_PXN_HI;
    } else {
      if ((prot & PROT_READ) !== 0) lo |= S2_S2AP_R;
      if ((prot & PROT_WRITE) !== 0) lo |= S2_S2AP_W;
      lo |= (mmio ? 0x1 : cache ? 0xf : 0x5) << S2_MEMATTR_SHIFT;
      if ((prot & PROT_NOEXEC) !== 0) hi |= S2_XN_HI;
    }
    return [lo, hi];
  }

  private writeLeaf(addr: number, level: number, pa: number, prot: number): void {
    const [alo, ahi] = this.leafAttrs(prot);
    const type = level === 3 ? DESC_TYPE_PAGE : DESC_TYPE_BLOCK;
    this.tables.store(addr, ((pa >>> 0) & 0xfffff000) | alo | type, (Math.floor(pa / 4294967296) & OA_HI_MASK) | ahi);
    this.descriptorWrites++;
  }

  private writeTable(addr: number, next: number): void {
    this.tables.store(addr, ((next >>> 0) & 0xfffff000) | DESC_TYPE_TABLE, Math.floor(next / 4294967296) & OA_HI_MASK);
    this.descriptorWrites++;
  }

  private clear(addr: number): void {
    this.tables.store(addr, 0, 0);
    this.descriptorWrites++;
  }

  private isLeaf(lo: number, level: number): boolean {
    return (lo & 1) !== 0 && (level === 3 || (lo & 2) === 0);
  }

  private isTable(lo: number, level: number): boolean {
    return level < 3 && (lo & 3) === 3;
  }

  private static addrOf(lo: number, hi: number, mask: number): number {
    return (hi & OA_HI_MASK) * 4294967296 + ((lo & mask) >>> 0);
  }

  private indexBits(level: number): number {
    return level === this.startLevel ? this.rootIndexBits : this.stride;
  }

  private slot(table: number, level: number, iova: number): number {
    const shift = levelShift(this.gShift, level);
    const index = Math.floor(iova / 2 ** shift) % 2 ** this.indexBits(level);
    return table + index * 8;
  }

  private tableBytes(level: number): number {
    return level === this.startLevel ? this.rootBytes : 1 << this.gShift;
  }

  // ---- map / unmap / protect / lookup ----

  private checkRange(what: string, iova: number, size: number, pa?: number): void {
    const g = 2 ** this.gShift;
    if (!Number.isSafeInteger(iova) || iova < 0) throw new PgTableError(`${what}: iova ${iova} is not a non-negative integer`, 'EINVAL');
    if (!Number.isSafeInteger(size) || size <= 0) throw new PgTableError(`${what}: size ${size} is not a positive integer`, 'EINVAL');
    if (iova % g !== 0 || size % g !== 0) {
      throw new PgTableError(`${what}: iova ${hex(iova)} and size ${hex(size)} must be multiples of the ${this.granule} KiB granule`, 'EINVAL');
    }
    if (iova + size > 2 ** this.ias) {
      throw new PgTableError(`${what}: [${hex(iova)}, ${hex(iova + size)}) is beyond the ${this.ias}-bit input range`, 'ERANGE');
    }
    if (pa !== undefined) {
      if (!Number.isSafeInteger(pa) || pa < 0) throw new PgTableError(`${what}: pa ${pa} is not a non-negative integer`, 'EINVAL');
      if (pa % g !== 0) throw new PgTableError(`${what}: pa ${hex(pa)} must be a multiple of the ${this.granule} KiB granule`, 'EINVAL');
      if (pa + size > 2 ** this.oas) {
        throw new PgTableError(`${what}: output [${hex(pa)}, ${hex(pa + size)}) is beyond the ${this.oas}-bit output range`, 'ERANGE');
      }
    }
  }

  /** The largest leaf size (log2) that fits at `iova`/`pa` within `remaining` bytes. */
  private pickShift(iova: number, pa: number, remaining: number): number {
    for (const s of this.leafShifts) {
      const sz = 2 ** s;
      if (sz <= remaining && iova % sz === 0 && pa % sz === 0) return s;
    }
    return this.gShift;
  }

  /** Maps [iova, iova+size) to [pa, pa+size) with `prot`, using the largest leaves alignment permits. */
  map(iova: number, pa: number, size: number, prot: number): void {
    this.checkRange('map', iova, size, pa);
    if ((prot & (PROT_READ | PROT_WRITE)) === 0) throw new PgTableError('map: prot must include PROT_READ or PROT_WRITE', 'EINVAL');
    if ((prot & ~PROT_ALL) !== 0) throw new PgTableError(`map: unknown prot bits ${hex(prot & ~PROT_ALL)}`, 'EINVAL');
    let done = 0;
    try {
      while (done < size) {
        const shift = this.pickShift(iova + done, pa + done, size - done);
        this.mapOne(iova + done, pa + done, shift, prot);
        done += 2 ** shift;
      }
    } catch (e) {
      if (done > 0) this.unmap(iova, done);
      throw e;
    }
  }

  private mapOne(iova: number, pa: number, shift: number, prot: number): void {
    let table = this.root;
    let level = this.startLevel;
    const gmask = -(1 << this.gShift);
    for (;;) {
      const slot = this.slot(table, level, iova);
      const lo = this.tables.load(slot);
      const hi = this.tables.hi;
      if (levelShift(this.gShift, level) === shift) {
        if (this.isLeaf(lo, level)) {
          throw new PgTableError(`map: ${hex(iova)} is already mapped (level ${level}); unmap it first`, 'EEXIST');
        }
        if (this.isTable(lo, level)) {
          // A table left behind by earlier unmaps may be replaced by a block if it is empty;
          // one that still maps something is an existing mapping.
          const next = PageTable.addrOf(lo, hi, gmask);
          if (!this.tableEmpty(next, level + 1)) {
            throw new PgTableError(`map: ${hex(iova)}..${hex(iova + 2 ** shift)} overlaps existing smaller mappings`, 'EEXIST');
          }
          this.clear(slot);
          this.freeTree(next, level + 1);
        }
        this.writeLeaf(slot, level, pa, prot);
        return;
      }
      if (this.isLeaf(lo, level)) {
        throw new PgTableError(`map: ${hex(iova)} is inside an existing level-${level} block`, 'EEXIST');
      }
      if (this.isTable(lo, level)) {
        table = PageTable.addrOf(lo, hi, gmask);
      } else {
        const next = this.tables.allocTable(1 << this.gShift);
        this.writeTable(slot, next);
        table = next;
      }
      level++;
    }
  }

  /** True when nothing is mapped below `table`: no leaf, only (possibly) tables left behind that map nothing either. */
  private tableEmpty(table: number, level: number): boolean {
    const n = this.tableBytes(level) / 8;
    const gmask = -(1 << this.gShift);
    for (let i = 0; i < n; i++) {
      const lo = this.tables.load(table + i * 8);
      if ((lo & 1) === 0) continue;
      if (!this.isTable(lo, level) || !this.tableEmpty(PageTable.addrOf(lo, this.tables.hi, gmask), level + 1)) return false;
    }
    return true;
  }

  private freeTree(table: number, level: number): void {
    if (level < 3) {
      const n = this.tableBytes(level) / 8;
      const gmask = -(1 << this.gShift);
      for (let i = 0; i < n; i++) {
        const lo = this.tables.load(table + i * 8);
        if (this.isTable(lo, level)) this.freeTree(PageTable.addrOf(lo, this.tables.hi, gmask), level + 1);
      }
    }
    this.tables.freeTable(table, this.tableBytes(level));
  }

  /**
   * Unmaps [iova, iova+size); returns the bytes unmapped. Stops at the first
   * address that is not mapped, and at a block that extends beyond the range
   * (partial block unmaps are refused, as in Linux since v6.13).
   */
  unmap(iova: number, size: number): number {
    this.checkRange('unmap', iova, size);
    let done = 0;
    while (done < size) {
      const n = this.unmapOne(iova + done, size - done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  private unmapOne(iova: number, remaining: number): number {
    let table = this.root;
    let level = this.startLevel;
    const gmask = -(1 << this.gShift);
    for (;;) {
      const slot = this.slot(table, level, iova);
      const lo = this.tables.load(slot);
      const hi = this.tables.hi;
      const shift = levelShift(this.gShift, level);
      const sz = 2 ** shift;
      if ((lo & 1) === 0) return 0;
      const covers = iova % sz === 0 && sz <= remaining;
      if (this.isLeaf(lo, level)) {
        if (!covers) return 0;
        this.clear(slot);
        return sz;
      }
      if (!this.isTable(lo, level)) return 0;
      const next = PageTable.addrOf(lo, hi, gmask);
      if (covers) {
        // The whole region below this table goes: clear the table entry, free the subtree.
        this.clear(slot);
        this.freeTree(next, level + 1);
        return sz;
      }
      table = next;
      level++;
    }
  }

  /** Rewrites the permissions of every leaf in [iova, iova+size); returns how many leaves changed. */
  protect(iova: number, size: number, prot: number): number {
    this.checkRange('protect', iova, size);
    if ((prot & (PROT_READ | PROT_WRITE)) === 0) throw new PgTableError('protect: prot must include PROT_READ or PROT_WRITE', 'EINVAL');
    // Check first, so that a refused change leaves everything as it was.
    const leaves: Array<{ slot: number; level: number; pa: number }> = [];
    for (let a = iova; a < iova + size; ) {
      const found = this.findLeaf(a);
      if (found === null) {
        a += 2 ** this.gShift;
        continue;
      }
      const sz = 2 ** found.shift;
      const start = a - (a % sz);
      if (start < iova || start + sz > iova + size) {
        throw new PgTableError(`protect: the level-${found.level} leaf at ${hex(start)} extends beyond the range`, 'EINVAL');
      }
      leaves.push({ slot: found.slot, level: found.level, pa: found.pa - (a - start) });
      a = start + sz;
    }
    for (const l of leaves) this.writeLeaf(l.slot, l.level, l.pa, prot);
    return leaves.length;
  }

  private findLeaf(iova: number): (Leaf & { slot: number }) | null {
    let table = this.root;
    let level = this.startLevel;
    const gmask = -(1 << this.gShift);
    for (;;) {
      const slot = this.slot(table, level, iova);
      const lo = this.tables.load(slot);
      const hi = this.tables.hi;
      if ((lo & 1) === 0) return null;
      if (this.isTable(lo, level)) {
        table = PageTable.addrOf(lo, hi, gmask);
        level++;
        continue;
      }
      if (!this.isLeaf(lo, level)) return null;
      const shift = levelShift(this.gShift, level);
      const base = PageTable.addrOf(lo, hi, -(2 ** Math.min(shift, 31)) | 0);
      return { pa: base + (iova % 2 ** shift), level, shift, lo, hi, slot };
    }
  }

  /** The builder's own lookup (io-pgtable's iova_to_phys): the leaf for `iova`, or null. */
  lookup(iova: number): Leaf | null {
    if (!Number.isSafeInteger(iova) || iova < 0 || iova >= 2 ** this.ias) return null;
    const f = this.findLeaf(iova);
    if (f === null) return null;
    return { pa: f.pa, level: f.level, shift: f.shift, lo: f.lo, hi: f.hi };
  }

  /** IpaResolver: the PA a stage-2 table maps `ipa` to, or -1. */
  ipaToPa(ipa: number): number {
    const l = this.lookup(ipa);
    return l === null ? -1 : l.pa;
  }

  /** Bytes of table memory this builder's address space has in use (shared with other builders on the same TableMemory). */
  get tableBytesInUse(): number {
    return this.tables.bytesInUse;
  }
}

function paSizeEncodingOrThrow(oas: number): void {
  try {
    paSizeEncoding(oas);
  } catch {
    throw new PgTableError(`oas must be one of 32, 36, 40, 42, 44, 48 bits, got ${oas}`, 'EINVAL');
  }
}

/**
 * Whether a stage-2 root must be concatenated tables one level down (Arm DDI
 * 0487 K.a, R_DXBSH: 16 KiB granule with a 48-bit IPA starts at level 1;
 * R_SRKBC: 4 KiB with a 40- or 42-bit PA size starts at level 1, 16 KiB with
 * a 40-bit PA size at level 2), as newest Linux's arm_lpae_concat_mandatory().
 */
export function concatMandatory(granule: GranuleKiB, startLevel: number, ias: number, oas: number): boolean {
  if (granule === 16 && startLevel === 0) return oas === 48 || ias === 48;
  if (granule === 4 && startLevel === 0) return oas === 40 || oas === 42;
  return granule === 16 && startLevel === 1 && oas === 40;
}

/** Common options of the named builders. */
export interface BuilderGeometry {
  granule: GranuleKiB;
  ias: number;
  oas: number;
}

/** A stage-1 table (VA -> PA, or VA -> IPA for a guest) tagged with an ASID, its tables at PAs. */
export function createStage1(tables: TableMemory, geometry: BuilderGeometry, asid = 0): PageTable {
  return new PageTable({ stage: 1, ...geometry, tables, asid });
}

/** A stage-2 table (IPA -> PA) tagged with a VMID, its tables at PAs. */
export function createStage2(tables: TableMemory, geometry: BuilderGeometry, vmid = 0): PageTable {
  return new PageTable({ stage: 2, ...geometry, tables, vmid });
}

/**
 * A guest's stage-1 table whose own tables live at IPAs in [ipaBase, ipaLimit),
 * reached through `stage2` (which must map that window): what a KVM guest
 * builds and an SMMU walks with nested translation.
 */
export function createGuestStage1(
  mem: PhysMem,
  stage2: PageTable,
  ipaBase: number,
  ipaLimit: number,
  geometry: BuilderGeometry,
  asid = 0,
): PageTable {
  return new PageTable({ stage: 1, ...geometry, tables: new IpaTables(mem, stage2, ipaBase, ipaLimit), asid });
}
