/**
 * Register-level tests of the SMMUv2 model (src/smmu/smmu.ts): everything is
 * programmed and observed through read32/read64/write32/write64 at byte
 * offsets and through dma()/pending(), the way a driver and its devices see
 * the hardware; no private state is read.
 *
 * Register offsets and field positions are spelled out here from the
 * reference notes (/work/shared/reference/smmu-models.md, section 4: the Linux
 * arm-smmu driver's view of IHI 0062), not imported from src/smmu/regs.ts, so
 * a wrong constant in the model is caught. Context-bank offsets are computed
 * from SMMU_IDR1 as read through the register interface (fact 16).
 *
 * Covered (section 7 of the notes):
 *  - fact 13: SMR encoding and match rule, stream match conflict (SMCF);
 *  - fact 14: unimplemented SMR ID/MASK bits are RAZ/WI for several NUMSIDB;
 *  - fact 15: S2CR TYPE/CBNDX, CBAR types 0..3 (nested CBNDX[15:8]),
 *    CBA2R.VA64/VMID16, CBAR.TYPE fixed at 0 below NUMS2CB;
 *  - fact 16: context bank n at (NUMPAGE + n) << pgshift, 4K/64K register
 *    pages, several NUMPAGENDXB;
 *  - fact 17: FSR W1C, MULTI, first syndrome kept, FSYNR0, FAR, CBFRSYNRA;
 *  - fact 18: TLBI value formats decoded into invalidation scopes, TLBSYNC /
 *    TLBSTATUS and sTLBGSYNC / sTLBGSTATUS with a cache whose sync completes late;
 *  - fact 19: stall (CFCFG), SS, RESUME terminate / retry / refault;
 *  - global faults: USF with syndrome and MULTI, USFCFG = 0 bypass,
 *    CLIENTPD bypass, stream indexing;
 *  - nested translation through the registers against the walker on random
 *    configurations (fast-check), with PTWF / S1CBNDX / IPAFAR for stage-2
 *    faults on stage-1 table walks (IPAFAR: IPA[47:12] exactly; bits [11:0]
 *    may be the byte offset or zero, since the model keeps only the page);
 *  - bad register writes: impossible CBAR types, reserved TCR fields, bad
 *    CBNDX values, accesses outside the register space, 64-bit writes anywhere.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NoCache, type InvalidationScope, type TranslationCache } from '../src/cache/interface.js';
import { PhysMem } from '../src/memory/phys.js';
import {
  PROT_NOEXEC,
  PROT_PRIV,
  PROT_READ,
  PROT_WRITE,
  PgTableError,
  concatMandatory,
  createGuestStage1,
  createStage1,
  createStage2,
  type PageTable,
} from '../src/pgtable/builder.js';
import { granuleShift, naturalStartLevel, type GranuleKiB } from '../src/pgtable/geometry.js';
import { Regime, decodeStage1, decodeStage2, s2ConfigError, s2Sl0For, type Stage1Fields, type Stage2Fields } from '../src/pgtable/regime.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { encodeIds, type SmmuShape } from '../src/smmu/id.js';
import { Smmu, type Access, type DmaOutcome } from '../src/smmu/smmu.js';
import {
  ACC_EXEC,
  ACC_READ,
  ACC_UNPRIV,
  ACC_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_ADDRESS_SIZE,
  FAULT_EXTERNAL,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  WalkResult,
} from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';

// ---------------------------------------------------------------------------
// Register map (notes §4.1, §4.3-4.8)
// ---------------------------------------------------------------------------

const GR0 = {
  sCR0: 0x0,
  IDR0: 0x20,
  IDR1: 0x24,
  IDR2: 0x28,
  sGFSR: 0x48,
  sGFSYNR0: 0x50,
  sGFSYNR1: 0x54,
  TLBIVMID: 0x64,
  TLBIALLNSNH: 0x68,
  TLBIALLH: 0x6c,
  sTLBGSYNC: 0x70,
  sTLBGSTATUS: 0x74,
} as const;
const SMR = (n: number): number => 0x800 + 4 * n;
const S2CR = (n: number): number => 0xc00 + 4 * n;
const CBAR = (n: number): number => 0x0 + 4 * n;
const CBFRSYNRA = (n: number): number => 0x400 + 4 * n;
const CBA2R = (n: number): number => 0x800 + 4 * n;
const CB = {
  SCTLR: 0x0,
  RESUME: 0x8,
  TCR2: 0x10,
  TTBR0: 0x20,
  TCR: 0x30,
  MAIR0: 0x38,
  PAR: 0x50,
  FSR: 0x58,
  FSRRESTORE: 0x5c,
  FAR: 0x60,
  FSYNR0: 0x68,
  IPAFAR: 0x70,
  TLBIVA: 0x600,
  TLBIVAA: 0x608,
  TLBIASID: 0x610,
  TLBIALL: 0x618,
  TLBIVAL: 0x620,
  TLBIIPAS2: 0x630,
  TLBIIPAS2L: 0x638,
  TLBSYNC: 0x7f0,
  TLBSTATUS: 0x7f4,
} as const;

// sCR0
const CLIENTPD = 1 << 0;
const GFRE = 1 << 1;
const GFIE = 1 << 2;
const USFCFG = 1 << 10;
const SMCFCFG = 1 << 21;
const VMID16EN = 2 ** 31;
// sGFSR
const sGFSR_USF = 1 << 1;
const sGFSR_SMCF = 1 << 2;
const sGFSR_UCBF = 1 << 3;
const sGFSR_MULTI = 2 ** 31;
// sGFSYNR0
const GSYN_WNR = 1 << 1;
const GSYN_PNU = 1 << 2;
const GSYN_IND = 1 << 3;
// SMR / S2CR / CBAR / CBA2R
const SMR_VALID = 2 ** 31;
const S2CR_BYPASS = 1 << 16;
const S2CR_FAULT = 2 << 16;
const CBA2R_VA64 = 1;
// SCTLR
const M = 1 << 0;
const CFRE = 1 << 5;
const CFIE = 1 << 6;
const CFCFG = 1 << 7;
const SCTLR_FAULTS = M | CFRE | CFIE;
// TCR2
const TCR2_AS = 1 << 4;
// FSR
const TF = 1 << 1;
const AFF = 1 << 2;
const PF = 1 << 3;
const EF = 1 << 4;
const ASF = 1 << 7;
const SS = 1 << 30;
const MULTI = 2 ** 31;
const FSR_ALL = 0xc00001fe;
// FSYNR0
const PLVL = 0x3;
const WNR = 1 << 4;
const PNU = 1 << 5;
const IND = 1 << 6;
const PTWF = 1 << 10;

const FSR_OF_FAULT: Record<number, number> = {
  [FAULT_TRANSLATION]: TF,
  [FAULT_ACCESS_FLAG]: AFF,
  [FAULT_PERMISSION]: PF,
  [FAULT_EXTERNAL]: EF,
  [FAULT_ADDRESS_SIZE]: ASF,
};

const KiB = 1024;
const MiB = 1024 * KiB;
const RW = PROT_READ | PROT_WRITE;

const hex = (n: number | bigint): string => (typeof n === 'bigint' ? '0x' + n.toString(16) : (n < 0 ? '-0x' + (-n).toString(16) : '0x' + n.toString(16)));

// ---------------------------------------------------------------------------
// Memory: one PhysMem for the file.
//   [RAM, RAM + 16 MiB)        bump-allocated chunks for the fixed tests
//   [PROP_S2, + 8 MiB)         stage-2 tables of the property runs
//   [PROP_WIN_PA, + 4 MiB)     the guest's table window of the property runs
// ---------------------------------------------------------------------------

const RAM = 0x8000_0000;
const PROP_S2 = RAM + 16 * MiB;
const PROP_S2_SIZE = 8 * MiB;
/** 64 KiB- but not 2 MiB-aligned: stage 2 maps the window with pages only (so one page can be unmapped). */
const PROP_WIN_PA = RAM + 24 * MiB + 64 * KiB;
const PROP_WIN_IPA = 0x1000_0000;
const PROP_WIN_SIZE = 4 * MiB;
const mem = PhysMem.create({ regions: [{ base: RAM, size: 32 * MiB, name: 'ram' }] });

let chunkNext = RAM;
/** A fresh 64 KiB-aligned chunk of RAM from the fixed-test area. */
function chunk(bytes: number): number {
  const base = chunkNext;
  chunkNext += Math.ceil(bytes / (64 * KiB)) * 64 * KiB;
  if (chunkNext > RAM + 16 * MiB) throw new Error('test RAM exhausted');
  return base;
}
function pool(bytes = 512 * KiB): PhysTables {
  const base = chunk(bytes);
  return new PhysTables(mem, base, base + bytes);
}

// ---------------------------------------------------------------------------
// A device under test, addressed only by offsets computed from SMMU_IDR1.
// ---------------------------------------------------------------------------

class Dev {
  readonly s: Smmu;
  readonly pgShift: number;
  readonly numPage: number;
  readonly numCb: number;

  constructor(shape: SmmuShape, cache?: TranslationCache) {
    this.s = new Smmu(encodeIds(shape), mem, cache);
    const id1 = this.s.read32(GR0.IDR1);
    this.pgShift = id1 >>> 31 === 1 ? 16 : 12;
    this.numPage = 1 << (((id1 >>> 28) & 7) + 1);
    this.numCb = id1 & 0xff;
  }

  get spaceBytes(): number {
    return 2 * this.numPage * 2 ** this.pgShift;
  }
  gr1(r: number): number {
    return 2 ** this.pgShift + r;
  }
  cb(n: number, r: number): number {
    return (this.numPage + n) * 2 ** this.pgShift + r;
  }
  r32(off: number): number {
    return this.s.read32(off);
  }
  w32(off: number, v: number): void {
    this.s.write32(off, v);
  }
  r64(off: number): bigint {
    return this.s.read64(off);
  }
  w64(off: number, v: bigint): void {
    this.s.write64(off, v);
  }
  fsr(n: number): number {
    return this.r32(this.cb(n, CB.FSR));
  }
  fsynr0(n: number): number {
    return this.r32(this.cb(n, CB.FSYNR0));
  }
  far(n: number): bigint {
    return this.r64(this.cb(n, CB.FAR));
  }
  sgfsr(): number {
    return this.r32(GR0.sGFSR);
  }
  clearFsr(n: number): void {
    this.w32(this.cb(n, CB.FSR), FSR_ALL);
  }
  clearGlobal(): void {
    this.w32(GR0.sGFSR, 0xffffffff);
  }
  /** S2CR first, then SMR (the driver's order). */
  attach(idx: number, sid: number, s2cr: number, mask = 0): void {
    this.w32(S2CR(idx), s2cr);
    this.w32(SMR(idx), (SMR_VALID | (mask << 16) | sid) >>> 0);
  }
  enable(extra = 0): void {
    this.w32(GR0.sCR0, (GFRE | GFIE | USFCFG | extra) >>> 0);
  }
  /** Every 32-bit word of the register space (for "nothing else changed" checks). */
  snapshot(): Uint32Array {
    const n = this.spaceBytes / 4;
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.r32(i * 4);
    return out;
  }
}

function tcrS1(f: Stage1Fields): number {
  // T0SZ[5:0], EPD0[7], IRGN0[9:8]=WBWA, ORGN0[11:10]=WBWA, SH0[13:12]=IS, TG0[15:14], EPD1[23], TG1[31:30]=4K.
  return ((f.T0SZ & 0x3f) | ((f.EPD0 ?? 0) << 7) | (1 << 8) | (1 << 10) | (3 << 12) | ((f.TG0 & 3) << 14) | (((f.EPD1 ?? 1) & 1) << 23) | (2 << 30)) >>> 0;
}

function tcrS2(f: Stage2Fields): number {
  // VTCR format: T0SZ[5:0], SL0[7:6], IRGN0, ORGN0, SH0, TG0[15:14], PS[18:16], RES1[31].
  return ((f.T0SZ & 0x3f) | ((f.SL0 & 3) << 6) | (1 << 8) | (1 << 10) | (3 << 12) | ((f.TG0 & 3) << 14) | ((f.PS & 7) << 16) | (1 << 31)) >>> 0;
}

interface S1BankOpts {
  type?: 1 | 2 | 3;
  s2Bank?: number;
  vmid?: number;
  sctlr?: number;
  tcr?: number;
}

/** Programs a stage-1 (or nested) bank in the driver's order: CBA2R, CBAR, TCR2, TCR, TTBR0, MAIR0, SCTLR. */
function programS1(d: Dev, n: number, f: Stage1Fields, o: S1BankOpts = {}): void {
  const type = o.type ?? 1;
  d.w32(d.gr1(CBA2R(n)), CBA2R_VA64);
  const mid = type === 3 ? (o.s2Bank ?? 0) << 8 : 0xf300; // nested: CBNDX[15:8]; else S1 MemAttr WB + BPSHCFG NSH
  d.w32(d.gr1(CBAR(n)), ((type << 16) | mid | (o.vmid ?? 0)) >>> 0);
  d.w32(d.cb(n, CB.TCR2), (f.IPS & 7) | TCR2_AS);
  d.w32(d.cb(n, CB.TCR), o.tcr ?? tcrS1(f));
  d.w64(d.cb(n, CB.TTBR0), (BigInt(f.ASID ?? 0) << 48n) | BigInt(f.TTBR0));
  d.w32(d.cb(n, CB.MAIR0), 0xf404ff44);
  d.w32(d.cb(n, CB.SCTLR), o.sctlr ?? SCTLR_FAULTS);
}

/** Programs a stage-2 (CBAR type 0) bank: CBA2R, CBAR (VMID), TCR in VTCR format, TTBR0 = VTTBR, SCTLR. */
function programS2(d: Dev, n: number, f: Stage2Fields, vmid: number, o: { vmid16?: number; sctlr?: number; tcr?: number } = {}): void {
  d.w32(d.gr1(CBA2R(n)), (CBA2R_VA64 | ((o.vmid16 ?? 0) << 16)) >>> 0);
  d.w32(d.gr1(CBAR(n)), vmid & 0xff);
  d.w32(d.cb(n, CB.TCR), o.tcr ?? tcrS2(f));
  d.w64(d.cb(n, CB.TTBR0), BigInt(f.VTTBR));
  d.w32(d.cb(n, CB.SCTLR), o.sctlr ?? SCTLR_FAULTS);
}

const pa = (p: number): DmaOutcome => ({ kind: 'pa', pa: p });

/**
 * IPAFAR must hold the faulting IPA: bits [47:12] exactly; bits [11:0] either the
 * byte offset or zero (an implementation may keep only the page, as HPFAR_EL2 does).
 */
function expectIpafar(d: Dev, n: number, ipa: number, what = ''): void {
  const v = d.r64(d.cb(n, CB.IPAFAR));
  expect(hex(v >> 12n), `IPAFAR page ${what}`).toBe(hex(BigInt(ipa) >> 12n));
  expect([0n, BigInt(ipa % 4096)], `IPAFAR offset ${what}`).toContain(v & 0xfffn);
}
const u64 = (n: number): bigint => BigInt.asUintN(64, BigInt(n));

/** A 4K/48-bit stage-1 table with its own table pool. */
function s1Table(asid = 0): PageTable {
  return createStage1(pool(128 * KiB), { granule: 4, ias: 48, oas: 48 }, asid);
}

/** A guest stage 1 behind a stage 2 (both 4K): VA 0x7f00_0000_0000 -> IPA 0x1_0000_0000 -> PA 0xc000_0000 (2 MiB). */
const GUEST_WIN_IPA = 0x8000_0000;
const GUEST_VA = 0x7f00_0000_0000;
const GUEST_IPA = 0x1_0000_0000;
const GUEST_PA = 0xc000_0000;
function guestTables(vmid = 0x42, asid = 9): { s1: PageTable; s2: PageTable } {
  const s2 = createStage2(pool(256 * KiB), { granule: 4, ias: 40, oas: 40 }, vmid);
  s2.map(GUEST_WIN_IPA, chunk(256 * KiB), 256 * KiB, RW);
  const s1 = createGuestStage1(mem, s2, GUEST_WIN_IPA, GUEST_WIN_IPA + 256 * KiB, { granule: 4, ias: 48, oas: 40 }, asid);
  s1.map(GUEST_VA, GUEST_IPA, 2 * MiB, RW);
  s2.map(GUEST_IPA, GUEST_PA, 2 * MiB, RW);
  return { s1, s2 };
}

// ===========================================================================
// Fact 13: SMR encoding, match rule, stream match conflict
// ===========================================================================

describe('fact 13: stream match registers', () => {
  it('encodes VALID<<31 | MASK<<16 | ID (0x80030012) and matches iff ((sid ^ ID) & ~MASK) == 0', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 2 });
    d.attach(0, 0x12, S2CR_BYPASS, 0x03);
    expect(hex(d.r32(SMR(0)))).toBe('0x80030012');
    d.enable();
    const matched: number[] = [];
    for (let sid = 0; sid < 256; sid++) {
      const o = d.s.dma(sid, 0x1234_5678, 'r', true);
      if (o.kind === 'pa') {
        expect(o.pa).toBe(0x1234_5678); // S2CR0 is bypass
        matched.push(sid);
        expect(d.sgfsr()).toBe(0);
      } else {
        expect(o.kind).toBe('abort');
        expect(d.sgfsr() & 0x1ff, `sid ${hex(sid)}`).toBe(sGFSR_USF);
        d.clearGlobal();
      }
    }
    expect(matched).toEqual([0x10, 0x11, 0x12, 0x13]);
  });

  it('an invalid SMR (VALID = 0) matches nothing', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 2 });
    d.w32(S2CR(0), S2CR_BYPASS);
    d.w32(SMR(0), 0x00030012);
    d.enable();
    expect(d.s.dma(0x12, 0x1000, 'r', true).kind).toBe('abort');
    expect(d.sgfsr() & 0x1ff).toBe(sGFSR_USF);
  });

  it('the match rule holds for random ID/MASK/stream ID (fast-check)', () => {
    const d = new Dev({ smrs: 4, sidBits: 10, contextBanks: 2 });
    d.enable();
    fc.assert(
      fc.property(fc.nat(0x3ff), fc.nat(0x3ff), fc.nat(0x3ff), (id, mask, sid) => {
        d.attach(0, id, S2CR_BYPASS, mask);
        d.clearGlobal();
        const o = d.s.dma(sid, 0x4000, 'w', false);
        const match = ((sid ^ id) & ~mask) === 0;
        expect(o.kind).toBe(match ? 'pa' : 'abort');
        expect(d.sgfsr() & 0x1ff).toBe(match ? 0 : sGFSR_USF);
      }),
      { numRuns: 300 },
    );
  });

  it('two valid matches are a stream match conflict: sGFSR.SMCF (bit 2) and abort with sCR0.SMCFCFG = 1', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 2 });
    d.attach(0, 0x10, S2CR_BYPASS, 0x0f); // 0x10..0x1f
    d.attach(1, 0x18, S2CR_BYPASS, 0x30); // 0x08, 0x18, 0x28, 0x38 — overlaps SMR0 at 0x18
    d.enable(SMCFCFG);
    expect(d.s.dma(0x1f, 0x5000, 'r', true)).toEqual(pa(0x5000)); // SMR0 only
    expect(d.s.dma(0x38, 0x5000, 'r', true)).toEqual(pa(0x5000)); // SMR1 only
    expect(d.sgfsr()).toBe(0);
    expect(d.s.dma(0x18, 0x5000, 'w', true).kind).toBe('abort');
    expect(d.sgfsr() & 0x1ff).toBe(sGFSR_SMCF);
    expect(d.r32(GR0.sGFSYNR1) & 0xffff).toBe(0x18);
    d.clearGlobal();
    // A contained entry {0x12, 0x03} inside SMR0 also conflicts for 0x10..0x13, not for 0x1a.
    d.attach(1, 0x12, S2CR_BYPASS, 0x03);
    expect(d.s.dma(0x1a, 0x5000, 'r', true)).toEqual(pa(0x5000));
    expect(d.sgfsr()).toBe(0);
    expect(d.s.dma(0x11, 0x5000, 'r', true).kind).toBe('abort');
    expect(d.sgfsr() & 0x1ff).toBe(sGFSR_SMCF);
    // Removing the overlap (SMR1 invalid) ends the conflict.
    d.clearGlobal();
    d.w32(SMR(1), 0x00030012);
    expect(d.s.dma(0x11, 0x5000, 'r', true)).toEqual(pa(0x5000));
    expect(d.sgfsr()).toBe(0);
  });
});

// ===========================================================================
// Fact 14: unimplemented SMR ID/MASK bits are RAZ/WI
// ===========================================================================

describe('fact 14: SMR ID and MASK widths', () => {
  for (const bits of [1, 4, 7, 10, 15]) {
    it(`NUMSIDB = ${bits}: all-ones reads back the implemented width, and matching uses it`, () => {
      const d = new Dev({ smrs: 2, sidBits: bits, contextBanks: 2 });
      const m = 2 ** bits - 1;
      d.w32(SMR(1), 0xffffffff);
      expect(hex(d.r32(SMR(1)))).toBe(hex((SMR_VALID | (m << 16) | m) >>> 0));
      // The driver's probe (arm_smmu_test_smr_masks): ID = 0xffff, then MASK = 0xffff.
      d.w32(SMR(0), 0xffff);
      expect(d.r32(SMR(0))).toBe(m);
      d.w32(SMR(0), 0x7fff << 16); // MASK is bits [30:16]; bit 31 is VALID
      expect(d.r32(SMR(0)) >>> 16).toBe(m);
      expect(d.r32(SMR(0)) & 0xffff).toBe(0);
      // Unimplemented ID bits are ignored: written as ones, SMR0 still matches stream ID 1.
      d.w32(S2CR(0), S2CR_BYPASS);
      d.w32(SMR(0), (SMR_VALID | (0xffff & ~m) | 1) >>> 0);
      expect(hex(d.r32(SMR(0)))).toBe(hex((SMR_VALID | 1) >>> 0));
      d.w32(SMR(1), 0);
      d.enable();
      expect(d.s.dma(1, 0x7000, 'r', false)).toEqual(pa(0x7000));
      expect(d.sgfsr()).toBe(0);
    });
  }
});

// ===========================================================================
// Fact 15: S2CR / CBAR / CBA2R
// ===========================================================================

describe('fact 15: S2CR, CBAR and CBA2R', () => {
  it('S2CR TYPE translate (CBNDX) / bypass / fault', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 8 });
    const t5 = s1Table(5);
    t5.map(0x4000_0000, 0x9000_0000, 4 * KiB, RW);
    const t6 = s1Table(6);
    t6.map(0x4000_0000, 0xa000_0000, 4 * KiB, RW);
    programS1(d, 5, t5.stage1Fields());
    programS1(d, 6, t6.stage1Fields());
    d.attach(0, 3, 0x5);
    d.enable();
    expect(d.r32(S2CR(0))).toBe(0x5);
    expect(d.s.dma(3, 0x4000_0123, 'r', false)).toEqual(pa(0x9000_0123));
    d.w32(S2CR(0), 0x6);
    expect(d.s.dma(3, 0x4000_0123, 'r', false)).toEqual(pa(0xa000_0123));
    d.w32(S2CR(0), S2CR_BYPASS);
    expect(d.r32(S2CR(0))).toBe(0x10000);
    expect(d.s.dma(3, 0x4000_0123, 'r', false)).toEqual(pa(0x4000_0123));
    expect(d.s.dma(3, 0x5555_0000, 'w', false)).toEqual(pa(0x5555_0000)); // unmapped in both banks: bypassed
    d.w32(S2CR(0), S2CR_FAULT | 5);
    expect(d.r32(S2CR(0))).toBe(0x20005);
    expect(d.s.dma(3, 0x4000_0123, 'r', false).kind).toBe('abort');
    // Neither bank saw any of this.
    expect(d.fsr(5)).toBe(0);
    expect(d.fsr(6)).toBe(0);
    expect(d.sgfsr() & 0x1ff).toBe(0);
  });

  it('CBAR types 0..3: stage 2 only, stage 1 with stage-2 bypass, stage 1 with stage-2 fault, nested (CBNDX[15:8])', () => {
    const d = new Dev({ smrs: 8, sidBits: 8, contextBanks: 8, s2OnlyBanks: 2, ias: 40, oas: 40 });
    const { s1: guest, s2 } = guestTables(0x42);
    const host = s1Table(3);
    host.map(0x4000_0000, 0x9000_0000, 2 * MiB, RW);

    programS2(d, 2, s2.stage2Fields(), 0x42); // type 0 in a bank above NUMS2CB
    programS1(d, 3, host.stage1Fields(), { type: 1 });
    programS1(d, 5, host.stage1Fields(), { type: 2 });
    programS1(d, 4, guest.stage1Fields(), { type: 3, s2Bank: 2 });
    expect(hex(d.r32(d.gr1(CBAR(2))))).toBe('0x42');
    expect(hex(d.r32(d.gr1(CBAR(3))))).toBe('0x1f300'); // the driver's stage-1 bank value
    expect(hex(d.r32(d.gr1(CBAR(4))))).toBe('0x30200'); // nested, stage 2 in bank 2
    expect(d.r32(d.gr1(CBA2R(4))) & 1).toBe(1); // VA64
    d.attach(0, 1, 2);
    d.attach(1, 2, 3);
    d.attach(2, 3, 5);
    d.attach(3, 4, 4);
    d.enable();

    // Type 0: the input is an IPA.
    expect(d.s.dma(1, GUEST_IPA + 0x123, 'r', false)).toEqual(pa(GUEST_PA + 0x123));
    // Type 1: the stage-1 output is the PA.
    expect(d.s.dma(2, 0x4000_0123, 'w', false)).toEqual(pa(0x9000_0123));
    // Type 2: stage 1 translates, then every access faults at stage 2 ...
    expect(d.s.dma(3, 0x4000_0123, 'r', false).kind).toBe('abort');
    // ... while a stage-1 fault is still a stage-1 fault recorded in the bank.
    expect(d.s.dma(3, 0x8000_0000, 'r', false).kind).toBe('abort');
    expect(d.fsr(5) & (TF | PF | AFF | ASF | EF)).toBe(TF);
    expect(d.far(5)).toBe(0x8000_0000n);
    // Type 3: guest stage 1 (tables at IPAs) then stage 2 of bank 2.
    expect(d.s.dma(4, GUEST_VA + 0x1_2345, 'w', false)).toEqual(pa(GUEST_PA + 0x1_2345));
    expect(d.fsr(2)).toBe(0);
    expect(d.fsr(3)).toBe(0);
    expect(d.fsr(4)).toBe(0);
  });

  it('nested CBAR.CBNDX is the whole 8-bit field [15:8] (stage-2 bank 0x12 of 32)', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 32, ias: 40, oas: 40 });
    const { s1: guest, s2 } = guestTables(0x42);
    guest.map(GUEST_VA + 2 * MiB, GUEST_IPA + 2 * MiB, 4 * KiB, RW); // an IPA stage 2 does not map
    programS2(d, 0x12, s2.stage2Fields(), 0x42);
    programS1(d, 0x14, guest.stage1Fields(), { type: 3, s2Bank: 0x12 });
    expect(hex(d.r32(d.gr1(CBAR(0x14))))).toBe('0x31200');
    d.attach(0, 9, 0x14);
    d.enable();
    expect(d.s.dma(9, GUEST_VA + 0x88, 'r', false)).toEqual(pa(GUEST_PA + 0x88));
    // A stage-2 fault: recorded in bank 0x12, naming bank 0x14 as the stage-1 bank.
    expect(d.s.dma(9, GUEST_VA + 2 * MiB + 0x10, 'r', false).kind).toBe('abort');
    expect(d.fsr(0x14)).toBe(0);
    expect(d.fsr(0x12)).toBe(TF);
    expect((d.fsynr0(0x12) >>> 16) & 0xff).toBe(0x14);
    expectIpafar(d, 0x12, GUEST_IPA + 2 * MiB + 0x10);
  });

  it('CBA2R: VA64 reads back; VMID16 reads back with IDR2.VMID16 and is RAZ/WI without it', () => {
    const with16 = new Dev({ contextBanks: 4, vmid16: true });
    const without = new Dev({ contextBanks: 4, vmid16: false });
    expect((with16.r32(GR0.IDR2) >>> 15) & 1).toBe(1);
    expect((without.r32(GR0.IDR2) >>> 15) & 1).toBe(0);
    with16.w32(with16.gr1(CBA2R(1)), 0xabcd0001);
    without.w32(without.gr1(CBA2R(1)), 0xabcd0001);
    expect(hex(with16.r32(with16.gr1(CBA2R(1))))).toBe('0xabcd0001');
    expect(hex(without.r32(without.gr1(CBA2R(1))))).toBe('0x1');
    with16.w32(with16.gr1(CBA2R(1)), 0);
    expect(with16.r32(with16.gr1(CBA2R(1)))).toBe(0);
  });

  it('CBAR.TYPE of banks below NUMS2CB stays 0 (stage 2 only); other banks keep the type written', () => {
    const d = new Dev({ contextBanks: 4, s2OnlyBanks: 2 });
    for (const n of [0, 1, 2, 3]) {
      for (const type of [1, 2, 3]) {
        d.w32(d.gr1(CBAR(n)), (type << 16) | 0x0134);
        const v = d.r32(d.gr1(CBAR(n)));
        expect((v >>> 16) & 3, `bank ${n} type ${type}`).toBe(n < 2 ? 0 : type);
        expect(v & 0xff).toBe(0x34); // VMID kept either way
      }
    }
  });
});

// ===========================================================================
// Fact 16: context bank address map
// ===========================================================================

describe('fact 16: context bank n lives at (NUMPAGE + n) << pgshift', () => {
  // One stage-1 table per bank, each mapping the same VA to a different PA.
  const tables = Array.from({ length: 8 }, (_, n) => {
    const t = s1Table(n);
    t.map(0x4000_0000, 0x9000_0000 + n * MiB, 4 * KiB, RW);
    return t;
  });

  it('worked examples: NUMPAGENDXB = 3, 4K pages: CB0 at 0x10000, CB5 at 0x15000; 64K pages: CB0 at 0x100000', () => {
    const d4 = new Dev({ contextBanks: 8, numPageNdxb: 3, pageKiB: 4 });
    expect(d4.cb(0, 0)).toBe(0x10000);
    expect(d4.cb(5, 0)).toBe(0x15000);
    expect(d4.s.cbOffset(5)).toBe(0x15000);
    const d64 = new Dev({ contextBanks: 8, numPageNdxb: 3, pageKiB: 64 });
    expect(d64.cb(0, 0)).toBe(0x100000);
    expect(d64.gr1(0)).toBe(0x10000);
  });

  for (const pageKiB of [4, 64] as const) {
    for (const ndxb of [0, 1, 3, 7]) {
      it(`${pageKiB}K register pages, NUMPAGENDXB = ${ndxb}: a bank programmed only at its computed offset is the bank that translates`, () => {
        const numPage = 2 ** (ndxb + 1);
        const numCb = Math.min(numPage, 8);
        const d = new Dev({ smrs: 2, sidBits: 8, contextBanks: numCb, numPageNdxb: ndxb, pageKiB });
        expect(d.pgShift).toBe(pageKiB === 4 ? 12 : 16);
        expect(d.numPage).toBe(numPage);
        for (let n = 0; n < numCb; n++) {
          expect(d.s.cbOffset(n)).toBe(d.cb(n, 0));
          programS1(d, n, tables[n]!.stage1Fields());
          expect(d.r64(d.cb(n, CB.TTBR0))).toBe((BigInt(n) << 48n) | BigInt(tables[n]!.root));
        }
        d.enable();
        d.attach(0, 7, 0);
        for (let n = 0; n < numCb; n++) {
          d.w32(S2CR(0), n);
          expect(d.s.dma(7, 0x4000_0abc, 'r', false), `bank ${n}`).toEqual(pa(0x9000_0abc + n * MiB));
          // A fault lands in that bank's FSR at that offset, and nowhere else.
          expect(d.s.dma(7, 0x4000_1000, 'r', false).kind).toBe('abort');
          for (let k = 0; k < numCb; k++) expect(d.fsr(k), `bank ${k} after a fault in ${n}`).toBe(k === n ? TF : 0);
          d.clearFsr(n);
        }
      });
    }
  }
});

// ===========================================================================
// Fact 17: FSR / FSYNR0 / FAR / CBFRSYNRA
// ===========================================================================

describe('fact 17: context fault records', () => {
  /** A 4K stage-1 table with one page at 1 GiB: tables exist at L0[0], L1[1], L2[0], L3[0]. */
  function faultBank(): { d: Dev; t: PageTable; n: number } {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 4 });
    const t = s1Table(1);
    t.map(0x4000_0000, 0x9000_0000, 4 * KiB, PROT_READ); // read-only
    const n = 2;
    programS1(d, n, t.stage1Fields());
    d.attach(0, 0x20, n, 0x0f); // stream IDs 0x20..0x2f
    d.enable();
    return { d, t, n };
  }

  it('FSYNR0.PLVL is the level of the missing descriptor; WNR / PNU / IND describe the transaction; FAR the input address', () => {
    const { d, n } = faultBank();
    const cases: Array<[number, Access, boolean, number]> = [
      [0x4000_1000, 'r', false, 3],
      [0x4020_0000, 'w', true, 2],
      [0x8000_0000, 'x', false, 1],
      [0x80_0000_0000, 'x', true, 0],
    ];
    for (const [va, acc, priv, level] of cases) {
      expect(d.s.dma(0x21, va + 0x18, acc, priv).kind).toBe('abort');
      expect(d.fsr(n)).toBe(TF);
      const syn = d.fsynr0(n);
      expect(syn & PLVL, hex(va)).toBe(level);
      expect((syn & WNR) !== 0).toBe(acc === 'w');
      expect((syn & PNU) !== 0).toBe(priv);
      expect((syn & IND) !== 0).toBe(acc === 'x');
      expect(d.far(n)).toBe(BigInt(va + 0x18));
      expect(d.r32(d.gr1(CBFRSYNRA(n))) & 0xffff).toBe(0x21);
      d.clearFsr(n);
    }
    // A permission fault (write to a read-only page) at level 3.
    expect(d.s.dma(0x2e, 0x4000_0010, 'w', false).kind).toBe('abort');
    expect(d.fsr(n)).toBe(PF);
    expect(d.fsynr0(n) & (PLVL | WNR)).toBe(3 | WNR);
    expect(d.r32(d.gr1(CBFRSYNRA(n))) & 0xffff).toBe(0x2e);
  });

  it('FSR is write-1-to-clear; a second fault sets MULTI and keeps the first syndrome', () => {
    const { d, n } = faultBank();
    const faults: Array<[number, number]> = [];
    d.s.on('contextFault', (cb, fsr) => faults.push([cb, fsr]));
    expect(d.s.dma(0x23, 0x4000_1234, 'r', false).kind).toBe('abort');
    expect(d.fsr(n)).toBe(TF);
    expect(faults).toEqual([[n, TF]]);
    // Second fault, of another kind, from another stream, privileged write at level 3.
    expect(d.s.dma(0x2a, 0x4000_0000, 'w', true).kind).toBe('abort');
    expect(hex(d.fsr(n))).toBe(hex((TF | MULTI) >>> 0)); // no PF: the first syndrome stays
    expect(d.far(n)).toBe(0x4000_1234n);
    expect(d.fsynr0(n) & (PLVL | WNR | PNU | IND)).toBe(3);
    expect(d.r32(d.gr1(CBFRSYNRA(n))) & 0xffff).toBe(0x23);
    // W1C: writing 0 changes nothing, MULTI clears MULTI only, TF clears TF.
    d.w32(d.cb(n, CB.FSR), 0);
    expect(hex(d.fsr(n))).toBe(hex((TF | MULTI) >>> 0));
    d.w32(d.cb(n, CB.FSR), MULTI);
    expect(d.fsr(n)).toBe(TF);
    d.w32(d.cb(n, CB.FSR), PF); // a bit that is not set
    expect(d.fsr(n)).toBe(TF);
    d.w32(d.cb(n, CB.FSR), TF);
    expect(d.fsr(n)).toBe(0);
    // Once clear, the next fault is recorded afresh.
    expect(d.s.dma(0x2a, 0x4000_0008, 'w', true).kind).toBe('abort');
    expect(d.fsr(n)).toBe(PF);
    expect(d.far(n)).toBe(0x4000_0008n);
    expect(d.fsynr0(n) & (PLVL | WNR | PNU | IND)).toBe(3 | WNR | PNU);
    expect(d.r32(d.gr1(CBFRSYNRA(n))) & 0xffff).toBe(0x2a);
    // The driver's handler: write back what it read.
    d.w32(d.cb(n, CB.FSR), d.fsr(n));
    expect(d.fsr(n)).toBe(0);
  });
});

// ===========================================================================
// Fact 18: TLB maintenance value formats and sync
// ===========================================================================

/**
 * A cache whose invalidations complete only when the test releases them. It
 * extends NoCache (so lookups are still uncached walks) and overrides only the
 * maintenance side of the TranslationCache interface.
 */
class GatedCache extends NoCache {
  readonly seen: InvalidationScope[] = [];
  private outstanding = 0;
  override invalidate(scope: InvalidationScope): void {
    super.invalidate(scope);
    this.seen.push(scope);
    this.outstanding++;
  }
  override syncComplete(): boolean {
    return this.outstanding === 0;
  }
  release(): void {
    this.outstanding = 0;
  }
}

describe('fact 18: TLBI value formats and the sync protocol', () => {
  /** Bank 0: stage 2 (VMID 0x42); bank 2: stage 1 (CBAR.VMID 0x33, 16-bit ASIDs); bank 3: nested over bank 0. */
  function tlbDev(cache: TranslationCache, shape: SmmuShape = {}): Dev {
    const d = new Dev({ contextBanks: 4, s2OnlyBanks: 1, ...shape }, cache);
    d.w32(d.gr1(CBA2R(0)), CBA2R_VA64);
    d.w32(d.gr1(CBAR(0)), 0x42);
    d.w32(d.gr1(CBA2R(2)), CBA2R_VA64);
    d.w32(d.gr1(CBAR(2)), 0x0001f333);
    d.w32(d.cb(2, CB.TCR2), 5 | TCR2_AS);
    d.w32(d.gr1(CBA2R(3)), CBA2R_VA64);
    d.w32(d.gr1(CBAR(3)), 0x00030011);
    d.w32(d.cb(3, CB.TCR2), 5 | TCR2_AS);
    return d;
  }

  it('decodes each TLBI write into one invalidation scope (NoCache with keepLog)', () => {
    const cache = new NoCache();
    cache.keepLog = true;
    const d = tlbDev(cache);
    const log = cache.log;
    const next = (write: () => void): InvalidationScope => {
      const before = log.length;
      write();
      expect(log.length, 'exactly one invalidation per write').toBe(before + 1);
      return log[log.length - 1]!;
    };
    // TLBIVA: (iova >> 12) | (asid << 48) as one 64-bit write.
    const iova = 0x1234_5000;
    const value = (BigInt(iova) >> 12n) | (5n << 48n);
    expect(hex(value)).toBe('0x5000000012345');
    expect(next(() => d.w64(d.cb(2, CB.TLBIVA), value))).toEqual({ kind: 'va', vmid: 0x33, asid: 5, allAsids: false, va: iova, leaf: false });
    expect(next(() => d.w64(d.cb(2, CB.TLBIVAL), value))).toEqual({ kind: 'va', vmid: 0x33, asid: 5, allAsids: false, va: iova, leaf: true });
    expect(next(() => d.w64(d.cb(2, CB.TLBIVAA), 0x7f_0000_0001n))).toMatchObject({ kind: 'va', vmid: 0x33, allAsids: true, va: 0x7f_0000_0001 * 4096, leaf: false });
    // A 16-bit ASID and a 48-bit VA.
    expect(next(() => d.w64(d.cb(2, CB.TLBIVA), (0xbeefn << 48n) | (0xffff_ffff_f000n >> 12n)))).toMatchObject({ asid: 0xbeef, va: 0xffff_ffff_f000 });
    // VA[55] set: the TTBR1 half, sign-extended (0xffff_ffff_ffff_e000 -> -0x2000).
    expect(next(() => d.w64(d.cb(2, CB.TLBIVA), (5n << 48n) | (0xffff_ffff_ffff_e000n >> 12n) & 0xfff_ffff_ffffn))).toMatchObject({ va: -0x2000, asid: 5 });
    // TLBIASID.
    expect(next(() => d.w32(d.cb(2, CB.TLBIASID), 5))).toEqual({ kind: 'asid', vmid: 0x33, asid: 5 });
    // A nested bank's entries carry its stage-2 bank's VMID.
    expect(next(() => d.w32(d.cb(3, CB.TLBIASID), 9))).toEqual({ kind: 'asid', vmid: 0x42, asid: 9 });
    // TLBIIPAS2 / TLBIIPAS2L: ipa >> 12.
    const ipa = 0x8765_4321_0000;
    expect(next(() => d.w64(d.cb(0, CB.TLBIIPAS2), BigInt(ipa) >> 12n))).toEqual({ kind: 'ipa', vmid: 0x42, ipa, leaf: false });
    expect(next(() => d.w64(d.cb(0, CB.TLBIIPAS2L), BigInt(0x12_3456_7000) >> 12n))).toEqual({ kind: 'ipa', vmid: 0x42, ipa: 0x12_3456_7000, leaf: true });
    // TLBIALL of a stage-2 bank is by VMID; of a stage-1 bank, the context.
    expect(next(() => d.w32(d.cb(0, CB.TLBIALL), 0))).toEqual({ kind: 'vmid', vmid: 0x42 });
    expect(next(() => d.w32(d.cb(2, CB.TLBIALL), 0))).toEqual({ kind: 'context', cb: 2, vmid: 0x33 });
    // Global: TLBIVMID, TLBIALLNSNH, TLBIALLH.
    expect(next(() => d.w32(GR0.TLBIVMID, 0x42))).toEqual({ kind: 'vmid', vmid: 0x42 });
    expect(next(() => d.w32(GR0.TLBIALLNSNH, 0))).toEqual({ kind: 'all' });
    expect(next(() => d.w32(GR0.TLBIALLH, 0))).toEqual({ kind: 'all' });
    expect(cache.counts).toEqual({ all: 2, vmid: 2, context: 1, asid: 2, va: 5, ipa: 2 });
    // Syncs complete at once with no cache: status reads 0.
    d.w32(d.cb(2, CB.TLBSYNC), 0xffffffff);
    expect(d.r32(d.cb(2, CB.TLBSTATUS)) & 1).toBe(0);
    d.w32(GR0.sTLBGSYNC, 0xffffffff);
    expect(d.r32(GR0.sTLBGSTATUS) & 1).toBe(0);
    // Syncs and status reads are not invalidations.
    expect(log.length).toBe(14);
  });

  it('with sCR0.VMID16EN the VMID comes from CBA2R.VMID16', () => {
    const cache = new NoCache();
    cache.keepLog = true;
    const d = tlbDev(cache, { vmid16: true });
    d.w32(d.gr1(CBA2R(0)), (CBA2R_VA64 | (0xabcd << 16)) >>> 0);
    d.w32(d.gr1(CBA2R(2)), (CBA2R_VA64 | (0x1234 << 16)) >>> 0);
    d.w32(d.cb(0, CB.TLBIALL), 0);
    expect(cache.log.at(-1)).toEqual({ kind: 'vmid', vmid: 0x42 }); // VMID16EN still 0
    d.w32(GR0.sCR0, VMID16EN | USFCFG);
    d.w32(d.cb(0, CB.TLBIALL), 0);
    expect(cache.log.at(-1)).toEqual({ kind: 'vmid', vmid: 0xabcd });
    d.w32(d.cb(3, CB.TLBIASID), 7);
    expect(cache.log.at(-1)).toEqual({ kind: 'asid', vmid: 0xabcd, asid: 7 });
    d.w32(d.cb(2, CB.TLBIASID), 7);
    expect(cache.log.at(-1)).toEqual({ kind: 'asid', vmid: 0x1234, asid: 7 });
    d.w32(GR0.TLBIVMID, 0xabcd);
    expect(cache.log.at(-1)).toEqual({ kind: 'vmid', vmid: 0xabcd });
  });

  it('TLBSTATUS / sTLBGSTATUS bit 0 reads 1 while an invalidation is incomplete and 0 once it completes', () => {
    const cache = new GatedCache();
    const d = tlbDev(cache);
    expect(d.r32(d.cb(2, CB.TLBSTATUS)) & 1).toBe(0);
    expect(d.r32(GR0.sTLBGSTATUS) & 1).toBe(0);
    // Context invalidation + context sync.
    d.w64(d.cb(2, CB.TLBIVA), 0x0005000000012345n);
    d.w32(d.cb(2, CB.TLBSYNC), 0xffffffff);
    for (let i = 0; i < 5; i++) expect(d.r32(d.cb(2, CB.TLBSTATUS)) & 1).toBe(1);
    cache.release();
    expect(d.r32(d.cb(2, CB.TLBSTATUS)) & 1).toBe(0);
    // Global invalidation + global sync.
    d.w32(GR0.TLBIVMID, 0x42);
    d.w32(GR0.sTLBGSYNC, 0xffffffff);
    expect(d.r32(GR0.sTLBGSTATUS) & 1).toBe(1);
    cache.release();
    expect(d.r32(GR0.sTLBGSTATUS) & 1).toBe(0);
    // The driver's poll loop ends once the invalidation completes (here on the 4th read).
    d.w32(d.cb(2, CB.TLBIASID), 5);
    d.w32(d.cb(2, CB.TLBSYNC), 0xffffffff);
    let reads = 0;
    for (let spin = 0; spin < 10; spin++) {
      reads++;
      if ((d.r32(d.cb(2, CB.TLBSTATUS)) & 1) === 0) break;
      if (reads === 3) cache.release();
    }
    expect(reads).toBe(4);
    expect(cache.seen.map((s) => s.kind)).toEqual(['va', 'vmid', 'asid']);
  });
});

// ===========================================================================
// Fact 19: stall and RESUME
// ===========================================================================

describe('fact 19: stall (SCTLR.CFCFG = 1) and RESUME', () => {
  function stallBank(): { d: Dev; t: PageTable; n: number; stalls: Array<[number, number]> } {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 4 });
    const t = s1Table(4);
    t.map(0x4000_0000, 0x9000_0000, 4 * KiB, RW);
    const n = 1;
    programS1(d, n, t.stage1Fields(), { sctlr: SCTLR_FAULTS | CFCFG });
    d.attach(0, 0x30, n);
    d.enable();
    const stalls: Array<[number, number]> = [];
    d.s.on('stall', (cb, tag) => stalls.push([cb, tag]));
    return { d, t, n, stalls };
  }

  it('a fault stalls: FSR.SS set, transaction held; W1C does not clear SS; RESUME = 1 terminates', () => {
    const { d, n, stalls } = stallBank();
    const o = d.s.dma(0x30, 0x4000_5678, 'r', true);
    expect(o.kind).toBe('stall');
    const tag = (o as { tag: number }).tag;
    expect(stalls).toEqual([[n, tag]]);
    expect(hex(d.fsr(n))).toBe(hex((TF | SS) >>> 0));
    expect(d.far(n)).toBe(0x4000_5678n);
    expect(d.s.pending(tag)).toEqual({ kind: 'stall', tag });
    // Clearing every W1C bit leaves SS.
    d.w32(d.cb(n, CB.FSR), 0xffffffff);
    expect(hex(d.fsr(n))).toBe(hex(SS));
    expect(d.s.pending(tag)).toEqual({ kind: 'stall', tag });
    // RESUME with TERMINATE.
    d.w32(d.cb(n, CB.RESUME), 1);
    expect(d.s.pending(tag)?.kind).toBe('abort');
    expect(d.fsr(n)).toBe(0);
    // A RESUME with nothing stalled does nothing.
    d.w32(d.cb(n, CB.RESUME), 0);
    expect(d.fsr(n)).toBe(0);
    expect(d.s.dma(0x30, 0x4000_0010, 'r', true)).toEqual(pa(0x9000_0010));
  });

  it('demand paging: stall on an unmapped page, map it, clear FSR, RESUME = 0 retries and completes', () => {
    const { d, t, n } = stallBank();
    const o = d.s.dma(0x30, 0x4020_0abc, 'w', false);
    expect(o.kind).toBe('stall');
    const tag = (o as { tag: number }).tag;
    expect(d.fsynr0(n) & (PLVL | WNR)).toBe(2 | WNR);
    // The fault handler pages in, invalidates, clears FSR, resumes.
    t.map(0x4020_0000, 0x9123_4000, 4 * KiB, RW);
    d.w64(d.cb(n, CB.TLBIVA), (0x4020_0000n >> 12n) | (4n << 48n));
    d.w32(d.cb(n, CB.TLBSYNC), 0);
    expect(d.r32(d.cb(n, CB.TLBSTATUS)) & 1).toBe(0);
    d.w32(d.cb(n, CB.FSR), d.fsr(n));
    expect(hex(d.fsr(n))).toBe(hex(SS));
    d.w32(d.cb(n, CB.RESUME), 0);
    expect(d.s.pending(tag)).toEqual(pa(0x9123_4abc));
    expect(d.fsr(n)).toBe(0);
  });

  it('RESUME = 0 without fixing the tables refaults: stalled again with the same tag', () => {
    const { d, t, n, stalls } = stallBank();
    const o = d.s.dma(0x30, 0x4000_3000, 'r', false);
    expect(o.kind).toBe('stall');
    const tag = (o as { tag: number }).tag;
    d.w32(d.cb(n, CB.FSR), TF);
    d.w32(d.cb(n, CB.RESUME), 0);
    expect(d.s.pending(tag)).toEqual({ kind: 'stall', tag });
    expect(hex(d.fsr(n))).toBe(hex((TF | SS) >>> 0));
    expect(stalls).toEqual([
      [n, tag],
      [n, tag],
    ]);
    // Now fix it, and the retry completes.
    t.map(0x4000_3000, 0x9555_3000, 4 * KiB, PROT_READ);
    d.w32(d.cb(n, CB.FSR), TF);
    d.w32(d.cb(n, CB.RESUME), 0);
    expect(d.s.pending(tag)).toEqual(pa(0x9555_3000));
    expect(d.fsr(n)).toBe(0);
  });
});

// ===========================================================================
// Global faults, CLIENTPD, stream indexing
// ===========================================================================

describe('global faults and stream routing', () => {
  it('unidentified stream with sCR0.USFCFG = 1: sGFSR.USF, sGFSYNR0/1, MULTI on a second fault; USFCFG = 0 bypasses', () => {
    const d = new Dev({ smrs: 4, sidBits: 10, contextBanks: 2 });
    const global: number[] = [];
    d.s.on('globalFault', (v) => global.push(v));
    d.attach(0, 0x10, S2CR_BYPASS);
    d.enable();
    expect(d.s.dma(0x7b, 0x1000, 'w', true).kind).toBe('abort');
    expect(hex(d.sgfsr())).toBe(hex(sGFSR_USF));
    expect(global).toEqual([sGFSR_USF]);
    expect(d.r32(GR0.sGFSYNR1) & 0xffff).toBe(0x7b);
    expect(d.r32(GR0.sGFSYNR0) & (GSYN_WNR | GSYN_PNU | GSYN_IND)).toBe(GSYN_WNR | GSYN_PNU);
    // Second: MULTI, first syndrome kept.
    expect(d.s.dma(0x7c, 0x2000, 'x', false).kind).toBe('abort');
    expect(hex(d.sgfsr())).toBe(hex((sGFSR_USF | sGFSR_MULTI) >>> 0));
    expect(d.r32(GR0.sGFSYNR1) & 0xffff).toBe(0x7b);
    expect(d.r32(GR0.sGFSYNR0) & (GSYN_WNR | GSYN_PNU | GSYN_IND)).toBe(GSYN_WNR | GSYN_PNU);
    // W1C.
    d.w32(GR0.sGFSR, sGFSR_MULTI);
    expect(d.sgfsr()).toBe(sGFSR_USF);
    d.w32(GR0.sGFSR, d.sgfsr());
    expect(d.sgfsr()).toBe(0);
    expect(d.s.dma(0x7d, 0x3000, 'x', false).kind).toBe('abort');
    expect(d.r32(GR0.sGFSYNR0) & (GSYN_WNR | GSYN_PNU | GSYN_IND)).toBe(GSYN_IND);
    expect(d.r32(GR0.sGFSYNR1) & 0xffff).toBe(0x7d);
    d.clearGlobal();
    expect(d.s.dma(0x7e, 0x3000, 'r', false).kind).toBe('abort');
    expect(d.r32(GR0.sGFSYNR0) & (GSYN_WNR | GSYN_PNU | GSYN_IND)).toBe(0);
    d.clearGlobal();
    // A matched stream is unaffected.
    expect(d.s.dma(0x10, 0x4000, 'r', false)).toEqual(pa(0x4000));
    // USFCFG = 0: unidentified streams bypass.
    d.w32(GR0.sCR0, GFRE | GFIE);
    expect(d.s.dma(0x7b, 0x1_2345_6000, 'w', true)).toEqual(pa(0x1_2345_6000));
    expect(d.sgfsr()).toBe(0);
  });

  it('sCR0.CLIENTPD = 1 bypasses every transaction', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 2 });
    d.attach(0, 5, S2CR_FAULT);
    d.attach(1, 6, 0); // translate in bank 0, which has SCTLR.M = 1 and no tables at all
    d.w32(d.gr1(CBA2R(0)), CBA2R_VA64);
    d.w32(d.gr1(CBAR(0)), 1 << 16);
    d.w32(d.cb(0, CB.SCTLR), SCTLR_FAULTS);
    d.w32(GR0.sCR0, CLIENTPD | USFCFG | SMCFCFG | GFRE);
    for (const sid of [5, 6, 99]) expect(d.s.dma(sid, 0xdead_b000, 'w', false)).toEqual(pa(0xdead_b000));
    expect(d.sgfsr()).toBe(0);
    expect(d.fsr(0)).toBe(0);
    d.w32(GR0.sCR0, USFCFG | SMCFCFG | GFRE);
    expect(d.s.dma(5, 0xdead_b000, 'w', false).kind).toBe('abort');
    expect(d.s.dma(6, 0xdead_b000, 'w', false).kind).toBe('abort');
    expect(d.fsr(0) & TF).toBe(TF);
    expect(d.s.dma(99, 0xdead_b000, 'w', false).kind).toBe('abort');
    expect(d.sgfsr() & 0x1ff).toBe(sGFSR_USF);
  });

  it('stream indexing (IDR0.SMS = 0): the stream ID indexes S2CR directly', () => {
    const d = new Dev({ smrs: 0, sidBits: 4, contextBanks: 2 });
    expect((d.r32(GR0.IDR0) >>> 27) & 1).toBe(0);
    const t0 = s1Table(0);
    t0.map(0x4000_0000, 0x9000_0000, 4 * KiB, RW);
    const t1 = s1Table(1);
    t1.map(0x4000_0000, 0xa000_0000, 4 * KiB, RW);
    programS1(d, 0, t0.stage1Fields());
    programS1(d, 1, t1.stage1Fields());
    for (let i = 0; i < 16; i++) d.w32(S2CR(i), S2CR_FAULT);
    d.w32(S2CR(3), S2CR_BYPASS);
    d.w32(S2CR(5), 0);
    d.w32(S2CR(9), 1);
    d.enable();
    expect(d.s.dma(3, 0x4000_0040, 'r', false)).toEqual(pa(0x4000_0040));
    expect(d.s.dma(5, 0x4000_0040, 'r', false)).toEqual(pa(0x9000_0040));
    expect(d.s.dma(9, 0x4000_0040, 'r', false)).toEqual(pa(0xa000_0040));
    for (const sid of [0, 4, 7, 15]) expect(d.s.dma(sid, 0x4000_0040, 'r', false).kind, `sid ${sid}`).toBe('abort');
    expect(d.sgfsr()).toBe(0);
  });
});

// ===========================================================================
// Nested translation through the registers against the walker
// ===========================================================================

const FSR_MASKED = (d: Dev, n: number): number => d.fsr(n) & FSR_ALL;

function accCode(acc: Access, priv: boolean): number {
  return (acc === 'w' ? ACC_WRITE : acc === 'x' ? ACC_EXEC : ACC_READ) | (priv ? 0 : ACC_UNPRIV);
}

interface Tally {
  pa: number;
  s1: number;
  s2: number;
  ptw: number;
}

/**
 * One transaction through the registers, compared with translate() on the
 * regime decoded from the builders' fields; fault records checked in the bank
 * that must hold them, then cleared.
 */
function compareOne(d: Dev, sid: number, s1Bank: number, s2Bank: number, regime: Regime, va: number, acc: Access, priv: boolean, tally: Tally): void {
  const res = new WalkResult();
  const ok = translate(mem, regime, va, accCode(acc, priv), res);
  const out = d.s.dma(sid, va, acc, priv);
  const what = `va ${hex(va)} ${acc} ${priv ? 'priv' : 'unpriv'}`;
  if (ok) {
    expect(out, what).toEqual(pa(res.pa));
    expect(FSR_MASKED(d, s1Bank), what).toBe(0);
    expect(FSR_MASKED(d, s2Bank), what).toBe(0);
    tally.pa++;
    return;
  }
  expect(out.kind, what).toBe('abort');
  const rec = res.faultStage === 2 ? s2Bank : s1Bank;
  const other = rec === s1Bank ? s2Bank : s1Bank;
  const w = `${what}: ${res.faultName} fault, stage ${res.faultStage}, level ${res.faultLevel}${res.s1ptw ? ', s1ptw' : ''}`;
  expect(hex(FSR_MASKED(d, rec)), w).toBe(hex(FSR_OF_FAULT[res.fault]!));
  expect(FSR_MASKED(d, other), w).toBe(0);
  const syn = d.fsynr0(rec);
  expect(syn & PLVL, w).toBe(res.faultLevel);
  expect((syn & PTWF) !== 0, w).toBe(res.s1ptw);
  expect(d.far(rec), w).toBe(u64(va));
  expect(d.r32(d.gr1(CBFRSYNRA(rec))) & 0xffff, w).toBe(sid);
  if (!res.s1ptw) {
    expect((syn & WNR) !== 0, w).toBe(acc === 'w');
    expect((syn & PNU) !== 0, w).toBe(priv);
    expect((syn & IND) !== 0, w).toBe(acc === 'x');
  }
  if (res.faultStage === 2) {
    expect((syn >>> 16) & 0xff, w).toBe(s1Bank);
    expectIpafar(d, rec, res.faultIpa, w);
    tally.s2++;
    if (res.s1ptw) tally.ptw++;
  } else {
    tally.s1++;
  }
  d.clearFsr(rec);
}

describe('nested translation through the registers agrees with the walker', () => {
  it('stage-2 faults on stage-1 table walks: PTWF, S1CBNDX, IPAFAR in the stage-2 bank', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 6, s2OnlyBanks: 2, ias: 40, oas: 40 });
    const { s1, s2 } = guestTables(0x42, 9);
    const S2B = 1;
    const S1B = 4;
    programS2(d, S2B, s2.stage2Fields(), 0x42);
    programS1(d, S1B, s1.stage1Fields(), { type: 3, s2Bank: S2B });
    d.attach(0, 0x44, S1B);
    d.enable();
    const regime = decodeStage2(s2.stage2Fields(), decodeStage1(s1.stage1Fields(), new Regime()));
    const tally: Tally = { pa: 0, s1: 0, s2: 0, ptw: 0 };
    const va = GUEST_VA + 0x5_4320;
    expect(d.s.dma(0x44, va, 'r', false)).toEqual(pa(GUEST_PA + 0x5_4320));

    // Unmap (at stage 2) the guest page holding the stage-1 root table.
    const rootPage = s1.root - (s1.root % 4096);
    const rootPagePa = s2.ipaToPa(rootPage);
    expect(s2.unmap(rootPage, 4096)).toBe(4096);
    expect(d.s.dma(0x44, va, 'w', false).kind).toBe('abort');
    expect(d.fsr(S1B)).toBe(0);
    expect(d.fsr(S2B)).toBe(TF);
    let syn = d.fsynr0(S2B);
    expect(syn & PTWF).toBe(PTWF);
    expect((syn >>> 16) & 0xff).toBe(S1B);
    expect(syn & PLVL).toBe(3); // the stage-2 walk of the table's IPA stops at level 3
    const rootDesc = s1.root + (Math.floor(va / 2 ** 39) % 512) * 8;
    expectIpafar(d, S2B, rootDesc);
    expect(d.far(S2B)).toBe(BigInt(va));
    expect(d.r32(d.gr1(CBFRSYNRA(S2B))) & 0xffff).toBe(0x44);
    d.clearFsr(S2B);
    compareOne(d, 0x44, S1B, S2B, regime, va + 8, 'r', true, tally);

    // Restore it; unmap the page of the level-1 table instead (its address read from the root descriptor).
    s2.map(rootPage, rootPagePa, 4096, RW);
    expect(d.s.dma(0x44, va, 'r', false)).toEqual(pa(GUEST_PA + 0x5_4320));
    const l1 = Number(mem.read64(s2.ipaToPa(rootDesc)) & 0xffff_ffff_f000n);
    const l1Pa = s2.ipaToPa(l1);
    expect(l1).toBeGreaterThanOrEqual(GUEST_WIN_IPA);
    expect(s2.unmap(l1, 4096)).toBe(4096);
    expect(d.s.dma(0x44, va, 'x', true).kind).toBe('abort');
    syn = d.fsynr0(S2B);
    expect(d.fsr(S2B)).toBe(TF);
    expect(syn & PTWF).toBe(PTWF);
    expect((syn >>> 16) & 0xff).toBe(S1B);
    expectIpafar(d, S2B, l1 + (Math.floor(va / 2 ** 30) % 512) * 8);
    d.clearFsr(S2B);
    compareOne(d, 0x44, S1B, S2B, regime, va, 'r', false, tally);
    s2.map(l1, l1Pa, 4096, RW);
    expect(d.s.dma(0x44, va, 'r', false)).toEqual(pa(GUEST_PA + 0x5_4320));

    // A stage-2 fault on the final IPA: not PTWF, IPAFAR = the output IPA.
    expect(s2.unmap(GUEST_IPA, 2 * MiB)).toBe(2 * MiB);
    expect(d.s.dma(0x44, va, 'w', false).kind).toBe('abort');
    syn = d.fsynr0(S2B);
    expect(d.fsr(S2B)).toBe(TF);
    expect(syn & PTWF).toBe(0);
    expect(syn & WNR).toBe(WNR);
    expect((syn >>> 16) & 0xff).toBe(S1B);
    expectIpafar(d, S2B, GUEST_IPA + 0x5_4320);
    d.clearFsr(S2B);
    compareOne(d, 0x44, S1B, S2B, regime, va, 'r', false, tally);
    expect(tally).toEqual({ pa: 0, s1: 0, s2: 3, ptw: 2 });
  });

  it('random stage-2 and guest stage-1 tables, banks and addresses (fast-check)', () => {
    const tally: Tally = { pa: 0, s1: 0, s2: 0, ptw: 0 };
    fc.assert(
      fc.property(nestedCase, (c) => {
        runNestedCase(c, tally);
      }),
      { numRuns: 60 },
    );
    // The runs covered every outcome.
    expect(tally.pa).toBeGreaterThan(0);
    expect(tally.s1).toBeGreaterThan(0);
    expect(tally.s2).toBeGreaterThan(0);
    expect(tally.ptw).toBeGreaterThan(0);
  });
});

const PA_SIZES = [32, 36, 40, 42, 44, 48];

/** Every (granule, IPA size, PA size) a stage-2 PageTable can be built for. */
const VALID_S2: Array<{ granule: GranuleKiB; ias: number; oas: number }> = [];
for (const granule of [4, 16, 64] as GranuleKiB[]) {
  for (const ias of PA_SIZES) {
    for (const oas of PA_SIZES) {
      let start = naturalStartLevel(granuleShift(granule), ias);
      if (concatMandatory(granule, start, ias, oas)) start++;
      if (s2ConfigError(granule, 64 - ias, s2Sl0For(granule, start)) === null) VALID_S2.push({ granule, ias, oas });
    }
  }
}

const arb48 = fc.tuple(fc.nat(0xffffff), fc.nat(0xffffff)).map(([a, b]) => a * 2 ** 24 + b);
const S1_PROTS = [RW, RW, PROT_READ, PROT_READ | PROT_NOEXEC, RW | PROT_PRIV, RW | PROT_NOEXEC, PROT_READ | PROT_PRIV];
const S2_PROTS = [RW, RW, PROT_READ, PROT_WRITE, RW | PROT_NOEXEC, PROT_READ | PROT_NOEXEC];

const nestedCase = fc.record({
  s2: fc.constantFrom(...VALID_S2),
  g1: fc.constantFrom<GranuleKiB>(4, 16, 64),
  s1ias: fc.integer({ min: 25, max: 48 }),
  s1oasPick: fc.nat(),
  numCb: fc.integer({ min: 2, max: 8 }),
  s2onlyPick: fc.nat(),
  s1BankPick: fc.nat(),
  s2BankPick: fc.nat(),
  pageKiB: fc.constantFrom<4 | 64>(4, 64),
  sid: fc.nat(0x7fff),
  maps: fc.array(
    fc.record({
      va: arb48,
      ipa: arb48,
      pa: arb48,
      sizePick: fc.nat(),
      count: fc.integer({ min: 1, max: 2 }),
      near: fc.boolean(),
      prot1: fc.constantFrom(...S1_PROTS),
      prot2: fc.constantFrom(...S2_PROTS),
      s2mode: fc.constantFrom(0, 1, 2, 2),
      s2off: fc.nat(),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  probes: fc.array(
    fc.record({
      kind: fc.constantFrom('s2mapped', 's2mapped', 's2mapped', 's2mapped', 's1mapped', 'random', 'beyond', 'negative'),
      which: fc.nat(),
      off: fc.nat(),
      acc: fc.constantFrom<Access>('r', 'w', 'x'),
      priv: fc.boolean(),
    }),
    { minLength: 4, maxLength: 14 },
  ),
  /** One run in three unmaps (at stage 2) a page of the guest's table window. */
  breakWindow: fc.tuple(fc.nat(2), fc.nat()).map(([b, k]) => (b === 0 ? k : null)),
});

type NestedCase = typeof nestedCase extends fc.Arbitrary<infer T> ? T : never;

function runNestedCase(c: NestedCase, tally: Tally): void {
  const g2 = c.s2.granule;
  const G2 = 2 ** granuleShift(g2);
  const s2 = createStage2(new PhysTables(mem, PROP_S2, PROP_S2 + PROP_S2_SIZE), { granule: g2, ias: c.s2.ias, oas: c.s2.oas }, 0x5a);
  s2.map(PROP_WIN_IPA, PROP_WIN_PA, PROP_WIN_SIZE, RW);
  const s1oasChoices = PA_SIZES.filter((b) => b <= c.s2.ias);
  const s1oas = s1oasChoices[c.s1oasPick % s1oasChoices.length]!;
  const s1 = createGuestStage1(mem, s2, PROP_WIN_IPA, PROP_WIN_IPA + PROP_WIN_SIZE, { granule: c.g1, ias: c.s1ias, oas: s1oas }, 0x77);

  // Stage-1 mappings VA -> IPA; for each, stage 2 maps none, part or (up to 2 MiB of) all of the output.
  const mapped: Array<{ va: number; size: number; s2va: number; s2len: number }> = [];
  for (const m of c.maps) {
    const shift = s1.leafShifts[m.sizePick % s1.leafShifts.length]!;
    const leaf = 2 ** shift;
    const size = leaf * m.count;
    if (size * 2 > 2 ** c.s1ias || size * 2 > 2 ** s1oas) continue;
    const vaBase = m.near && mapped.length > 0 ? mapped[0]!.va + (m.va % (64 * leaf)) : m.va % (2 ** c.s1ias - size);
    const va = Math.floor(vaBase / leaf) * leaf;
    const ipa = Math.floor((m.ipa % (2 ** s1oas - size)) / leaf) * leaf;
    if (va + size > 2 ** c.s1ias) continue;
    if (ipa < PROP_WIN_IPA + PROP_WIN_SIZE && ipa + size > PROP_WIN_IPA) continue;
    try {
      s1.map(va, ipa, size, m.prot1);
    } catch (e) {
      if (e instanceof PgTableError) continue;
      throw e;
    }
    let s2va = va;
    let s2len = 0;
    if (m.s2mode !== 0) {
      const want = m.s2mode === 1 ? G2 : Math.min(Math.ceil(size / G2) * G2, Math.max(2 * MiB, G2));
      const startOff = Math.floor((m.s2off % Math.max(1, size - Math.min(want, size) + 1)) / G2) * G2;
      const ipaStart = Math.floor((ipa + startOff) / G2) * G2;
      const paStart = Math.floor((m.pa % (2 ** c.s2.oas - want)) / G2) * G2;
      try {
        s2.map(ipaStart, paStart, want, m.prot2);
        s2va = va + (ipaStart - ipa);
        s2len = want;
      } catch (e) {
        if (!(e instanceof PgTableError)) throw e;
      }
    }
    mapped.push({ va, size, s2va, s2len });
  }

  // Optionally unmap, at stage 2, one page of the guest's table window that holds tables.
  if (c.breakWindow !== null) {
    const pages = Math.max(1, Math.ceil(s1.tableBytesInUse / G2));
    const k = c.breakWindow % pages;
    expect(s2.unmap(PROP_WIN_IPA + k * G2, G2)).toBe(G2);
  }

  // The SMMU: stage-2 bank anywhere, nested bank at or above NUMS2CB.
  const numCb = c.numCb;
  const numS2Cb = c.s2onlyPick % numCb;
  const s1Bank = numS2Cb + (c.s1BankPick % (numCb - numS2Cb));
  let s2Bank = c.s2BankPick % numCb;
  if (s2Bank === s1Bank) s2Bank = (s2Bank + 1) % numCb;
  const d = new Dev({ nested: true, smrs: 4, sidBits: 15, contextBanks: numCb, s2OnlyBanks: numS2Cb, pageKiB: c.pageKiB, ias: c.s2.ias, oas: c.s2.oas });
  const f2 = s2.stage2Fields();
  const f1 = s1.stage1Fields();
  programS2(d, s2Bank, f2, 0x5a);
  programS1(d, s1Bank, f1, { type: 3, s2Bank });
  expect(d.r32(d.gr1(CBAR(s1Bank)))).toBe((0x30000 | (s2Bank << 8)) >>> 0);
  d.attach(0, c.sid, s1Bank);
  d.enable();
  const regime = decodeStage2(f2, decodeStage1(f1, new Regime()));

  for (const p of c.probes) {
    let va: number;
    const m = mapped.length > 0 ? mapped[p.which % mapped.length]! : null;
    switch (p.kind) {
      case 's2mapped':
        va = m === null ? p.off : m.s2len > 0 ? m.s2va + (p.off % m.s2len) : m.va + (p.off % m.size);
        break;
      case 's1mapped':
        va = m === null ? p.off : m.va + ((p.off * 4099) % m.size);
        break;
      case 'random':
        va = (p.off * 65537) % 2 ** c.s1ias;
        break;
      case 'beyond':
        va = 2 ** c.s1ias + (p.off % 2 ** 20);
        break;
      default:
        va = -(1 + (p.off % 2 ** 30));
    }
    compareOne(d, c.sid, s1Bank, s2Bank, regime, va, p.acc, p.priv, tally);
  }
}

// ===========================================================================
// Bad register writes
// ===========================================================================

describe('bad register writes never throw and behave sensibly', () => {
  it('a stage-1 CBAR type in a stage-2-only bank reads as type 0, and the bank works as a stage-2 bank', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 4, s2OnlyBanks: 2, ias: 40, oas: 40 });
    const { s2 } = guestTables(0x42);
    programS2(d, 1, s2.stage2Fields(), 0x42);
    expect(() => d.w32(d.gr1(CBAR(1)), 0x00030342)).not.toThrow(); // nested type, CBNDX 3
    expect(d.r32(d.gr1(CBAR(1))) >>> 16).toBe(0);
    expect(d.r32(d.gr1(CBAR(1))) & 0xff).toBe(0x42);
    d.attach(0, 1, 1);
    d.enable();
    expect(d.s.dma(1, GUEST_IPA + 0x777, 'r', false)).toEqual(pa(GUEST_PA + 0x777));
    expect(d.s.dma(1, 0x20_0000, 'r', false).kind).toBe('abort'); // unmapped IPA: stage-2 fault in bank 1
    expect(d.fsr(1)).toBe(TF);
  });

  it('CBAR type 3 without IDR0.NTS: transactions abort', () => {
    const d = new Dev({ nested: false, smrs: 4, sidBits: 8, contextBanks: 4, ias: 40, oas: 40 });
    expect((d.r32(GR0.IDR0) >>> 28) & 1).toBe(0);
    const { s1, s2 } = guestTables(0x42);
    programS2(d, 0, s2.stage2Fields(), 0x42);
    expect(() => programS1(d, 2, s1.stage1Fields(), { type: 3, s2Bank: 0 })).not.toThrow();
    d.attach(0, 2, 2);
    d.attach(1, 3, 0);
    d.enable();
    expect(d.s.dma(2, GUEST_VA + 0x10, 'r', false).kind).toBe('abort');
    expect(d.s.dma(2, GUEST_VA + 0x10, 'w', true).kind).toBe('abort');
    // The stage-2 bank itself is fine.
    expect(d.s.dma(3, GUEST_IPA + 0x10, 'r', false)).toEqual(pa(GUEST_PA + 0x10));
  });

  describe('reserved or out-of-range TCR fields: a translation fault at level 0, recorded in FSR', () => {
    const host = s1Table(2);
    host.map(0x4000_0000, 0x9000_0000, 4 * KiB, RW);
    const good1 = host.stage1Fields();
    const { s1: guest, s2 } = guestTables(0x42);
    const good2 = s2.stage2Fields();

    function check(d: Dev, sid: number, va: number, n: number, expectPa: number, breakIt: () => void, fix: () => void, s1cb = -1): void {
      expect(d.s.dma(sid, va, 'r', false)).toEqual(pa(expectPa));
      expect(() => breakIt()).not.toThrow();
      let o: DmaOutcome | undefined;
      expect(() => (o = d.s.dma(sid, va, 'w', true))).not.toThrow();
      expect(o!.kind).toBe('abort');
      expect(d.fsr(n)).toBe(TF);
      expect(d.fsynr0(n) & PLVL).toBe(0);
      expect(d.fsynr0(n) & WNR).toBe(WNR);
      expect(d.far(n)).toBe(BigInt(va));
      expect(d.r32(d.gr1(CBFRSYNRA(n))) & 0xffff).toBe(sid);
      if (s1cb >= 0) expect((d.fsynr0(n) >>> 16) & 0xff).toBe(s1cb);
      d.clearFsr(n);
      fix();
      expect(d.s.dma(sid, va, 'r', false)).toEqual(pa(expectPa));
      expect(d.fsr(n)).toBe(0);
    }

    function dev(): Dev {
      const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 4, s2OnlyBanks: 1, ias: 40, oas: 40 });
      programS1(d, 1, good1);
      programS2(d, 0, good2, 0x42);
      programS1(d, 2, guest.stage1Fields(), { type: 3, s2Bank: 0 });
      d.attach(0, 1, 1);
      d.attach(1, 2, 0);
      d.attach(2, 3, 2);
      d.enable();
      return d;
    }

    const s2cases: Array<[string, Stage2Fields]> = [
      ['SL0 = 3 (reserved)', { ...good2, SL0: 3 }],
      ['T0SZ = 10 (below 16)', { ...good2, T0SZ: 10 }],
      ['T0SZ = 45 (above 39)', { ...good2, T0SZ: 45 }],
      ['SL0 inconsistent with T0SZ', { ...good2, SL0: 0, T0SZ: 16 }],
      ['TG0 = 3 (reserved)', { ...good2, TG0: 3 }],
    ];
    for (const [name, bad] of s2cases) {
      it(`stage-2 bank, ${name}`, () => {
        const d = dev();
        check(
          d,
          2,
          GUEST_IPA + 0x40,
          0,
          GUEST_PA + 0x40,
          () => d.w32(d.cb(0, CB.TCR), tcrS2(bad)),
          () => d.w32(d.cb(0, CB.TCR), tcrS2(good2)),
        );
      });
      it(`nested bank whose stage-2 bank has ${name}: recorded in the stage-2 bank`, () => {
        const d = dev();
        check(
          d,
          3,
          GUEST_VA + 0x40,
          0,
          GUEST_PA + 0x40,
          () => d.w32(d.cb(0, CB.TCR), tcrS2(bad)),
          () => d.w32(d.cb(0, CB.TCR), tcrS2(good2)),
          2,
        );
        expect(d.fsr(2)).toBe(0);
      });
    }

    const s1cases: Array<[string, number]> = [
      ['T0SZ = 8 (below 16)', (tcrS1(good1) & ~0x3f) | 8],
      ['T0SZ = 50 (above 39)', (tcrS1(good1) & ~0x3f) | 50],
      ['TG0 = 3 (reserved)', tcrS1(good1) | (3 << 14)],
    ];
    for (const [name, badTcr] of s1cases) {
      it(`stage-1 bank, ${name}`, () => {
        const d = dev();
        check(
          d,
          1,
          0x4000_0040,
          1,
          0x9000_0040,
          () => d.w32(d.cb(1, CB.TCR), badTcr >>> 0),
          () => d.w32(d.cb(1, CB.TCR), tcrS1(good1)),
        );
      });
    }
  });

  it('an out-of-range S2CR.CBNDX is a global fault (sGFSR.UCBF) and aborts', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 4 });
    d.attach(0, 0x11, 4); // NUMCB = 4: bank 4 does not exist
    d.attach(1, 0x12, 0xff);
    d.enable();
    expect(() => d.s.dma(0x11, 0x1000, 'r', false)).not.toThrow();
    expect(d.s.dma(0x11, 0x1000, 'r', false).kind).toBe('abort');
    expect(d.sgfsr() & 0x1ff).toBe(sGFSR_UCBF);
    expect(d.r32(GR0.sGFSYNR1) & 0xffff).toBe(0x11);
    d.clearGlobal();
    expect(d.s.dma(0x12, 0x1000, 'w', true).kind).toBe('abort');
    expect(d.sgfsr() & 0x1ff).toBe(sGFSR_UCBF);
    expect(d.r32(GR0.sGFSYNR1) & 0xffff).toBe(0x12);
    // A reserved S2CR.TYPE (3) aborts too.
    d.clearGlobal();
    d.w32(S2CR(1), 3 << 16);
    expect(d.s.dma(0x12, 0x1000, 'r', false).kind).toBe('abort');
  });

  it('a nested CBAR.CBNDX naming a bank that is not a stage-2 bank aborts', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 4, ias: 40, oas: 40 });
    const { s1: guest, s2 } = guestTables(0x42);
    const host = s1Table(1);
    host.map(0x4000_0000, 0x9000_0000, 4 * KiB, RW);
    programS2(d, 0, s2.stage2Fields(), 0x42);
    programS1(d, 1, host.stage1Fields(), { type: 1 });
    d.attach(0, 5, 3);
    d.enable();
    for (const cbndx of [1 /* a stage-1 bank */, 3 /* itself */, 4 /* beyond NUMCB */, 0xff]) {
      programS1(d, 3, guest.stage1Fields(), { type: 3, s2Bank: cbndx });
      expect(d.s.dma(5, GUEST_VA + 0x20, 'r', false).kind, `CBNDX ${cbndx}`).toBe('abort');
    }
    programS1(d, 3, guest.stage1Fields(), { type: 3, s2Bank: 0 });
    expect(d.s.dma(5, GUEST_VA + 0x20, 'r', false)).toEqual(pa(GUEST_PA + 0x20));
  });

  it('accesses outside the register space (or misaligned) are ignored and read as zero', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 3 }); // NUMPAGE = 4: bank page 3 is unimplemented
    const t = s1Table(0);
    programS1(d, 0, t.stage1Fields());
    d.attach(0, 1, 0);
    d.enable();
    const before = d.snapshot();
    const space = d.spaceBytes;
    expect(space).toBe(2 * 4 * 4096);
    const bad = [-4, -8, -0x1000, space, space + 4, space + 0x1000, 2 ** 32, 2 ** 53, 2, 6, 0x803, 0.5, NaN, Infinity, -Infinity];
    for (const off of bad) {
      expect(() => d.s.write32(off, 0xffffffff), `write32 ${off}`).not.toThrow();
      expect(() => d.s.write64(off, -1n), `write64 ${off}`).not.toThrow();
      expect(d.s.read32(off), `read32 ${off}`).toBe(0);
      expect(d.s.read64(off), `read64 ${off}`).toBe(0n);
    }
    // A 64-bit access that would run past the end.
    expect(() => d.s.write64(space - 4, -1n)).not.toThrow();
    expect(d.s.read64(space - 4)).toBe(0n);
    expect(d.snapshot()).toEqual(before);
    // The unimplemented bank page: writes ignored, reads zero.
    d.w32(d.cb(3, CB.SCTLR), 0xffffffff);
    d.w64(d.cb(3, CB.TTBR0), 0x1234_5678_9abc_def0n);
    expect(d.r32(d.cb(3, CB.SCTLR))).toBe(0);
    expect(d.r64(d.cb(3, CB.TTBR0))).toBe(0n);
    expect(d.snapshot()).toEqual(before);
  });

  it('64-bit writes at any offset, with any value, never throw and change at most the two words written', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 2, s2OnlyBanks: 1 });
    const words = d.spaceBytes / 4;
    // Registers whose write changes another register: xFSRRESTORE -> xFSR, ATS1* -> PAR, GATS* -> GPAR.
    const alsoChanged = (off: number): number[] => {
      const pageOff = off % 2 ** d.pgShift;
      const inCb = off >= d.cb(0, 0);
      const page = off - pageOff;
      if (off === 0x4c) return [0x48 / 4];
      if (off >= 0x100 && off < 0x140) return [0x180 / 4, 0x184 / 4];
      if (inCb && pageOff === CB.FSRRESTORE) return [(page + CB.FSR) / 4];
      if (inCb && pageOff >= 0x800 && pageOff < 0x820) return [(page + CB.PAR) / 4, (page + CB.PAR + 4) / 4];
      return [];
    };
    const value = fc.oneof(
      fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fc.integer(),
      fc.constantFrom(NaN, 1.5, -1, Infinity, -Infinity, 2 ** 60, -(2 ** 53)),
    );
    fc.assert(
      fc.property(fc.nat(words - 1), value, (w, v) => {
        const off = w * 4;
        const before = d.snapshot();
        expect(() => d.s.write64(off, v)).not.toThrow();
        const after = d.snapshot();
        const allowed = new Set([w, w + 1, ...alsoChanged(off), ...alsoChanged(off + 4)]);
        for (let i = 0; i < words; i++) {
          if (!allowed.has(i) && after[i] !== before[i]) {
            throw new Error(`write64(${hex(off)}, ${String(v)}) changed the word at ${hex(i * 4)}: ${hex(before[i]!)} -> ${hex(after[i]!)}`);
          }
        }
      }),
      { numRuns: 150 },
    );
    // Register pairs that are one 64-bit register read back whole.
    d.w64(d.cb(1, CB.TTBR0), 0x00ab_0000_8765_4000n);
    expect(d.r64(d.cb(1, CB.TTBR0))).toBe(0x00ab_0000_8765_4000n);
    expect(d.r32(d.cb(1, CB.TTBR0))).toBe(0x8765_4000);
    expect(d.r32(d.cb(1, CB.TTBR0 + 4))).toBe(0x00ab_0000);
  });

  it('a 64-bit write at every 4-aligned offset of GR0, GR1 and a context-bank page changes only the 8 bytes written', () => {
    const d = new Dev({ smrs: 4, sidBits: 8, contextBanks: 2 });
    const pageWords = 2 ** d.pgShift / 4;
    // The same exceptions as above: registers whose write changes another register.
    const extra = (pageOff: number, cbPage: boolean): number[] => {
      if (!cbPage) return pageOff === 0x4c ? [0x48] : pageOff >= 0x100 && pageOff < 0x140 ? [0x180, 0x184] : [];
      if (pageOff === CB.FSRRESTORE) return [CB.FSR];
      if (pageOff >= 0x800 && pageOff < 0x820) return [CB.PAR, CB.PAR + 4];
      return [];
    };
    for (const [pageBase, cbPage] of [
      [0, false],
      [d.gr1(0), false],
      [d.cb(1, 0), true],
    ] as Array<[number, boolean]>) {
      const words = (): number[] => Array.from({ length: pageWords }, (_, i) => d.r32(pageBase + 4 * i));
      let before = words();
      for (let i = 0; i < pageWords; i++) {
        const off = pageBase + 4 * i;
        const lo = Math.imul(0x9e3779b9, i + 1) >>> 0;
        const hi = Math.imul(0x85ebca6b, i + 7) >>> 0;
        d.w64(off, (BigInt(hi) << 32n) | BigInt(lo));
        const after = words();
        const allowed = new Set([4 * i, 4 * i + 4, ...extra(4 * i, cbPage), ...extra(4 * i + 4, cbPage)]);
        for (let k = 0; k < pageWords; k++) {
          if (!allowed.has(4 * k) && after[k] !== before[k]) {
            throw new Error(`write64(${hex(off)}) changed ${hex(pageBase + 4 * k)}: ${hex(before[k]!)} -> ${hex(after[k]!)}`);
          }
        }
        before = after;
      }
    }
  });

  it('random register writes followed by traffic never throw (fast-check)', () => {
    const regsOf = (d: Dev): number[] => {
      const list: number[] = [GR0.sCR0, GR0.sGFSR, GR0.TLBIVMID, GR0.TLBIALLNSNH, GR0.sTLBGSYNC, 0x4c];
      for (let i = 0; i < 4; i++) list.push(SMR(i), S2CR(i));
      for (let n = 0; n < d.numCb + 1; n++) {
        list.push(d.gr1(CBAR(n)), d.gr1(CBA2R(n)), d.gr1(CBFRSYNRA(n)));
        for (const r of Object.values(CB)) list.push(d.cb(n, r));
        list.push(d.cb(n, 0x800), d.cb(n, 0x808), d.cb(n, 0x810), d.cb(n, 0x818), d.cb(n, 0x8f0));
      }
      return list;
    };
    const word = fc.oneof(fc.nat(0xffffffff), fc.constantFrom(0, 1, 0x10000, 0x20000, 0x30000, 0x30100, 0x80000000, 0xffffffff, 0x8090751b, 0x80023510, 0xc7, 0xe7));
    const op = fc.record({ pick: fc.nat(), wide: fc.boolean(), lo: word, hi: word, raw: fc.boolean(), rawOff: fc.nat(0x3ffff) });
    const txn = fc.record({ sid: fc.nat(0xff), va: fc.oneof(arb48, fc.integer({ min: -(2 ** 40), max: -1 })), acc: fc.constantFrom<Access>('r', 'w', 'x'), priv: fc.boolean() });
    fc.assert(
      fc.property(fc.boolean(), fc.array(op, { minLength: 1, maxLength: 40 }), fc.array(txn, { minLength: 1, maxLength: 10 }), (nested, ops, txns) => {
        const d = new Dev({ nested, smrs: 4, sidBits: 8, contextBanks: 3, s2OnlyBanks: 1 });
        const regs = regsOf(d);
        for (const o of ops) {
          const off = o.raw ? o.rawOff : regs[o.pick % regs.length]!;
          if (o.wide) d.s.write64(off, (BigInt(o.hi) << 32n) | BigInt(o.lo));
          else d.s.write32(off, o.lo);
        }
        for (const t of txns) {
          const out = d.s.dma(t.sid, t.va, t.acc, t.priv);
          expect(['pa', 'abort', 'stall']).toContain(out.kind);
          if (out.kind === 'stall') {
            d.s.write32(d.cb(0, CB.RESUME), 1);
            d.s.write32(d.cb(1, CB.RESUME), 1);
            d.s.write32(d.cb(2, CB.RESUME), 1);
            expect(d.s.pending(out.tag)).not.toBeNull();
          }
        }
        for (const r of regs) d.s.read64(r);
      }),
      { numRuns: 150 },
    );
  });
});
