/**
 * Unit tests of the VMSAv8-64 walker (src/walk/walk.ts), one descriptor kind
 * and one fault kind at a time.
 *
 * Every table here is written by hand, word by word, with `mem.write64`: the
 * PageTable builder is deliberately not used, so these tests do not depend on
 * it. Descriptor bits are spelled out below with their Arm ARM bit numbers
 * (DDI 0487, D8.3 "Translation table descriptor formats"), not imported from
 * src/pgtable/descriptor.ts, and every expectation carries the Arm ARM reasoning
 * (section or pseudocode function) it was worked out from. The modelled
 * implementation is Armv8.0 with PAMax = 48 (no FEAT_LPA/LPA2/TTST/HAFDBS/PAN).
 */

import { describe, expect, it } from 'vitest';
import { PhysMem } from '../src/memory/phys.js';
import { Regime, RegimeError, decodeStage1, decodeStage2, type Stage1Fields } from '../src/pgtable/regime.js';
import {
  ACC_EXEC,
  ACC_READ,
  ACC_UNPRIV,
  ACC_WRITE,
  PERM_PR,
  PERM_PW,
  PERM_PX,
  PERM_UR,
  PERM_UW,
  PERM_UX,
  WalkResult,
} from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';

// ---------------------------------------------------------------------------
// Descriptor bits, as the Arm ARM numbers them (D8.3).
// ---------------------------------------------------------------------------

/** bits[1:0]: 0b11 = table (levels 0-2) / page (level 3); 0b01 = block (levels 0-2) / reserved (level 3). */
const T_TABLE = 0b11n;
const T_PAGE = 0b11n;
const T_BLOCK = 0b01n;
/** AF, bit[10]. */
const AF = 1n << 10n;
/** Stage 1 AP[1], bit[6] (EL0 access) and AP[2], bit[7] (read-only). */
const AP1 = 1n << 6n;
const AP2 = 1n << 7n;
/** Stage 2 S2AP[0], bit[6] (read) and S2AP[1], bit[7] (write). */
const S2AP_R = 1n << 6n;
const S2AP_W = 1n << 7n;
/** Stage 1 PXN bit[53], UXN bit[54]; stage 2 XN bit[54]. */
const PXN = 1n << 53n;
const UXN = 1n << 54n;
const XN = 1n << 54n;
/** Table descriptor next-level attributes: PXNTable[59], UXNTable[60], APTable[61] and [62]. */
const PXNTABLE = 1n << 59n;
const UXNTABLE = 1n << 60n;
const APTABLE0 = 1n << 61n;
const APTABLE1 = 1n << 62n;

/** A stage-1 leaf everyone may read and write: AF=1, AP[2:1]=0b01. */
const S1_RW_ALL = AF | AP1;
/** A stage-2 leaf with S2AP=0b11 (read/write), AF=1. */
const S2_RW = AF | S2AP_R | S2AP_W;

const tableD = (next: number, attrs = 0n): bigint => BigInt(next) | T_TABLE | attrs;
const blockD = (oa: number, attrs = 0n): bigint => BigInt(oa) | T_BLOCK | attrs;
const pageD = (oa: number, attrs = 0n): bigint => BigInt(oa) | T_PAGE | attrs;

// ---------------------------------------------------------------------------
// Register encodings (D13.2 TCR_EL1, VTCR_EL2).
// ---------------------------------------------------------------------------

type G = 4 | 16 | 64;
const GRANULES: G[] = [4, 16, 64];
/** log2 of the granule. */
const GS: Record<G, number> = { 4: 12, 16: 14, 64: 16 };
/** TCR_EL1.TG0 / VTCR_EL2.TG0: 0b00 = 4KB, 0b01 = 64KB, 0b10 = 16KB. */
const TG0: Record<G, number> = { 4: 0b00, 64: 0b01, 16: 0b10 };
/** TCR_EL1.TG1: 0b01 = 16KB, 0b10 = 4KB, 0b11 = 64KB. */
const TG1: Record<G, number> = { 16: 0b01, 4: 0b10, 64: 0b11 };
/** TCR_EL1.IPS / VTCR_EL2.PS: 0b000 = 32 bits, 0b001 = 36, 0b010 = 40, 0b011 = 42, 0b100 = 44, 0b101 = 48. */
const PS: Record<number, number> = { 32: 0b000, 36: 0b001, 40: 0b010, 42: 0b011, 44: 0b100, 48: 0b101 };

/** log2 of the region one descriptor at `level` maps: grainsize + (3 - level) * stride, stride = grainsize - 3 (D8.2). */
const lvlShift = (g: G, level: number): number => GS[g] + (3 - level) * (GS[g] - 3);
/** The table index that address bits [shift + bits - 1 : shift] select. */
const idx = (addr: number, shift: number, bits: number): number => Math.floor(addr / 2 ** shift) % 2 ** bits;

const RAM = 0x4000_0000;
const MiB = 1 << 20;

function ram(size = 4 * MiB, unbacked: 'abort' | 'zero' = 'abort'): PhysMem {
  return PhysMem.create({ regions: [{ base: RAM, size }], unbacked });
}

function s1(g: G, tsz: number, ttb: number, ips = 48, more: Partial<Stage1Fields> = {}): Regime {
  return decodeStage1({ T0SZ: tsz, TG0: TG0[g], IPS: PS[ips]!, TTBR0: ttb, ...more });
}

function s2(g: G, tsz: number, sl0: number, vttbr: number, ps = 48, regime?: Regime): Regime {
  return decodeStage2({ T0SZ: tsz, SL0: sl0, TG0: TG0[g], PS: PS[ps]!, VTTBR: vttbr }, regime);
}

function walk(mem: PhysMem, regime: Regime, va: number, acc = ACC_READ, res = new WalkResult()): WalkResult {
  translate(mem, regime, va, acc, res);
  return res;
}

type Outcome = { pa: number } | { type: string; stage: number; level: number; s1ptw: boolean; ipa: number };

/** The part of a result the Arm ARM pins down: the output address, or the fault syndrome. */
function outcome(r: WalkResult): Outcome {
  return r.ok ? { pa: r.pa } : { type: r.faultName, stage: r.faultStage, level: r.faultLevel, s1ptw: r.s1ptw, ipa: r.faultIpa };
}

/** An expected fault. `ipa` is the faulting IPA for stage-2 faults (SMMU_CBn_IPAFAR), -1 for stage 1. */
function F(type: string, stage: number, level: number, s1ptw = false, ipa = -1): Outcome {
  return { type, stage, level, s1ptw, ipa };
}

/** Deterministic 32-bit PRNG (mulberry32). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
const rand64 = (r: () => number): bigint => (BigInt(r()) << 32n) | BigInt(r());

/**
 * Writes, word by word, the table chain that maps `va` from a root table at
 * `root` (initial level `start`, `rootBits` index bits there) down to `leaf`
 * at `leafLevel`, taking fresh tables from `alloc`. Existing table
 * descriptors on the path are followed. Descriptor addresses are physical.
 * Returns the address of the leaf descriptor.
 */
function handMap(
  mem: PhysMem,
  g: G,
  root: number,
  start: number,
  rootBits: number,
  va: number,
  leafLevel: number,
  leaf: bigint,
  alloc: () => number,
): number {
  let table = root;
  for (let level = start; ; level++) {
    const bits = level === start ? rootBits : GS[g] - 3;
    const at = table + idx(va, lvlShift(g, level), bits) * 8;
    if (level === leafLevel) {
      mem.write64(at, leaf);
      return at;
    }
    const cur = mem.read64(at);
    if ((cur & 3n) === 3n) {
      table = Number(cur & 0x0000_ffff_ffff_f000n);
    } else {
      table = alloc();
      mem.write64(at, tableD(table));
    }
  }
}

function bump(from: number, step: number): () => number {
  let next = from;
  return () => {
    const a = next;
    next += step;
    return a;
  };
}

// ===========================================================================
// Descriptor kinds
// ===========================================================================

describe('descriptor kinds (D8.3)', () => {
  it('4K: table descriptors down to a page at level 3; PA = OA[47:12] : VA[11:0]', () => {
    // TCR.T0SZ=16 with 4KB: 48-bit VA, initial level 0, four lookups (D8.2, 4KB granule).
    const mem = ram();
    const va = 0x5a5a_c3e1_2345;
    const L0 = RAM, L1 = RAM + 0x1000, L2 = RAM + 0x2000, L3 = RAM + 0x3000;
    // Index fields for 4KB: L0 = VA[47:39], L1 = VA[38:30], L2 = VA[29:21], L3 = VA[20:12].
    mem.write64(L0 + idx(va, 39, 9) * 8, tableD(L1));
    mem.write64(L1 + idx(va, 30, 9) * 8, tableD(L2));
    mem.write64(L2 + idx(va, 21, 9) * 8, tableD(L3));
    mem.write64(L3 + idx(va, 12, 9) * 8, pageD(0x0000_8765_4321_0000, S1_RW_ALL));
    const r = walk(mem, s1(4, 16, L0), va);
    // A 4KB page: OA bits [47:12] from the descriptor, bits [11:0] from the VA.
    expect(outcome(r)).toEqual({ pa: 0x8765_4321_0345 });
    expect(r.s1Level).toBe(3);
    expect(r.sizeShift).toBe(12);
    expect(r.reads).toBe(4);
    expect(r.s2Level).toBe(-1); // stage 2 off
  });

  it('16K and 64K: page at level 3 (16 KiB and 64 KiB pages)', () => {
    // 16KB, T0SZ=28: 36-bit VA, initial level 2 (D8.2: 4 - (1 + (36-14-1) DIV 11) = 2); L2 = VA[35:25], L3 = VA[24:14].
    {
      const mem = ram();
      const va = 0xa_bcde_f123;
      mem.write64(RAM + idx(va, 25, 11) * 8, tableD(RAM + 0x4000));
      mem.write64(RAM + 0x4000 + idx(va, 14, 11) * 8, pageD(0x12_3456_c000, S1_RW_ALL));
      const r = walk(mem, s1(16, 28, RAM), va);
      // 16KB page: OA[47:14] : VA[13:0]; VA[13:0] = 0x3123.
      expect(outcome(r)).toEqual({ pa: 0x12_3456_f123 });
      expect([r.s1Level, r.sizeShift, r.reads]).toEqual([3, 14, 2]);
    }
    // 64KB, T0SZ=22: 42-bit VA, initial level 2 (4 - (1 + (42-16-1) DIV 13) = 2); L2 = VA[41:29], L3 = VA[28:16].
    {
      const mem = ram();
      const va = 0x3ab_cdef_1234;
      mem.write64(RAM + idx(va, 29, 13) * 8, tableD(RAM + 0x10000));
      mem.write64(RAM + 0x10000 + idx(va, 16, 13) * 8, pageD(0x77_0000_0000, S1_RW_ALL));
      const r = walk(mem, s1(64, 22, RAM), va);
      // 64KB page: OA[47:16] : VA[15:0].
      expect(outcome(r)).toEqual({ pa: 0x77_0000_1234 });
      expect([r.s1Level, r.sizeShift, r.reads]).toEqual([3, 16, 2]);
    }
  });

  it('4K: 1 GiB block at level 1 and 2 MiB block at level 2; low bits come from the VA', () => {
    const mem = ram();
    const regime = s1(4, 16, RAM);
    // 1 GiB block (D8.3: a level-1 block with the 4KB granule maps 2^30 bytes): PA = OA[47:30] : VA[29:0].
    const va1 = 0x0000_5a5a_c3e1_2345;
    mem.write64(RAM + idx(va1, 39, 9) * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000 + idx(va1, 30, 9) * 8, blockD(0x1234_c000_0000, S1_RW_ALL));
    let r = walk(mem, regime, va1);
    expect(outcome(r)).toEqual({ pa: 0x1234_c000_0000 + 0x03e1_2345 });
    expect([r.s1Level, r.sizeShift, r.reads]).toEqual([1, 30, 2]);
    // 2 MiB block at level 2: PA = OA[47:21] : VA[20:0].
    const va2 = 0x0000_0000_7ff3_4567; // L0 0, L1 1, L2 0x1ff
    mem.write64(RAM + 0, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + 1 * 8, tableD(RAM + 0x3000));
    mem.write64(RAM + 0x3000 + 0x1ff * 8, blockD(0x9_8760_0000, S1_RW_ALL));
    r = walk(mem, regime, va2);
    expect(outcome(r)).toEqual({ pa: 0x9_8760_0000 + 0x13_4567 });
    expect([r.s1Level, r.sizeShift, r.reads]).toEqual([2, 21, 3]);
  });

  it('16K: 32 MiB block at level 2; 64K: 512 MiB block at level 2', () => {
    // 16KB T0SZ=16: 48-bit VA, initial level 0 with a 2-entry table (VA[47]), L1 = VA[46:36], L2 = VA[35:25].
    {
      const mem = ram();
      const va = 0x8765_4321_abcd;
      mem.write64(RAM + idx(va, 47, 1) * 8, tableD(RAM + 0x4000));
      mem.write64(RAM + 0x4000 + idx(va, 36, 11) * 8, tableD(RAM + 0x8000));
      mem.write64(RAM + 0x8000 + idx(va, 25, 11) * 8, blockD(0x4_0200_0000, S1_RW_ALL));
      const r = walk(mem, s1(16, 16, RAM), va);
      // A level-2 block with 16KB maps 2^25 bytes: PA = OA[47:25] : VA[24:0] (VA[24:0] = 0x121abcd).
      expect(outcome(r)).toEqual({ pa: 0x4_0200_0000 + 0x121_abcd });
      expect([r.s1Level, r.sizeShift, r.reads]).toEqual([2, 25, 3]);
    }
    // 64KB T0SZ=16: 48-bit VA, initial level 1 with a 64-entry table (VA[47:42]), L2 = VA[41:29].
    {
      const mem = ram();
      const va = 0xfedc_ba98_7654;
      mem.write64(RAM + idx(va, 42, 6) * 8, tableD(RAM + 0x10000));
      mem.write64(RAM + 0x10000 + idx(va, 29, 13) * 8, blockD(0x60_0000_0000, S1_RW_ALL));
      const r = walk(mem, s1(64, 16, RAM), va);
      // A level-2 block with 64KB maps 2^29 bytes: PA = OA[47:29] : VA[28:0] (VA[28:0] = 0x1a987654).
      expect(outcome(r)).toEqual({ pa: 0x60_0000_0000 + 0x1a98_7654 });
      expect([r.s1Level, r.sizeShift, r.reads]).toEqual([2, 29, 2]);
    }
  });

  it('block descriptors at levels the granule does not allow are Translation faults at that level (stage 1)', () => {
    // D8.3 / AArch64.BlockDescSupported (no FEAT_LPA2): 4KB blocks only at levels 1-2, 16KB and 64KB only at
    // level 2. A 0b01 descriptor elsewhere is invalid: Translation fault at the level of that lookup.
    const mem = ram();
    const good = S1_RW_ALL;
    // 4KB level 0 (T0SZ=16 starts at level 0; a level-0 "block" would map 512 GiB).
    mem.zero(RAM, MiB);
    mem.write64(RAM, blockD(0, good));
    expect(outcome(walk(mem, s1(4, 16, RAM), 0x1234))).toEqual(F('translation', 1, 0));
    // 16KB level 0 (T0SZ=16: initial level 0, 2 entries).
    mem.zero(RAM, MiB);
    mem.write64(RAM, blockD(0, good));
    expect(outcome(walk(mem, s1(16, 16, RAM), 0x1234))).toEqual(F('translation', 1, 0));
    // 16KB level 1 (through a level-0 table).
    mem.zero(RAM, MiB);
    mem.write64(RAM, tableD(RAM + 0x4000));
    mem.write64(RAM + 0x4000, blockD(0, good));
    expect(outcome(walk(mem, s1(16, 16, RAM), 0x1234))).toEqual(F('translation', 1, 1));
    // 16KB level 1 as the initial level (T0SZ=17: 47-bit VA, initial level 1).
    expect(outcome(walk(mem, s1(16, 17, RAM + 0x4000), 0x1234))).toEqual(F('translation', 1, 1));
    // 64KB level 1 (T0SZ=16: initial level 1).
    mem.zero(RAM, MiB);
    mem.write64(RAM, blockD(0, good));
    expect(outcome(walk(mem, s1(64, 16, RAM), 0x1234))).toEqual(F('translation', 1, 1));
  });

  it('reserved encoding 0b01 at level 3 is a Translation fault at level 3, for every granule', () => {
    // D8.3: at level 3, descriptor bits[1:0] = 0b01 are reserved and treated as invalid.
    for (const g of GRANULES) {
      const mem = ram();
      // Initial level 2 for each granule: 4KB T0SZ=34 (30-bit), 16KB T0SZ=28 (36-bit), 64KB T0SZ=22 (42-bit).
      const tsz = g === 4 ? 34 : g === 16 ? 28 : 22;
      const tbl = RAM + 2 ** GS[g];
      mem.write64(RAM, tableD(tbl));
      mem.write64(tbl, blockD(0x5000_0000, S1_RW_ALL)); // 0b01 at level 3
      expect(outcome(walk(mem, s1(g, tsz, RAM), 0x10))).toEqual(F('translation', 1, 3));
      // The same word with bit[1] set is a valid page.
      mem.write64(tbl, pageD(0x5000_0000, S1_RW_ALL));
      expect(outcome(walk(mem, s1(g, tsz, RAM), 0x10))).toEqual({ pa: 0x5000_0010 });
    }
  });

  it('invalid descriptors (bit[0] = 0) with random other bits are Translation faults at their level', () => {
    // D8.3: bit[0] = 0 marks a descriptor invalid whatever its other bits hold (they are ignored).
    const mem = ram();
    const regime = s1(4, 16, RAM);
    const va = 0x0000_1234_5678_9000;
    const tables = [RAM, RAM + 0x1000, RAM + 0x2000, RAM + 0x3000];
    const at = (l: number) => tables[l]! + idx(va, lvlShift(4, l), 9) * 8;
    const r = prng(0x5eed);
    for (let level = 0; level <= 3; level++) {
      for (let n = 0; n < 40; n++) {
        for (let l = 0; l < level; l++) mem.write64(at(l), tableD(tables[l + 1]!));
        const word = rand64(r) & ~1n;
        mem.write64(at(level), word);
        const res = walk(mem, regime, va);
        expect(outcome(res), `level ${level} word 0x${word.toString(16)}`).toEqual(F('translation', 1, level));
        // The faulting descriptor was read: one read per level up to and including it.
        expect(res.reads).toBe(level + 1);
      }
    }
  });

  it('AF in a table descriptor is ignored (only leaves have an Access flag)', () => {
    // D8.3: bit[10] of a table descriptor is IGNORED; none of the table descriptors in this file set it.
    const mem = ram();
    mem.write64(RAM, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, pageD(0x5000_0000, S1_RW_ALL));
    expect(outcome(walk(mem, s1(4, 34, RAM), 0x123))).toEqual({ pa: 0x5000_0123 });
  });
});

// ===========================================================================
// Output address composition
// ===========================================================================

describe('output address composition', () => {
  it('block and page low output bits: RES0 bits below the mapping size are ignored, the VA supplies them', () => {
    // D8.3: in a block descriptor the output address is OA[47:n]; bits [n-1:12] are RES0 (and, for 16KB/64KB
    // pages, bits [13:12] / [15:12] are RES0 without FEAT_LPA). The walk takes those bits from the input address.
    const cases: Array<{ g: G; tsz: number; leafLevel: number; oa: number; junk: number }> = [
      { g: 4, tsz: 25, leafLevel: 1, oa: 0x80_4000_0000, junk: 0x3fff_f000 }, // 1 GiB block, bits [29:12]
      { g: 4, tsz: 25, leafLevel: 2, oa: 0x80_4020_0000, junk: 0x1f_f000 }, // 2 MiB block, bits [20:12]
      { g: 16, tsz: 28, leafLevel: 2, oa: 0x80_4200_0000, junk: 0x1ff_f000 }, // 32 MiB block, bits [24:12]
      { g: 64, tsz: 22, leafLevel: 2, oa: 0x80_6000_0000, junk: 0x1fff_f000 }, // 512 MiB block, bits [28:12]
      { g: 16, tsz: 28, leafLevel: 3, oa: 0x80_4000_c000, junk: 0x3000 }, // 16 KiB page, bits [13:12]
      { g: 64, tsz: 22, leafLevel: 3, oa: 0x80_4001_0000, junk: 0xf000 }, // 64 KiB page, bits [15:12]
    ];
    for (const stage of [1, 2]) {
      for (const c of cases) {
        const mem = ram();
        // Stage 1 starts at level 1 (4KB T0SZ=25) or 2 (16KB T0SZ=28, 64KB T0SZ=22); stage 2 with SL0=1
        // starts at the same levels for these T0SZ values.
        const start = c.g === 4 ? 1 : 2;
        const rootBits = 64 - c.tsz - lvlShift(c.g, start);
        const size = 2 ** lvlShift(c.g, c.leafLevel);
        const va = 3 * size + size - 8; // last 8 bytes of the 4th region: all low bits set
        const regime = stage === 1 ? s1(c.g, c.tsz, RAM) : s2(c.g, c.tsz, 1, RAM);
        const attrs = stage === 1 ? S1_RW_ALL : S2_RW;
        const leaf = c.leafLevel === 3 ? pageD : blockD;
        handMap(mem, c.g, RAM, start, rootBits, va, c.leafLevel, leaf(c.oa, attrs), bump(RAM + MiB, 2 ** GS[c.g]));
        const clean = walk(mem, regime, va);
        expect(outcome(clean)).toEqual({ pa: c.oa + size - 8 });
        handMap(mem, c.g, RAM, start, rootBits, va, c.leafLevel, leaf(c.oa + c.junk, attrs), bump(RAM + MiB, 2 ** GS[c.g]));
        expect(outcome(walk(mem, regime, va)), `stage ${stage} ${c.g}K level ${c.leafLevel}`).toEqual({ pa: c.oa + size - 8 });
      }
    }
  });

  it('next-level table addresses drop the bits below the granule (16K: [13:12], 64K: [15:12])', () => {
    // D8.3 / AArch64.NextTableBase: the next-level table address is desc[47:grainsize] : Zeros(grainsize).
    // If the walker used the low bits, it would read an all-zero word and fault.
    for (const g of [16, 64] as const) {
      for (const stage of [1, 2]) {
        const mem = ram();
        const gsz = 2 ** GS[g];
        const next = RAM + gsz;
        const junk = g === 16 ? 0x3000 : 0xf000;
        mem.write64(RAM, tableD(next + junk));
        if (stage === 1) {
          mem.write64(next, pageD(0x5000_0000, S1_RW_ALL));
          // Initial level 2: 16KB T0SZ=28, 64KB T0SZ=22.
          expect(outcome(walk(mem, s1(g, g === 16 ? 28 : 22, RAM), 0x42))).toEqual({ pa: 0x5000_0042 });
        } else {
          mem.write64(next, pageD(0x5000_0000, S2_RW));
          // Stage 2 SL0=1: initial level 2 for 16KB/64KB; 16KB T0SZ=28 (36-bit IPA), 64KB T0SZ=22 (42-bit IPA).
          expect(outcome(walk(mem, s2(g, g === 16 ? 28 : 22, 1, RAM), 0x42))).toEqual({ pa: 0x5000_0042 });
        }
      }
    }
  });
});

// ===========================================================================
// Stage 1 initial level and TxSZ
// ===========================================================================

describe('stage 1 initial lookup level from T0SZ (D8.2)', () => {
  // Arm ARM D8.2 (AArch64.S1StartLevel): startlevel = 4 - (1 + ((inputsize - grainsize - 1) DIV stride)),
  // inputsize = 64 - T0SZ, stride = grainsize - 3. Tabulated per granule for T0SZ = 16..39:
  const START: Record<G, Array<[number, number, number]>> = {
    4: [[16, 24, 0], [25, 33, 1], [34, 39, 2]], // 48..40 bits: L0; 39..31: L1; 30..25: L2
    16: [[16, 16, 0], [17, 27, 1], [28, 38, 2], [39, 39, 3]], // 48: L0; 47..37: L1; 36..26: L2; 25: L3
    64: [[16, 21, 1], [22, 34, 2], [35, 39, 3]], // 48..43: L1; 42..30: L2; 29..25: L3
  };
  const startOf = (g: G, tsz: number): number => START[g].find(([a, b]) => tsz >= a && tsz <= b)![2];

  it('the tabulated ranges agree with the Arm ARM formula', () => {
    for (const g of GRANULES) {
      for (let tsz = 16; tsz <= 39; tsz++) {
        const gs = GS[g];
        expect(startOf(g, tsz), `${g}K T0SZ=${tsz}`).toBe(4 - (1 + Math.floor((64 - tsz - gs - 1) / (gs - 3))));
      }
    }
  });

  for (const g of GRANULES) {
    it(`${g}K: every T0SZ 16..39 walks from its initial level to level 3 with 4 - start reads`, () => {
      const mem = ram(4 * MiB);
      const gsz = 2 ** GS[g];
      for (let tsz = 16; tsz <= 39; tsz++) {
        mem.zero(RAM, 2 * MiB);
        const ia = 64 - tsz;
        const start = startOf(g, tsz);
        // The initial table resolves the bits above the level's region: inputsize - levelshift(start).
        const rootBits = ia - lvlShift(g, start);
        const alloc = bump(RAM + gsz, gsz);
        const regime = s1(g, tsz, RAM);
        // Top VA of the range (every index all ones) and a VA with only its top bit set above the page.
        const vaHi = 2 ** ia - gsz + 0x18;
        const vaLo = 2 ** (ia - 1) + 0x20;
        handMap(mem, g, RAM, start, rootBits, vaHi, 3, pageD(0x5_0000_0000, S1_RW_ALL), alloc);
        handMap(mem, g, RAM, start, rootBits, vaLo, 3, pageD(0x5_0000_0000 + gsz, S1_RW_ALL), alloc);
        const rHi = walk(mem, regime, vaHi);
        expect({ ...outcome(rHi), reads: rHi.reads, level: rHi.s1Level }, `${g}K T0SZ=${tsz} hi`).toEqual({
          pa: 0x5_0000_0018,
          reads: 4 - start,
          level: 3,
        });
        const rLo = walk(mem, regime, vaLo);
        expect({ ...outcome(rLo), reads: rLo.reads }, `${g}K T0SZ=${tsz} lo`).toEqual({ pa: 0x5_0000_0000 + gsz + 0x20, reads: 4 - start });
        // A VA with a bit at or above bit[inputsize] set is outside the TTBR0 range: Translation fault, level 0,
        // before any descriptor is read (AArch64.S1Walk input-size check; FORMAT.md).
        const rOut = walk(mem, regime, 2 ** ia + 0x18);
        expect({ ...outcome(rOut), reads: rOut.reads }).toEqual({ ...F('translation', 1, 0), reads: 0 });
      }
    });
  }

  it('T0SZ / T1SZ outside 16..39 are rejected by decodeStage1 with a RegimeError', () => {
    // Without FEAT_TTST / FEAT_LVA, TxSZ must be 16..39 (input sizes 48..25 bits); other values are not a
    // configuration this model can walk, so the decoder refuses them with a clear error.
    for (const tsz of [0, 8, 15, 40, 48, 64, 16.5, -1]) {
      expect(() => s1(4, tsz, RAM), `T0SZ=${tsz}`).toThrow(RegimeError);
    }
    expect(() => s1(4, 15, RAM)).toThrow(/T0SZ/);
    expect(() => s1(4, 25, RAM, 48, { EPD1: 0, T1SZ: 12, TG1: TG1[4], TTBR1: RAM })).toThrow(RegimeError);
    expect(() => s1(4, 25, RAM, 48, { EPD1: 0, T1SZ: 40, TG1: TG1[4], TTBR1: RAM })).toThrow(/T1SZ/);
    // The boundaries themselves are accepted.
    expect(() => s1(4, 16, RAM)).not.toThrow();
    expect(() => s1(4, 39, RAM)).not.toThrow();
  });
});

// ===========================================================================
// Stage 2 initial level (VTCR.SL0) and concatenated root tables
// ===========================================================================

describe('stage 2 initial level from VTCR.SL0, with concatenated root tables (D8.2)', () => {
  // AArch64.S2StartLevel: 4KB: SL0 0/1/2 = level 2/1/0; 16KB and 64KB: SL0 0/1/2 = level 3/2/1.
  const s2Start = (g: G, sl0: number): number => (g === 4 ? 2 - sl0 : 3 - sl0);
  // AArch64.S2InconsistentSL: the initial level must resolve at least 1 bit (2 entries) and at most
  // stride + 4 bits (16 concatenated tables): 1 <= inputsize - levelshift(start) <= stride + 4. With
  // T0SZ 16..39 this gives these valid T0SZ ranges:
  const VALID: Record<G, Array<[number, number]>> = {
    4: [[30, 39], [21, 33], [16, 24]], // SL0=0 (L2): IPA 25..34; SL0=1 (L1): 31..43; SL0=2 (L0): 40..48
    16: [[35, 39], [24, 38], [16, 27]], // SL0=0 (L3): 25..29; SL0=1 (L2): 26..40; SL0=2 (L1): 37..48
    64: [[31, 39], [18, 34], [16, 21]], // SL0=0 (L3): 25..33; SL0=1 (L2): 30..46; SL0=2 (L1): 43..48
  };

  it('the tabulated ranges agree with the AArch64.S2InconsistentSL rule', () => {
    for (const g of GRANULES) {
      for (let sl0 = 0; sl0 <= 2; sl0++) {
        for (let tsz = 16; tsz <= 39; tsz++) {
          const bits = 64 - tsz - lvlShift(g, s2Start(g, sl0));
          const [lo, hi] = VALID[g][sl0]!;
          expect(bits >= 1 && bits <= GS[g] - 3 + 4, `${g}K SL0=${sl0} T0SZ=${tsz}`).toBe(tsz >= lo && tsz <= hi);
        }
      }
    }
  });

  it('4K SL0=1, T0SZ=24 (40-bit IPA): two concatenated level-1 tables; IPA bit 39 selects the second', () => {
    // Level 1 resolves IPA[39:30]: 10 bits = 1024 entries = two 4 KiB tables, contiguous from VTTBR.
    const mem = ram();
    const ipa = 0x80_4020_1abc; // IPA[39:30] = 0x201 -> entry 513, in the second table (VTTBR + 0x1000 + 8)
    mem.write64(RAM + 513 * 8, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + idx(ipa, 21, 9) * 8, tableD(RAM + 0x3000));
    mem.write64(RAM + 0x3000 + idx(ipa, 12, 9) * 8, pageD(0x7000_1000, S2_RW));
    const r = walk(mem, s2(4, 24, 1, RAM), ipa);
    expect(outcome(r)).toEqual({ pa: 0x7000_1abc });
    expect([r.s2Level, r.reads]).toEqual([3, 3]);
    // Entry 1 of the first table (IPA bit 39 clear) is a different descriptor: here invalid.
    expect(outcome(walk(mem, s2(4, 24, 1, RAM), 0x4020_1abc))).toEqual(F('translation', 2, 1, false, 0x4020_1abc));
  });

  it('4K SL0=0, T0SZ=30 (34-bit IPA): sixteen concatenated level-2 tables; the top IPA uses entry 8191', () => {
    // Level 2 resolves IPA[33:21]: 13 bits = 16 tables of 512 entries (the maximum, stride + 4 bits).
    const mem = ram();
    const ipa = 0x3_ffff_f123; // IPA[33:21] = 0x1fff -> VTTBR + 0xfff8
    mem.write64(RAM + 0xfff8, tableD(RAM + 0x10000));
    mem.write64(RAM + 0x10000 + 0x1ff * 8, pageD(0x6543_2000, S2_RW));
    const r = walk(mem, s2(4, 30, 0, RAM), ipa);
    expect(outcome(r)).toEqual({ pa: 0x6543_2123 });
    expect([r.s2Level, r.reads]).toEqual([3, 2]);
  });

  for (const g of GRANULES) {
    it(`${g}K: every SL0 x T0SZ: valid combinations walk from the SL0 level (concatenated roots included), the rest are rejected`, () => {
      const mem = ram(8 * MiB);
      const gsz = 2 ** GS[g];
      const concatSeen = new Set<number>();
      for (let sl0 = 0; sl0 <= 2; sl0++) {
        for (let tsz = 16; tsz <= 39; tsz++) {
          const [lo, hi] = VALID[g][sl0]!;
          if (tsz < lo || tsz > hi) {
            // Inconsistent SL0/T0SZ: the decoder refuses it (the Arm ARM makes such a walk fault or be
            // CONSTRAINED UNPREDICTABLE; this model rejects the configuration up front).
            expect(() => s2(g, tsz, sl0, RAM), `${g}K SL0=${sl0} T0SZ=${tsz}`).toThrow(RegimeError);
            continue;
          }
          mem.zero(RAM, 4 * MiB);
          const ia = 64 - tsz;
          const start = s2Start(g, sl0);
          const rootBits = ia - lvlShift(g, start);
          const rootBytes = 2 ** (rootBits + 3);
          // Concatenated tables at the initial level: 2^(rootBits - stride) of them when rootBits > stride.
          concatSeen.add(Math.max(1, 2 ** (rootBits - (GS[g] - 3))));
          const alloc = bump(RAM + Math.max(rootBytes, gsz), gsz);
          const regime = s2(g, tsz, sl0, RAM);
          const ipaHi = 2 ** ia - gsz + 0x18; // root index all ones: the last entry of the last table
          const ipaLo = 2 ** (ia - 1) + 0x20; // root index 2^(rootBits-1): the first entry of the upper half
          handMap(mem, g, RAM, start, rootBits, ipaHi, 3, pageD(0x5_0000_0000, S2_RW), alloc);
          handMap(mem, g, RAM, start, rootBits, ipaLo, 3, pageD(0x5_0000_0000 + gsz, S2_RW), alloc);
          // The root descriptor for ipaHi is the last word of the whole (possibly concatenated) root.
          expect(mem.read64(RAM + rootBytes - 8) & 3n).toBe(3n);
          const rHi = walk(mem, regime, ipaHi);
          expect({ ...outcome(rHi), reads: rHi.reads, level: rHi.s2Level }, `${g}K SL0=${sl0} T0SZ=${tsz}`).toEqual({
            pa: 0x5_0000_0018,
            reads: 4 - start,
            level: 3,
          });
          const rLo = walk(mem, regime, ipaLo);
          expect({ ...outcome(rLo), reads: rLo.reads }).toEqual({ pa: 0x5_0000_0000 + gsz + 0x20, reads: 4 - start });
          // An IPA at or above 2^(64 - T0SZ): Translation fault, stage 2, level 0 (FORMAT.md, AArch64.S2Walk).
          // With a 48-bit IPA space that input is 2^48, which stage 1 (off) already refuses: with stage 1
          // disabled, input bits at or above PAMax are a stage-1 Address size fault, level 0
          // (AArch64.TranslateAddressS1Off).
          expect(outcome(walk(mem, regime, 2 ** ia))).toEqual(ia < 48 ? F('translation', 2, 0, false, 2 ** ia) : F('address-size', 1, 0));
        }
      }
      // Both 2 and 16 concatenated tables occur for every granule.
      expect(concatSeen.has(2) && concatSeen.has(16)).toBe(true);
    });
  }

  it('SL0 = 3 and out-of-range stage-2 T0SZ are rejected with a RegimeError', () => {
    for (const g of GRANULES) expect(() => s2(g, 24, 3, RAM)).toThrow(RegimeError);
    expect(() => s2(4, 15, 2, RAM)).toThrow(RegimeError);
    expect(() => s2(4, 40, 0, RAM)).toThrow(RegimeError);
    // Named inconsistent combinations: 4KB SL0=0 (L2) with a 35-bit IPA needs 14 bits at L2 (> 13);
    // 4KB SL0=2 (L0) with a 39-bit IPA resolves 0 bits at L0; 64KB SL0=2 (L1) with a 42-bit IPA, likewise.
    expect(() => s2(4, 29, 0, RAM)).toThrow(/SL0/);
    expect(() => s2(4, 25, 2, RAM)).toThrow(RegimeError);
    expect(() => s2(64, 22, 2, RAM)).toThrow(RegimeError);
  });
});

// ===========================================================================
// Stage 2 descriptor kinds
// ===========================================================================

describe('stage 2 descriptor kinds', () => {
  it('blocks at allowed levels: 4K 1 GiB (L1) and 2 MiB (L2), 16K 32 MiB (L2), 64K 512 MiB (L2)', () => {
    const mem = ram();
    // 4KB, T0SZ=24 SL0=1: initial level 1 (two concatenated tables; IPA < 2^39 stays in the first).
    mem.write64(RAM + 1 * 8, blockD(0x2_4000_0000, S2_RW));
    let r = walk(mem, s2(4, 24, 1, RAM), 0x7654_3210);
    expect(outcome(r)).toEqual({ pa: 0x2_4000_0000 + 0x3654_3210 });
    expect([r.s2Level, r.sizeShift]).toEqual([1, 30]);
    mem.write64(RAM + 2 * 8, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + 0x1ff * 8, blockD(0x2_4060_0000, S2_RW));
    r = walk(mem, s2(4, 24, 1, RAM), 0xbfe1_2345);
    expect(outcome(r)).toEqual({ pa: 0x2_4060_0000 + 0x1_2345 });
    expect([r.s2Level, r.sizeShift]).toEqual([2, 21]);
    // 16KB, T0SZ=28 SL0=1: initial level 2 (IPA[35:25]).
    mem.zero(RAM, MiB);
    mem.write64(RAM + 3 * 8, blockD(0x2_4200_0000, S2_RW));
    r = walk(mem, s2(16, 28, 1, RAM), 0x7ab_cdef);
    expect(outcome(r)).toEqual({ pa: 0x2_4200_0000 + 0x1ab_cdef });
    expect([r.s2Level, r.sizeShift]).toEqual([2, 25]);
    // 64KB, T0SZ=22 SL0=1: initial level 2 (IPA[41:29]).
    mem.zero(RAM, MiB);
    mem.write64(RAM + 5 * 8, blockD(0x3_e000_0000, S2_RW));
    r = walk(mem, s2(64, 22, 1, RAM), 0xbfed_cba9);
    expect(outcome(r)).toEqual({ pa: 0x3_e000_0000 + 0x1fed_cba9 });
    expect([r.s2Level, r.sizeShift]).toEqual([2, 29]);
  });

  it('blocks at disallowed levels and 0b01 at level 3 are stage-2 Translation faults at that level', () => {
    const mem = ram();
    // 4KB level 0 (SL0=2, T0SZ=16).
    mem.write64(RAM, blockD(0, S2_RW));
    expect(outcome(walk(mem, s2(4, 16, 2, RAM), 0x1000))).toEqual(F('translation', 2, 0, false, 0x1000));
    // 16KB level 1 (SL0=2, T0SZ=16: two concatenated level-1 tables).
    expect(outcome(walk(mem, s2(16, 16, 2, RAM), 0x1000))).toEqual(F('translation', 2, 1, false, 0x1000));
    // 64KB level 1 (SL0=2, T0SZ=16).
    expect(outcome(walk(mem, s2(64, 16, 2, RAM), 0x1000))).toEqual(F('translation', 2, 1, false, 0x1000));
    // 0b01 at level 3 (16KB SL0=0, T0SZ=35: initial level 3, 16 concatenated tables).
    mem.zero(RAM, MiB);
    mem.write64(RAM + 8, blockD(0x5000_0000, S2_RW));
    expect(outcome(walk(mem, s2(16, 35, 0, RAM), 0x4008))).toEqual(F('translation', 2, 3, false, 0x4008));
    mem.write64(RAM + 8, pageD(0x5000_0000, S2_RW));
    expect(outcome(walk(mem, s2(16, 35, 0, RAM), 0x4008))).toEqual({ pa: 0x5000_0008 });
  });

  it('invalid stage-2 descriptors with random other bits are Translation faults at their level', () => {
    const mem = ram();
    const regime = s2(4, 16, 2, RAM); // 4 levels
    const ipa = 0x0000_8123_4567_8000;
    const tables = [RAM, RAM + 0x1000, RAM + 0x2000, RAM + 0x3000];
    const at = (l: number) => tables[l]! + idx(ipa, lvlShift(4, l), 9) * 8;
    const r = prng(0xbeef);
    for (let level = 0; level <= 3; level++) {
      for (let n = 0; n < 25; n++) {
        for (let l = 0; l < level; l++) mem.write64(at(l), tableD(tables[l + 1]!));
        mem.write64(at(level), rand64(r) & ~1n);
        expect(outcome(walk(mem, regime, ipa))).toEqual(F('translation', 2, level, false, ipa));
      }
    }
  });
});

// ===========================================================================
// Access flag
// ===========================================================================

describe('Access flag (D8.4 "Memory access control", Access flag; hardware AF update off)', () => {
  it('stage 1: AF=0 in a block or page is an Access flag fault at the leaf level', () => {
    // AArch64.S1Walk / AArch64.CheckS1Permission order: a valid leaf with AF=0 and no hardware update
    // (TCR.HA = 0) takes an Access flag fault at the level of the leaf.
    const mem = ram();
    const regime = s1(4, 25, RAM); // initial level 1
    mem.write64(RAM + 0 * 8, blockD(0x8000_0000, AP1)); // 1 GiB block, AF=0
    expect(outcome(walk(mem, regime, 0x1000))).toEqual(F('access-flag', 1, 1));
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, blockD(0x8000_0000, AP1)); // 2 MiB block, AF=0
    expect(outcome(walk(mem, regime, 0x4000_1000))).toEqual(F('access-flag', 1, 2));
    mem.write64(RAM + 0x1000 + 8, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + 8, pageD(0x8000_0000, AP1)); // page, AF=0
    expect(outcome(walk(mem, regime, 0x4020_1000))).toEqual(F('access-flag', 1, 3));
    // The access kind does not matter (reads, writes, EL0, execute all take it).
    for (const acc of [ACC_WRITE, ACC_EXEC, ACC_READ | ACC_UNPRIV]) {
      expect(outcome(walk(mem, regime, 0x4020_1000, acc))).toEqual(F('access-flag', 1, 3));
    }
    mem.write64(RAM + 0x2000 + 8, pageD(0x8000_0000, AP1 | AF));
    expect(outcome(walk(mem, regime, 0x4020_1000))).toEqual({ pa: 0x8000_0000 });
  });

  it('stage 2: AF=0 in a block or page is a stage-2 Access flag fault at the leaf level', () => {
    const mem = ram();
    const regime = s2(4, 32, 1, RAM); // 32-bit IPA, initial level 1 (4 entries)
    mem.write64(RAM + 0 * 8, blockD(0x8000_0000, S2AP_R | S2AP_W));
    expect(outcome(walk(mem, regime, 0x1000))).toEqual(F('access-flag', 2, 1, false, 0x1000));
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, blockD(0x8000_0000, S2AP_R | S2AP_W));
    expect(outcome(walk(mem, regime, 0x4000_1000))).toEqual(F('access-flag', 2, 2, false, 0x4000_1000));
    mem.write64(RAM + 0x1000 + 8, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + 8, pageD(0x8000_0000, S2AP_R | S2AP_W));
    expect(outcome(walk(mem, regime, 0x4020_1000, ACC_WRITE))).toEqual(F('access-flag', 2, 3, false, 0x4020_1000));
  });
});

// ===========================================================================
// Stage 1 permissions
// ===========================================================================

/**
 * A 4K stage-1 regime, T0SZ=25 (39-bit VA, initial level 1), with the L1 and
 * L2 table descriptors and the L3 page for VA 0x4000_5123 written by hand:
 * L1 = VA[38:30] = 1, L2 = VA[29:21] = 0, L3 = VA[20:12] = 5.
 */
const PVA = 0x4000_5123;
const PPA = 0x7654_3123;
function permFixture(mem: PhysMem, leaf: bigint, l1Attrs = 0n, l2Attrs = 0n): void {
  mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000, l1Attrs));
  mem.write64(RAM + 0x1000 + 0 * 8, tableD(RAM + 0x2000, l2Attrs));
  mem.write64(RAM + 0x2000 + 5 * 8, pageD(0x7654_3000, leaf));
}

const EL1R = ACC_READ, EL1W = ACC_WRITE, EL1X = ACC_EXEC;
const EL0R = ACC_READ | ACC_UNPRIV, EL0W = ACC_WRITE | ACC_UNPRIV, EL0X = ACC_EXEC | ACC_UNPRIV;

describe('stage 1 permissions (D8.4 "Memory access control"; AArch64.S1DirectBasePermissions)', () => {
  it('AP[2:1], all four encodings x {read, write} x {EL1, EL0}', () => {
    // D8.4 "Memory access control", data access permissions (AP[2:1] for the EL1&0 regime):
    //   00: EL1 RW, EL0 none    01: EL1 RW, EL0 RW    10: EL1 RO, EL0 none    11: EL1 RO, EL0 RO
    // A denied access is a stage-1 Permission fault at the leaf's level (3 here).
    const table: Array<[bigint, Record<string, boolean>]> = [
      [0n, { EL1R: true, EL1W: true, EL0R: false, EL0W: false }],
      [AP1, { EL1R: true, EL1W: true, EL0R: true, EL0W: true }],
      [AP2, { EL1R: true, EL1W: false, EL0R: false, EL0W: false }],
      [AP2 | AP1, { EL1R: true, EL1W: false, EL0R: true, EL0W: false }],
    ];
    const accs: Record<string, number> = { EL1R, EL1W, EL0R, EL0W };
    const mem = ram();
    const regime = s1(4, 25, RAM);
    for (const [ap, allowed] of table) {
      permFixture(mem, AF | ap);
      for (const [name, acc] of Object.entries(accs)) {
        const want = allowed[name] ? { pa: PPA } : F('permission', 1, 3);
        expect(outcome(walk(mem, regime, PVA, acc)), `AP=${ap >> 6n} ${name}`).toEqual(want);
      }
    }
  });

  it('effective stage-1 permission bits for each AP[2:1] (UXN = PXN = 0)', () => {
    // AArch64.S1DirectBasePermissions: px = NOT(pxn OR uw); ux = NOT(uxn) (EL0 execute does not depend on
    // AP[1] in AArch64: "execute-only" memory, AP[2:1] = 0b00 with UXN = 0, is executable at EL0).
    const mem = ram();
    const regime = s1(4, 25, RAM);
    const want: Array<[bigint, number]> = [
      [0n, PERM_PR | PERM_PW | PERM_PX | PERM_UX],
      [AP1, PERM_PR | PERM_PW | PERM_UR | PERM_UW | PERM_UX], // writable at EL0 -> not executable at EL1
      [AP2, PERM_PR | PERM_PX | PERM_UX],
      [AP2 | AP1, PERM_PR | PERM_UR | PERM_PX | PERM_UX],
    ];
    for (const [ap, perm] of want) {
      permFixture(mem, AF | ap);
      expect(walk(mem, regime, PVA).perm, `AP=${ap >> 6n}`).toBe(perm);
    }
  });

  it('permission faults report the level of the leaf (block at level 2)', () => {
    const mem = ram();
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, blockD(0x7660_0000, AF | AP2)); // 2 MiB read-only, EL1 only
    const regime = s1(4, 25, RAM);
    expect(outcome(walk(mem, regime, 0x4000_0010, EL1W))).toEqual(F('permission', 1, 2));
    expect(outcome(walk(mem, regime, 0x4000_0010, EL0R))).toEqual(F('permission', 1, 2));
    expect(outcome(walk(mem, regime, 0x4000_0010, EL1R))).toEqual({ pa: 0x7660_0010 });
  });

  it('APTable[0] removes EL0 access at every later level; APTable[1] removes write access', () => {
    // D8.4 hierarchical permissions (AArch64.S1DirectBasePermissions, ap_table): APTable[0] = 1: no EL0 access at subsequent levels; APTable[1] = 1: no
    // write access at any EL at subsequent levels. They only restrict, never grant. Leaf here: AP = 0b01 (RW all).
    const mem = ram();
    const regime = s1(4, 25, RAM);
    const check = (l1: bigint, l2: bigint, allowed: Record<string, boolean>, label: string) => {
      permFixture(mem, S1_RW_ALL, l1, l2);
      for (const [name, acc] of Object.entries({ EL1R, EL1W, EL0R, EL0W })) {
        expect(outcome(walk(mem, regime, PVA, acc)), `${label} ${name}`).toEqual(allowed[name] ? { pa: PPA } : F('permission', 1, 3));
      }
    };
    check(0n, 0n, { EL1R: true, EL1W: true, EL0R: true, EL0W: true }, 'none');
    check(APTABLE0, 0n, { EL1R: true, EL1W: true, EL0R: false, EL0W: false }, 'APTable[0] at L1');
    check(0n, APTABLE0, { EL1R: true, EL1W: true, EL0R: false, EL0W: false }, 'APTable[0] at L2');
    check(APTABLE1, 0n, { EL1R: true, EL1W: false, EL0R: true, EL0W: false }, 'APTable[1] at L1');
    check(0n, APTABLE1, { EL1R: true, EL1W: false, EL0R: true, EL0W: false }, 'APTable[1] at L2');
    // Limits from different levels accumulate.
    check(APTABLE0, APTABLE1, { EL1R: true, EL1W: false, EL0R: false, EL0W: false }, 'APTable[0] L1 + [1] L2');
    // APTable = 0 does not grant what AP[2:1] = 0b10 (EL1 read-only) withholds.
    permFixture(mem, AF | AP2, 0n, 0n);
    expect(outcome(walk(mem, regime, PVA, EL0R))).toEqual(F('permission', 1, 3));
  });

  it('PXN / UXN and PXNTable / UXNTable for instruction fetches at EL1 and EL0', () => {
    // D8.4 instruction execution permissions (AArch64.S1DirectBasePermissions): PXN forbids EL1 execution, UXN EL0 execution; PXNTable /
    // UXNTable do the same for every later level. Data accesses are not affected. Leaf AP = 0b11 (RO all), so
    // the "writable at EL0" rule does not interfere.
    const mem = ram();
    const regime = s1(4, 25, RAM);
    const leaf = AF | AP2 | AP1;
    const exec = (l1: bigint, l2: bigint, leafXn: bigint) => {
      permFixture(mem, leaf | leafXn, l1, l2);
      return [EL1X, EL0X, EL1R, EL0R].map((acc) => walk(mem, regime, PVA, acc).ok);
    };
    //                                          EL1X   EL0X   EL1R  EL0R
    expect(exec(0n, 0n, 0n)).toEqual([true, true, true, true]);
    expect(exec(0n, 0n, PXN)).toEqual([false, true, true, true]);
    expect(exec(0n, 0n, UXN)).toEqual([true, false, true, true]);
    expect(exec(0n, 0n, PXN | UXN)).toEqual([false, false, true, true]);
    expect(exec(PXNTABLE, 0n, 0n)).toEqual([false, true, true, true]);
    expect(exec(0n, PXNTABLE, 0n)).toEqual([false, true, true, true]);
    expect(exec(UXNTABLE, 0n, 0n)).toEqual([true, false, true, true]);
    expect(exec(0n, UXNTABLE, 0n)).toEqual([true, false, true, true]);
    expect(exec(PXNTABLE, UXNTABLE, 0n)).toEqual([false, false, true, true]);
    // The fault is a stage-1 Permission fault at the leaf level.
    permFixture(mem, leaf | UXN);
    expect(outcome(walk(mem, regime, PVA, EL0X))).toEqual(F('permission', 1, 3));
    expect(walk(mem, regime, PVA).perm).toBe(PERM_PR | PERM_UR | PERM_PX);
  });

  it('EL0 may execute memory it cannot read (AP[2:1] = 0b00 or APTable[0], UXN = 0)', () => {
    // AArch64.S1DirectBasePermissions: ux = NOT(s1perms.uxn OR s1perms.uxn_table), independent of AP[1] and
    // APTable[0] (those restrict data accesses only). This is the architecture's execute-only memory
    // (Linux arm64 PAGE_EXECONLY = AP[2:1] 0b10 with UXN = 0).
    const mem = ram();
    const regime = s1(4, 25, RAM);
    for (const [leaf, l1] of [
      [AF, 0n],
      [AF | AP2, 0n],
      [AF | AP2 | AP1, APTABLE0],
    ] as const) {
      permFixture(mem, leaf, l1);
      expect(outcome(walk(mem, regime, PVA, EL0X))).toEqual({ pa: PPA });
      expect(outcome(walk(mem, regime, PVA, EL0R))).toEqual(F('permission', 1, 3));
    }
  });

  it('EL1 cannot execute memory that is writable at EL0', () => {
    // AArch64.S1DirectBasePermissions: px = NOT(pxn OR pxn_table OR uw), with uw after the hierarchical
    // APTable limits (Armv8.0 folds APTable into AP before AArch64.CheckPermission: priv_xn includes user_w).
    const mem = ram();
    const regime = s1(4, 25, RAM);
    permFixture(mem, AF | AP1); // EL0 RW
    expect(outcome(walk(mem, regime, PVA, EL1X))).toEqual(F('permission', 1, 3));
    expect(outcome(walk(mem, regime, PVA, EL0X))).toEqual({ pa: PPA }); // EL0 itself may execute it (no WXN)
    permFixture(mem, AF | AP2 | AP1); // EL0 read-only
    expect(outcome(walk(mem, regime, PVA, EL1X))).toEqual({ pa: PPA });
    permFixture(mem, AF | AP1, APTABLE0); // APTable[0]: no longer EL0-writable
    expect(outcome(walk(mem, regime, PVA, EL1X))).toEqual({ pa: PPA });
    permFixture(mem, AF | AP1, 0n, APTABLE1); // APTable[1]: no longer writable at all
    expect(outcome(walk(mem, regime, PVA, EL1X))).toEqual({ pa: PPA });
  });

  it('SCTLR.WXN makes writable memory execute-never (each EL by its own write permission)', () => {
    // AArch64.S1DirectBasePermissions / SCTLR_EL1.WXN: with WXN, px = px AND NOT pw; ux = ux AND NOT uw.
    const mem = ram();
    const wxn = s1(4, 25, RAM, 48, { WXN: 1 });
    const plain = s1(4, 25, RAM);
    const run = (leaf: bigint, l1 = 0n) => {
      permFixture(mem, leaf, l1);
      return [EL1X, EL0X].map((acc) => [walk(mem, plain, PVA, acc).ok, walk(mem, wxn, PVA, acc).ok]);
    };
    //                                     EL1X [plain, WXN]   EL0X [plain, WXN]
    expect(run(AF)).toEqual([[true, false], [true, true]]); // EL1 RW: EL1 loses X; EL0 cannot write -> keeps X
    expect(run(AF | AP1)).toEqual([[false, false], [true, false]]); // RW all: EL0 loses X too
    expect(run(AF | AP2)).toEqual([[true, true], [true, true]]); // read-only: WXN changes nothing
    expect(run(AF | AP2 | AP1)).toEqual([[true, true], [true, true]]);
    expect(run(AF, APTABLE1)).toEqual([[true, true], [true, true]]); // APTable[1] made it read-only
    // Data accesses are unaffected by WXN.
    permFixture(mem, AF | AP1);
    expect(outcome(walk(mem, wxn, PVA, EL0W))).toEqual({ pa: PPA });
    expect(walk(mem, wxn, PVA).perm).toBe(PERM_PR | PERM_PW | PERM_UR | PERM_UW);
    expect(outcome(walk(mem, wxn, PVA, EL0X))).toEqual(F('permission', 1, 3));
  });
});

// ===========================================================================
// Stage 2 permissions
// ===========================================================================

describe('stage 2 permissions (D8.4; AArch64.CheckS2Permission)', () => {
  it('S2AP none / R / W / RW x {read, write}, at EL1 and EL0 alike', () => {
    // S2AP[0] (bit 6) grants read, S2AP[1] (bit 7) grants write; stage 2 has no EL distinction.
    // A denied access is a stage-2 Permission fault at the leaf level, reporting the IPA.
    const mem = ram();
    const regime = s2(4, 32, 1, RAM); // initial level 1
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, tableD(RAM + 0x2000));
    const ipa = 0x4000_3456;
    const rows: Array<[bigint, boolean, boolean, number]> = [
      [0n, false, false, 0],
      [S2AP_R, true, false, PERM_PR | PERM_UR],
      [S2AP_W, false, true, PERM_PW | PERM_UW],
      [S2AP_R | S2AP_W, true, true, PERM_PR | PERM_UR | PERM_PW | PERM_UW],
    ];
    for (const [s2ap, r, w, perm] of rows) {
      mem.write64(RAM + 0x2000 + 3 * 8, pageD(0x9000_0000, AF | s2ap));
      for (const el0 of [0, ACC_UNPRIV]) {
        expect(outcome(walk(mem, regime, ipa, ACC_READ | el0))).toEqual(r ? { pa: 0x9000_0456 } : F('permission', 2, 3, false, ipa));
        expect(outcome(walk(mem, regime, ipa, ACC_WRITE | el0))).toEqual(w ? { pa: 0x9000_0456 } : F('permission', 2, 3, false, ipa));
      }
      // XN = 0: executable at both ELs (an instruction fetch checks only XN at stage 2).
      expect(walk(mem, regime, ipa, ACC_EXEC).perm).toBe(perm | PERM_PX | PERM_UX);
    }
  });

  it('stage-2 XN forbids instruction fetches at EL1 and EL0; S2AP does not gate them', () => {
    // AArch64.CheckS2Permission (Armv8.0, single XN bit): for an instruction fetch, fail = xn (S2AP is not
    // consulted); XN applies to both ELs.
    const mem = ram();
    const regime = s2(4, 32, 1, RAM);
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, blockD(0x9000_0000, AF | S2AP_R | XN)); // 2 MiB, read-only, XN
    expect(outcome(walk(mem, regime, 0x4000_0040, EL1X))).toEqual(F('permission', 2, 2, false, 0x4000_0040));
    expect(outcome(walk(mem, regime, 0x4000_0040, EL0X))).toEqual(F('permission', 2, 2, false, 0x4000_0040));
    expect(outcome(walk(mem, regime, 0x4000_0040, EL0R))).toEqual({ pa: 0x9000_0040 });
    mem.write64(RAM + 0x1000, blockD(0x9000_0000, AF)); // S2AP = 0b00, XN = 0
    expect(outcome(walk(mem, regime, 0x4000_0040, EL1X))).toEqual({ pa: 0x9000_0040 });
    expect(outcome(walk(mem, regime, 0x4000_0040, EL1R))).toEqual(F('permission', 2, 2, false, 0x4000_0040));
  });
});

// ===========================================================================
// Address size faults
// ===========================================================================

describe('Address size faults (AArch64.S1Walk / AArch64.S2Walk, AArch64.OAOutOfRange)', () => {
  it('stage 1: TTBR0 at or above 2^IPS is an Address size fault at level 0, whatever the initial level', () => {
    // The TTBR base is checked against the output size before the first lookup, reported at level 0.
    const mem = ram();
    for (const [tsz, label] of [[16, 'start L0'], [25, 'start L1'], [34, 'start L2']] as const) {
      const r = walk(mem, s1(4, tsz, 2 ** 32, 32), 0x1000);
      expect({ ...outcome(r), reads: r.reads }, label).toEqual({ ...F('address-size', 1, 0), reads: 0 });
    }
    expect(outcome(walk(mem, s1(64, 22, 0x100_0000_0000, 40), 0x1000))).toEqual(F('address-size', 1, 0));
    // Just below 2^IPS is fine (here it points at RAM that reads as an invalid descriptor).
    expect(outcome(walk(mem, s1(4, 34, RAM, 32), 0x1000))).toEqual(F('translation', 1, 2));
  });

  it('stage 2: VTTBR at or above 2^PS is a stage-2 Address size fault at level 0', () => {
    const mem = ram();
    // 4KB SL0=1 (initial level 1), 32-bit IPA, PS = 32 bits, VTTBR = 2^32.
    const r = walk(mem, s2(4, 32, 1, 2 ** 32, 32), 0x1234);
    expect({ ...outcome(r), reads: r.reads }).toEqual({ ...F('address-size', 2, 0, false, 0x1234), reads: 0 });
    // 16KB SL0=0 (initial level 3), PS = 36.
    expect(outcome(walk(mem, s2(16, 35, 0, 2 ** 36 + 0x4000, 36), 0x1234))).toEqual(F('address-size', 2, 0, false, 0x1234));
  });

  it('a table descriptor whose next-level address is at or above 2^PS faults at that descriptor\'s level', () => {
    // AArch64.S1Walk / S2Walk: a table descriptor's address is checked when it is read (level of the table
    // descriptor), not when the next level is fetched.
    const mem = ram();
    const va = 0x0000_00ab_cdef_1000; // < 2^40
    const at = (l: number, base: number) => base + idx(va, lvlShift(4, l), 9) * 8;
    for (const stage of [1, 2]) {
      for (let level = 0; level <= 2; level++) {
        mem.zero(RAM, MiB);
        const tables = [RAM, RAM + 0x1000, RAM + 0x2000, RAM + 0x3000];
        for (let l = 0; l < level; l++) mem.write64(at(l, tables[l]!), tableD(tables[l + 1]!));
        mem.write64(at(level, tables[level]!), tableD(2 ** 40 + RAM)); // bit 40 set, PS = 40
        // 40-bit input (T0SZ=24, initial level 0 for both stages) with a 40-bit output size.
        const regime = stage === 1 ? s1(4, 24, RAM, 40) : s2(4, 24, 2, RAM, 40);
        const r = walk(mem, regime, va);
        expect(outcome(r), `stage ${stage} level ${level}`).toEqual(F('address-size', stage, level, false, stage === 2 ? va : -1));
        expect(r.reads).toBe(level + 1);
      }
    }
  });

  it('a block or page whose output address is at or above 2^PS faults at the leaf level (before AF)', () => {
    // AArch64.S1Walk: the output address range check precedes the Access flag check, so AF=0 does not hide it.
    const mem = ram();
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000 + 1 * 8, blockD(2 ** 40 + 0x20_0000, S1_RW_ALL)); // 2 MiB block, OA bit 40
    mem.write64(RAM + 0x1000 + 2 * 8, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + 0 * 8, pageD(2 ** 40, S1_RW_ALL));
    mem.write64(RAM + 0x2000 + 1 * 8, pageD(2 ** 40, AP1)); // AF=0 as well
    mem.write64(RAM + 0x2000 + 2 * 8, pageD(2 ** 40 - 0x1000, S1_RW_ALL)); // the last page below 2^40
    const regime = s1(4, 25, RAM, 40);
    expect(outcome(walk(mem, regime, 0x4020_0000))).toEqual(F('address-size', 1, 2));
    expect(outcome(walk(mem, regime, 0x4040_0000))).toEqual(F('address-size', 1, 3));
    expect(outcome(walk(mem, regime, 0x4040_1000))).toEqual(F('address-size', 1, 3));
    expect(outcome(walk(mem, regime, 0x4040_2fff))).toEqual({ pa: 2 ** 40 - 1 });
    // Stage 2, same tables reinterpreted (only the leaf attributes matter to the check's order).
    mem.write64(RAM + 0x2000 + 0 * 8, pageD(2 ** 40, S2_RW));
    expect(outcome(walk(mem, s2(4, 25, 1, RAM, 40), 0x4040_0000))).toEqual(F('address-size', 2, 3, false, 0x4040_0000));
  });

  it('IPS / PS variants 32, 36, 40, 42, 44, 48: the last page below 2^PS translates, 2^PS faults', () => {
    const mem = ram();
    for (const ps of [32, 36, 40, 42, 44, 48]) {
      for (const stage of [1, 2]) {
        mem.zero(RAM, MiB);
        // 4KB, initial level 1 (stage 1 T0SZ=25; stage 2 T0SZ=32 SL0=1, an IPA no wider than any PS),
        // VA/IPA 0x40_0000 + page n: L1 index 0, L2 index 2, L3 index n.
        mem.write64(RAM, tableD(RAM + 0x1000));
        mem.write64(RAM + 0x1000 + 2 * 8, tableD(RAM + 0x2000));
        const leafAttrs = stage === 1 ? S1_RW_ALL : S2_RW;
        mem.write64(RAM + 0x2000 + 0 * 8, pageD(2 ** ps - 0x1000, leafAttrs));
        if (ps < 48) {
          mem.write64(RAM + 0x2000 + 1 * 8, pageD(2 ** ps, leafAttrs));
          mem.write64(RAM + 0x1000 + 3 * 8, tableD(2 ** ps));
        }
        const regime = stage === 1 ? s1(4, 25, RAM, ps) : s2(4, 32, 1, RAM, ps);
        const f = (ipa: number) => (stage === 2 ? ipa : -1);
        expect(outcome(walk(mem, regime, 0x40_0abc)), `ps ${ps} stage ${stage}`).toEqual({ pa: 2 ** ps - 0x1000 + 0xabc });
        if (ps < 48) {
          expect(outcome(walk(mem, regime, 0x40_1abc))).toEqual(F('address-size', stage, 3, false, f(0x40_1abc)));
          expect(outcome(walk(mem, regime, 0x60_0abc))).toEqual(F('address-size', stage, 2, false, f(0x60_0abc)));
          const high = stage === 1 ? s1(4, 25, 2 ** ps, ps) : s2(4, 32, 1, 2 ** ps, ps);
          expect(outcome(walk(mem, high, 0x40_0abc))).toEqual(F('address-size', stage, 0, false, f(0x40_0abc)));
        }
      }
    }
  });

  it('IPS encodings above PAMax (0b110, 0b111) behave as PAMax = 48 bits', () => {
    // D13.2 TCR_EL1.IPS: a value larger than the implemented PA size is treated as the implemented size.
    const mem = ram();
    mem.write64(RAM, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, pageD(0xffff_ffff_f000, S1_RW_ALL));
    for (const ips of [0b110, 0b111]) {
      const regime = decodeStage1({ T0SZ: 34, TG0: TG0[4], IPS: ips, TTBR0: RAM });
      expect(outcome(walk(mem, regime, 0x10))).toEqual({ pa: 0xffff_ffff_f010 });
    }
  });
});

// ===========================================================================
// Translation faults from the input address and the TTBR halves
// ===========================================================================

describe('Translation faults from the input address range and TCR.EPDn', () => {
  it('a VA beyond 2^(64-T0SZ) faults at stage 1 level 0 even when the walk starts at level 1 or 2', () => {
    const mem = ram();
    mem.write64(RAM, tableD(RAM + 0x1000)); // would be followed if the VA were not rejected first
    for (const tsz of [25, 34]) {
      const r = walk(mem, s1(4, tsz, RAM), 2 ** (64 - tsz));
      expect({ ...outcome(r), reads: r.reads }).toEqual({ ...F('translation', 1, 0), reads: 0 });
    }
  });

  it('TTBR1 half: EPD1=1 gives a level-0 Translation fault; EPD1=0 walks TTBR1 with a negative va', () => {
    const mem = ram();
    const TTB0 = RAM, TTB1 = RAM + 0x10000;
    const f: Stage1Fields = { T0SZ: 16, TG0: TG0[4], IPS: PS[48]!, TTBR0: TTB0, T1SZ: 16, TG1: TG1[4], TTBR1: TTB1 };
    // VA 0xffff_ffff_ffff_f234 (passed as -0xdcc): TTBR1 half, input = VA - (2^64 - 2^48), all indices 511.
    const va = -0x1000 + 0x234;
    mem.write64(TTB1 + 511 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000 + 511 * 8, tableD(RAM + 0x2000));
    mem.write64(RAM + 0x2000 + 511 * 8, tableD(RAM + 0x3000));
    mem.write64(RAM + 0x3000 + 511 * 8, pageD(0x4567_8000, S1_RW_ALL));
    // TCR.EPD1 = 1: "a TLB miss on a translation using TTBR1 generates a Translation fault" (level 0).
    const off = walk(mem, decodeStage1({ ...f, EPD1: 1 }), va);
    expect({ ...outcome(off), reads: off.reads }).toEqual({ ...F('translation', 1, 0), reads: 0 });
    // decodeStage1 leaves the TTBR1 half off (EPD1 = 1) unless asked for.
    expect(outcome(walk(mem, decodeStage1({ T0SZ: 16, TG0: TG0[4], IPS: PS[48]!, TTBR0: TTB0 }), va))).toEqual(F('translation', 1, 0));
    const on = decodeStage1({ ...f, EPD1: 0 });
    const r = walk(mem, on, va);
    expect(outcome(r)).toEqual({ pa: 0x4567_8234 });
    expect(r.reads).toBe(4);
    // The same low 48 bits in the TTBR0 half use TTBR0's (empty) table: level-0 Translation fault.
    expect(outcome(walk(mem, on, 2 ** 48 - 0x1000 + 0x234))).toEqual(F('translation', 1, 0));
    // A VA in neither half (bits [63:48] neither all 0 nor all 1) faults at level 0.
    expect(outcome(walk(mem, on, -(2 ** 48) - 0x1000))).toEqual(F('translation', 1, 0));
    // TCR.EPD0 = 1 disables TTBR0 walks the same way.
    mem.write64(TTB0, tableD(RAM + 0x1000));
    const epd0 = walk(mem, decodeStage1({ ...f, EPD0: 1, EPD1: 0 }), 0x1000);
    expect({ ...outcome(epd0), reads: epd0.reads }).toEqual({ ...F('translation', 1, 0), reads: 0 });
  });

  it('TTBR1 with its own granule and size (TG1 = 0b11 64KB, T1SZ = 25)', () => {
    // T1SZ=25: the TTBR1 half is [2^64 - 2^39, 2^64). 64KB with a 39-bit input starts at level 2
    // (4 - (1 + (39-16-1) DIV 13) = 2): L2 = input[38:29] (10 bits), L3 = input[28:16].
    const mem = ram();
    const TTB1 = RAM + 0x10000;
    const regime = decodeStage1({ T0SZ: 16, TG0: TG0[4], IPS: PS[48]!, TTBR0: RAM, EPD1: 0, T1SZ: 25, TG1: TG1[64], TTBR1: TTB1 });
    const va = -0x10000 + 0x1234; // input = 2^39 - 0x10000 + 0x1234
    mem.write64(TTB1 + 1023 * 8, tableD(RAM + 0x20000));
    mem.write64(RAM + 0x20000 + 8191 * 8, pageD(0x4440_0000, S1_RW_ALL));
    const r = walk(mem, regime, va);
    expect(outcome(r)).toEqual({ pa: 0x4440_1234 });
    expect([r.reads, r.sizeShift]).toEqual([2, 16]);
    // Just below the TTBR1 range: Translation fault, level 0.
    expect(outcome(walk(mem, regime, -(2 ** 39) - 0x10000))).toEqual(F('translation', 1, 0));
  });
});

// ===========================================================================
// Nested (stage 1 + stage 2)
// ===========================================================================

/**
 * A nested 4K/4K fixture. Stage 2: T0SZ=32 (32-bit IPA), SL0=1 (initial level
 * 1, four root entries), mapping IPA [0x8000_0000, 0x8080_0000) to PA
 * [0x4000_0000, 0x4080_0000) with 4 KiB pages (or 2 MiB blocks), S2AP RW.
 * Stage 1: T0SZ=25 (initial level 1), tables at IPA 0x8000_0000 (L1),
 * 0x8000_1000 (L2), 0x8000_2000 (L3), so at PA 0x4000_0000.. ; VA NVA maps to
 * IPA 0x8030_0abc -> PA 0x4030_0abc.
 */
const NVA = 0x12_3456_7abc; // L1 = VA[38:30] = 0x48, L2 = VA[29:21] = 0x1a2, L3 = VA[20:12] = 0x167
const IPA_OFF = 0x4000_0000;
const S2ROOT = RAM + 0xf0_0000;
const S1L1 = 0x8000_0000, S1L2 = 0x8000_1000, S1L3 = 0x8000_2000;
/** The IPAs of the three stage-1 descriptors NVA's walk reads. */
const D1 = S1L1 + 0x48 * 8, D2 = S1L2 + 0x1a2 * 8, D3 = S1L3 + 0x167 * 8;

function nested(blocks = false): { mem: PhysMem; regime: Regime; s2Leaf: (ipa: number) => number; s2L2: (ipa: number) => number } {
  const mem = ram(16 * MiB);
  // Stage 2: root L1 at S2ROOT; L1[2] (IPA[31:30] = 2) -> L2 at S2ROOT + 0x1000; L2[i] -> L3 tables or blocks.
  mem.write64(S2ROOT + 2 * 8, tableD(S2ROOT + 0x1000));
  for (let i = 0; i < 4; i++) {
    const pa = RAM + i * 0x20_0000;
    if (blocks) {
      mem.write64(S2ROOT + 0x1000 + i * 8, blockD(pa, S2_RW));
    } else {
      const l3 = S2ROOT + 0x2000 + i * 0x1000;
      mem.write64(S2ROOT + 0x1000 + i * 8, tableD(l3));
      for (let j = 0; j < 512; j++) mem.write64(l3 + j * 8, pageD(pa + j * 0x1000, S2_RW));
    }
  }
  const s2L2 = (ipa: number) => S2ROOT + 0x1000 + idx(ipa, 21, 9) * 8;
  const s2Leaf = (ipa: number) => (blocks ? s2L2(ipa) : S2ROOT + 0x2000 + idx(ipa - 0x8000_0000, 12, 11) * 8);
  // Stage 1, written at PA = IPA - IPA_OFF.
  mem.write64(D1 - IPA_OFF, tableD(S1L2));
  mem.write64(D2 - IPA_OFF, tableD(S1L3));
  mem.write64(D3 - IPA_OFF, pageD(0x8030_0000, S1_RW_ALL));
  const regime = s1(4, 25, S1L1);
  s2(4, 32, 1, S2ROOT, 48, regime);
  return { mem, regime, s2Leaf, s2L2 };
}

describe('nested translation (AArch64.FullTranslate; stage-1 table addresses are IPAs)', () => {
  it('a full nested walk: stage-1 descriptors are fetched through stage 2', () => {
    // The fixture's idx() comment values, checked by hand.
    expect([idx(NVA, 30, 9), idx(NVA, 21, 9), idx(NVA, 12, 9)]).toEqual([0x48, 0x1a2, 0x167]);
    const { mem, regime } = nested();
    const r = walk(mem, regime, NVA);
    expect(outcome(r)).toEqual({ pa: 0x4030_0abc });
    expect([r.ipa, r.s1Level, r.s2Level, r.sizeShift]).toEqual([0x8030_0abc, 3, 3, 12]);
    // 3 stage-1 descriptors, each behind a 3-level stage-2 walk, then 3 stage-2 reads for the output IPA.
    expect(r.reads).toBe(3 * (3 + 1) + 3);
  });

  it('s1ptw Translation fault: stage 2 cannot translate a stage-1 descriptor address', () => {
    // A stage-2 fault on a stage-1 table walk is reported as a stage-2 fault with S1PTW set, at the stage-2
    // level, with the IPA of the stage-1 descriptor (SMMU_CBn_FSYNR0.S1PTW, SMMU_CBn_IPAFAR; FORMAT.md).
    let { mem, regime, s2Leaf, s2L2 } = nested();
    mem.write64(s2Leaf(D3), 0n); // stage-1 L3 table's page unmapped at stage-2 level 3
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('translation', 2, 3, true, D3));
    ({ mem, regime, s2Leaf, s2L2 } = nested());
    mem.write64(s2L2(D1), 0n); // stage-1 root's 2 MiB region unmapped at stage-2 level 2
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('translation', 2, 2, true, D1));
    // The stage-2 root entry (level 1) for all of [0x8000_0000, 0xc000_0000).
    mem.write64(S2ROOT + 2 * 8, 0x0123_4567_89ab_cdeen);
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('translation', 2, 1, true, D1));
  });

  it('s1ptw Access flag fault: the stage-2 leaf for a stage-1 table has AF=0', () => {
    let { mem, regime, s2Leaf } = nested();
    mem.write64(s2Leaf(D2), pageD(D2 - IPA_OFF - (D2 % 0x1000), S2AP_R | S2AP_W));
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('access-flag', 2, 3, true, D2));
    ({ mem, regime, s2Leaf } = nested(true)); // with 2 MiB stage-2 blocks the leaf is at level 2
    mem.write64(s2Leaf(D1), blockD(RAM, S2AP_R | S2AP_W));
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('access-flag', 2, 2, true, D1));
  });

  it('s1ptw Permission fault: S2AP without read on a stage-1 table; a walk is a read whatever the access', () => {
    // AArch64.CheckS2Permission: "Stage 1 walk is checked as a read, regardless of the original type".
    let { mem, regime, s2Leaf } = nested();
    const pageOf = (ipa: number) => ipa - IPA_OFF - (ipa % 0x1000);
    mem.write64(s2Leaf(D2), pageD(pageOf(D2), AF | S2AP_W)); // write-only
    for (const acc of [EL1R, EL1W, EL0W]) {
      expect(outcome(walk(mem, regime, NVA, acc))).toEqual(F('permission', 2, 3, true, D2));
    }
    // Read-only, execute-never table pages are enough for any access to the (RW, executable) data page.
    ({ mem, regime, s2Leaf } = nested());
    for (const d of [D1, D2, D3]) mem.write64(s2Leaf(d), pageD(pageOf(d), AF | S2AP_R | XN));
    for (const acc of [EL1W, EL0W, EL0X]) {
      expect(outcome(walk(mem, regime, NVA, acc))).toEqual({ pa: 0x4030_0abc });
    }
  });

  it('a stage-2 fault on the final IPA reports s1ptw = false and the output IPA', () => {
    let { mem, regime, s2Leaf } = nested();
    const ipa = 0x8030_0abc;
    mem.write64(s2Leaf(ipa), 0n);
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('translation', 2, 3, false, ipa));
    mem.write64(s2Leaf(ipa), pageD(0x4030_0000, S2AP_R | S2AP_W));
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('access-flag', 2, 3, false, ipa));
    mem.write64(s2Leaf(ipa), pageD(0x4030_0000, AF | S2AP_R));
    expect(outcome(walk(mem, regime, NVA, EL1W))).toEqual(F('permission', 2, 3, false, ipa));
    expect(outcome(walk(mem, regime, NVA, EL1R))).toEqual({ pa: 0x4030_0abc });
    // Stage 1 completes (permission check included) before stage 2 sees the IPA: a write to a stage-1
    // read-only page is a stage-1 fault even though stage 2 would also refuse it.
    ({ mem, regime, s2Leaf } = nested());
    mem.write64(D3 - IPA_OFF, pageD(0x8030_0000, AF | AP2 | AP1));
    mem.write64(s2Leaf(ipa), pageD(0x4030_0000, AF | S2AP_R));
    expect(outcome(walk(mem, regime, NVA, EL0W))).toEqual(F('permission', 1, 3));
    // A stage-1 fault in a nested regime is a stage-1 fault (no IPA, no s1ptw).
    mem.write64(D3 - IPA_OFF, pageD(0x8030_0000, AP1));
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('access-flag', 1, 3));
  });

  it('IPA beyond the stage-2 input range: stage 2 level 0, s1ptw for a stage-1 table address', () => {
    // Stage 2 T0SZ=32: IPAs must be below 2^32. Stage 1 (IPS 48) may produce larger ones.
    let { mem, regime } = nested();
    mem.write64(D3 - IPA_OFF, pageD(0x1_0000_0000, S1_RW_ALL)); // final IPA 0x1_0000_0abc
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('translation', 2, 0, false, 0x1_0000_0abc));
    ({ mem, regime } = nested());
    mem.write64(D2 - IPA_OFF, tableD(0x1_0000_0000)); // stage-1 L3 table at IPA 2^32
    expect(outcome(walk(mem, regime, NVA))).toEqual(F('translation', 2, 0, true, 0x1_0000_0000 + 0x167 * 8));
    // The stage-1 root itself beyond the stage-2 range.
    const far = s1(4, 25, 0x2_0000_0000);
    s2(4, 32, 1, S2ROOT, 48, far);
    expect(outcome(walk(mem, far, NVA))).toEqual(F('translation', 2, 0, true, 0x2_0000_0000 + 0x48 * 8));
    // VTTBR beyond VTCR.PS in a nested regime: the first stage-1 fetch takes it, at level 0, with s1ptw.
    const bad = s1(4, 25, S1L1);
    s2(4, 32, 1, 2 ** 36, 36, bad);
    expect(outcome(walk(mem, bad, NVA))).toEqual(F('address-size', 2, 0, true, D1));
  });

  it('effective res.perm combines both stages', () => {
    // The access is allowed only if both stages allow it (AArch64.FullTranslate); res.perm is the AND.
    let { mem, regime, s2Leaf } = nested();
    const ipa = 0x8030_0000;
    // Stage 1: AP[2:1]=0b00 (EL1 RW), UXN -> PR|PW|PX. Stage 2: S2AP=W, XN=0 -> PW|UW|PX|UX.
    mem.write64(D3 - IPA_OFF, pageD(ipa, AF | UXN));
    mem.write64(s2Leaf(ipa), pageD(0x4030_0000, AF | S2AP_W));
    let r = walk(mem, regime, NVA, EL1W);
    expect(outcome(r)).toEqual({ pa: 0x4030_0abc });
    expect(r.perm).toBe(PERM_PW | PERM_PX);
    expect(outcome(walk(mem, regime, NVA, EL1X))).toEqual({ pa: 0x4030_0abc });
    expect(outcome(walk(mem, regime, NVA, EL1R))).toEqual(F('permission', 2, 3, false, 0x8030_0abc));
    expect(outcome(walk(mem, regime, NVA, EL0R))).toEqual(F('permission', 1, 3));
    // Stage 1: AP=0b01 (RW all; EL1 may not execute), PXN=0. Stage 2: S2AP=R, XN -> PR|UR.
    ({ mem, regime, s2Leaf } = nested());
    mem.write64(D3 - IPA_OFF, pageD(ipa, AF | AP1));
    mem.write64(s2Leaf(ipa), pageD(0x4030_0000, AF | S2AP_R | XN));
    r = walk(mem, regime, NVA, EL0R);
    expect(outcome(r)).toEqual({ pa: 0x4030_0abc });
    expect(r.perm).toBe(PERM_PR | PERM_UR);
    expect(outcome(walk(mem, regime, NVA, EL0X))).toEqual(F('permission', 2, 3, false, 0x8030_0abc));
    expect(outcome(walk(mem, regime, NVA, EL1X))).toEqual(F('permission', 1, 3));
  });
});

describe('descriptor reads per nested walk', () => {
  /**
   * 4K stage 1 T0SZ=16 (4 levels) over 4K stage 2 T0SZ=16 SL0=2 (4 levels).
   * IPA = PA + 2^32: stage 2 maps IPA [0x1_4000_0000, +16 MiB) to PA [0x4000_0000, +16 MiB)
   * with `leaf` = 'page' (4 levels), '2M' blocks (3 levels) or a '1G' block (2 levels).
   */
  function build(leaf: 'page' | '2M' | '1G'): WalkResult {
    const mem = ram(16 * MiB);
    const OFF = 2 ** 32;
    const S2 = RAM + 0xe0_0000; // stage-2 tables: L0, L1, L2, then L3s
    mem.write64(S2 + 0 * 8, tableD(S2 + 0x1000)); // IPA[47:39] = 0
    const ipaBase = RAM + OFF; // 0x1_4000_0000: IPA[38:30] = 5
    if (leaf === '1G') {
      mem.write64(S2 + 0x1000 + 5 * 8, blockD(RAM, S2_RW));
    } else {
      mem.write64(S2 + 0x1000 + 5 * 8, tableD(S2 + 0x2000));
      for (let i = 0; i < 8; i++) {
        if (leaf === '2M') {
          mem.write64(S2 + 0x2000 + i * 8, blockD(RAM + i * 0x20_0000, S2_RW));
        } else {
          const l3 = S2 + 0x3000 + i * 0x1000;
          mem.write64(S2 + 0x2000 + i * 8, tableD(l3));
          for (let j = 0; j < 512; j++) mem.write64(l3 + j * 8, pageD(RAM + i * 0x20_0000 + j * 0x1000, S2_RW));
        }
      }
    }
    // Stage 1 tables at PA RAM + 0x1000 * n (IPA + 2^32); VA 0x8000_1234_5678 -> IPA ipaBase + 0x70_0000.
    const va = 0x8000_1234_5678;
    const T = [0, 1, 2, 3].map((n) => RAM + n * 0x1000);
    for (let l = 0; l < 3; l++) mem.write64(T[l]! + idx(va, lvlShift(4, l), 9) * 8, tableD(T[l + 1]! + OFF));
    mem.write64(T[3]! + idx(va, 12, 9) * 8, pageD(ipaBase + 0x70_0000, S1_RW_ALL));
    const regime = s1(4, 16, T[0]! + OFF);
    s2(4, 16, 2, S2, 48, regime);
    const r = walk(mem, regime, va);
    expect(outcome(r)).toEqual({ pa: RAM + 0x70_0678 });
    expect(r.ipa).toBe(ipaBase + 0x70_0678);
    return r;
  }

  it('4+4 levels with 4 KiB stage-2 pages: 24 reads', () => {
    // Each of the 4 stage-1 descriptor fetches needs a 4-level stage-2 walk first (4 x (4 + 1) = 20), and
    // the output IPA needs one more stage-2 walk (4): 24.
    const r = build('page');
    expect(r.reads).toBe(24);
    expect([r.s1Level, r.s2Level, r.sizeShift]).toEqual([3, 3, 12]);
  });

  it('2 MiB stage-2 blocks: 19 reads; 1 GiB stage-2 blocks: 14 reads', () => {
    // Stage-2 walks stop at level 2 (3 reads): 4 x (3 + 1) + 3 = 19; at level 1 (2 reads): 4 x (2 + 1) + 2 = 14.
    const r2 = build('2M');
    expect(r2.reads).toBe(19);
    expect([r2.s2Level, r2.sizeShift]).toEqual([2, 12]); // a TLB entry is the smaller of the two leaves
    const r1 = build('1G');
    expect(r1.reads).toBe(14);
    expect(r1.s2Level).toBe(1);
  });
});

// ===========================================================================
// External aborts
// ===========================================================================

describe('synchronous external abort on a table walk (descriptor outside RAM)', () => {
  it('stage 1: a table pointing outside RAM aborts the read at the next level', () => {
    // ESR_ELx DFSC 0b0101LL: a descriptor fetch that gets an external abort is reported as "Synchronous External abort on
    // translation table walk, level n", n being the level of the lookup whose fetch aborted.
    const mem = ram(); // unbacked: 'abort'
    const regime = s1(4, 25, RAM); // initial level 1
    mem.write64(RAM + 1 * 8, tableD(0x1000_0000)); // L2 table outside RAM
    expect(outcome(walk(mem, regime, 0x4000_0000))).toEqual(F('external', 1, 2));
    mem.write64(RAM + 1 * 8, tableD(RAM + 0x1000));
    mem.write64(RAM + 0x1000, tableD(0x2000_0000)); // L3 table outside RAM
    expect(outcome(walk(mem, regime, 0x4000_0000))).toEqual(F('external', 1, 3));
    // A TTBR outside RAM aborts at the initial level.
    expect(outcome(walk(mem, s1(4, 25, 0x3000_0000), 0x4000_0000))).toEqual(F('external', 1, 1));
    // With unbacked: 'zero' the same address reads as an invalid descriptor instead.
    const zmem = ram(4 * MiB, 'zero');
    zmem.write64(RAM + 1 * 8, tableD(0x1000_0000));
    expect(outcome(walk(zmem, regime, 0x4000_0000))).toEqual(F('translation', 1, 2));
  });

  it('stage 2: the same, reported at stage 2 with the IPA', () => {
    const mem = ram();
    const regime = s2(4, 32, 1, RAM);
    mem.write64(RAM + 1 * 8, tableD(0x1000_0000));
    expect(outcome(walk(mem, regime, 0x4000_0123))).toEqual(F('external', 2, 2, false, 0x4000_0123));
    // During a stage-1 table walk: a stage-2 external abort with s1ptw.
    const n = nested();
    n.mem.write64(S2ROOT + 0x1000 + 0 * 8, tableD(0x1000_0000)); // stage-2 L3 table for IPA 0x8000_0000.. outside RAM
    expect(outcome(walk(n.mem, n.regime, NVA))).toEqual(F('external', 2, 3, true, D1));
  });
});

// ===========================================================================
// The result object
// ===========================================================================

describe('WalkResult reuse', () => {
  it('a result object reused across walks carries no state from the previous walk', () => {
    const { mem, regime, s2Leaf } = nested();
    const res = new WalkResult();
    walk(mem, regime, NVA, EL1R, res);
    expect(res.ok).toBe(true);
    mem.write64(s2Leaf(D2), 0n);
    walk(mem, regime, NVA, EL1R, res);
    expect(outcome(res)).toEqual(F('translation', 2, 3, true, D2));
    mem.write64(s2Leaf(D2), pageD(D2 - IPA_OFF - (D2 % 0x1000), S2_RW));
    walk(mem, regime, NVA, EL1R, res);
    expect(outcome(res)).toEqual({ pa: 0x4030_0abc });
    expect([res.s1ptw, res.faultIpa, res.reads]).toEqual([false, -1, 15]);
  });
});
