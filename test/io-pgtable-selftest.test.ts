/**
 * The Linux io-pgtable-arm selftest (newest version: the KUnit suite
 * `io-pgtable-arm-test`, case `arm_lpae_do_selftests`, in
 * drivers/iommu/io-pgtable-arm-selftests.c), re-expressed for this builder.
 *
 * Configurations: pgsize_bitmap in {4K|2M|1G, 16K|32M, 64K|512M} x address
 * sizes {32, 36, 40, 42, 44, 48} with every ias <= oas (3 x 21 = 63), for
 * stage 1 and stage 2 (126 runs). Each run does what arm_lpae_run_tests()
 * does (see /work/shared/reference/smmu-models.md, section 3.6):
 *
 *   1. empty tables: 42, 1G + 42 and 2G + 42 do not translate;
 *   2. for each page size, ascending, at iova = 0, 1G, 2G, ...: an identity
 *      map with R|W|NOEXEC|CACHE succeeds, an overlapping map (same iova, to
 *      iova + size, R|NOEXEC) is refused with EEXIST, and iova + 42
 *      translates to iova + 42;
 *   3. (the v6.1x partial-unmap step is gone in the newest version, and this
 *      builder refuses partial block unmaps anyway, as Linux does since v6.13)
 *   4. for each size: unmap returns size, iova + 42 no longer translates, a
 *      remap with WRITE succeeds and translates again;
 *   5. the last largest page below 2^ias maps (the corner case of the
 *      concatenated stage-2 root) and unmaps with the full size.
 *
 * Linux checks translations with iova_to_phys() only; here every one is
 * checked twice: with the builder's own lookup() and with the hardware
 * walker, translate(), on a Regime decoded from the register-style fields
 * the builder hands out (stage1Fields() / stage2Fields()). The walker checks
 * also cover what iova_to_phys() cannot see: the fault type, stage and
 * level, the leaf level and size, and the permissions that the prot flags
 * produce.
 */

import { describe, expect, it } from 'vitest';
import { PhysMem } from '../src/memory/phys.js';
import {
  PROT_CACHE,
  PROT_NOEXEC,
  PROT_READ,
  PROT_WRITE,
  PageTable,
  PgTableError,
} from '../src/pgtable/builder.js';
import { Regime, decodeStage1, decodeStage2 } from '../src/pgtable/regime.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import {
  ACC_EXEC,
  ACC_READ,
  ACC_UNPRIV,
  ACC_WRITE,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  WalkResult,
} from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';
import type { GranuleKiB } from '../src/pgtable/geometry.js';

const SZ_1G = 2 ** 30;
const SZ_2G = 2 ** 31;
const ADDRESS_SIZES = [32, 36, 40, 42, 44, 48] as const;

interface PgsizeConfig {
  granule: GranuleKiB;
  name: string;
  /** log2 of the page sizes in the bitmap, ascending. */
  shifts: number[];
}

const PGSIZES: PgsizeConfig[] = [
  { granule: 4, name: '4K|2M|1G', shifts: [12, 21, 30] },
  { granule: 16, name: '16K|32M', shifts: [14, 25] },
  { granule: 64, name: '64K|512M', shifts: [16, 29] },
];

// One memory for the whole file. Every run gets a fresh PhysTables over the
// same sub-range (tables are zeroed when allocated); runs are sequential.
// The tables sit below 4 GiB, so they are addressable with a 32-bit oas.
const TABLES_BASE = 0x8000_0000;
const TABLES_SIZE = 4 * 1024 * 1024;
const mem = PhysMem.create({ regions: [{ base: TABLES_BASE, size: TABLES_SIZE, name: 'tables' }] });

/** Independent geometry, from the Arm ARM (not from src/pgtable/geometry.ts). */
function gShiftOf(g: GranuleKiB): number {
  return { 4: 12, 16: 14, 64: 16 }[g];
}
function levelShiftOf(gShift: number, level: number): number {
  return gShift + (3 - level) * (gShift - 3);
}
/** The level of a leaf of 2^shift bytes. */
function leafLevelOf(gShift: number, shift: number): number {
  for (let level = 0; level <= 3; level++) if (levelShiftOf(gShift, level) === shift) return level;
  throw new Error(`no level maps 2^${shift} bytes with a 2^${gShift} granule`);
}

/**
 * The start level and the number of concatenated root tables the selftest
 * configuration should get, straight from the rules quoted in
 * smmu-models.md 3.3b (Arm DDI 0487 K.a R_DXBSH / R_SRKBC, Linux's
 * arm_lpae_concat_mandatory()): stage 1 starts at the natural level; stage 2
 * concatenates only where it is mandatory.
 */
function expectedRoot(stage: 1 | 2, granule: GranuleKiB, ias: number, oas: number): { start: number; concat: number } {
  const gs = gShiftOf(granule);
  const stride = gs - 3;
  const natural = 4 - Math.ceil((ias - gs) / stride);
  if (stage === 1) return { start: natural, concat: 1 };
  let mandatory = false;
  if (granule === 16 && natural === 0) mandatory = ias === 48 || oas === 48;
  else if (granule === 4 && natural === 0) mandatory = oas === 40 || oas === 42;
  else if (granule === 16 && natural === 1) mandatory = oas === 40;
  if (!mandatory) return { start: natural, concat: 1 };
  const start = natural + 1;
  const indexBits = ias - levelShiftOf(gs, start);
  return { start, concat: 2 ** (indexBits - stride) };
}

function errorCode(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof PgTableError) return e.code;
    throw e;
  }
  return 'no error';
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

interface Run {
  stage: 1 | 2;
  granule: GranuleKiB;
  gShift: number;
  ias: number;
  oas: number;
  pt: PageTable;
  regime: Regime;
  res: WalkResult;
}

function newRun(stage: 1 | 2, cfg: PgsizeConfig, ias: number, oas: number): Run {
  const tables = new PhysTables(mem, TABLES_BASE, TABLES_BASE + TABLES_SIZE);
  const pt = new PageTable({ stage, granule: cfg.granule, ias, oas, tables, asid: 3, vmid: 5 });
  const regime = stage === 1 ? decodeStage1(pt.stage1Fields()) : decodeStage2(pt.stage2Fields());
  return { stage, granule: cfg.granule, gShift: gShiftOf(cfg.granule), ias, oas, pt, regime, res: new WalkResult() };
}

/** Walks `va` for `acc`; returns a readable summary for toEqual-style checks. */
function walk(r: Run, va: number, acc: number): WalkResult {
  translate(mem, r.regime, va, acc, r.res);
  return r.res;
}

/** Checks that `va` translates to `pa` through a leaf of 2^shift bytes, with the walker and with lookup(). */
function expectTranslates(r: Run, va: number, pa: number, shift: number, acc: number, what: string): void {
  const level = leafLevelOf(r.gShift, shift);
  const res = walk(r, va, acc);
  expect(res.faultName, `${what}: walker fault for ${hex(va)}`).toBe('none');
  expect(res.pa, `${what}: walker PA for ${hex(va)}`).toBe(pa);
  expect(res.sizeShift, `${what}: walker leaf size for ${hex(va)}`).toBe(shift);
  if (r.stage === 1) {
    expect(res.s1Level, `${what}: walker stage-1 leaf level`).toBe(level);
    expect(res.s2Level, `${what}: no stage-2 walk`).toBe(-1);
  } else {
    expect(res.s2Level, `${what}: walker stage-2 leaf level`).toBe(level);
    expect(res.s1Level, `${what}: no stage-1 walk`).toBe(-1);
    expect(res.ipa, `${what}: stage 1 off, the IPA is the input`).toBe(va);
  }
  // Descriptor reads: one per level from the start level to the leaf.
  expect(res.reads, `${what}: descriptors read`).toBe(level - r.regime[r.stage === 1 ? 'ttbr0' : 'vttbr'].startLevel + 1);
  const leaf = r.pt.lookup(va);
  expect(leaf, `${what}: lookup(${hex(va)})`).not.toBeNull();
  expect(leaf!.pa, `${what}: lookup PA`).toBe(pa);
  expect(leaf!.level, `${what}: lookup level`).toBe(level);
  expect(leaf!.shift, `${what}: lookup size`).toBe(shift);
}

/** Checks that `va` does not translate: a Translation fault at `level` for the walker, null for lookup(). */
function expectUnmapped(r: Run, va: number, level: number, what: string): void {
  for (const acc of [ACC_READ, ACC_WRITE]) {
    const res = walk(r, va, acc);
    expect(res.faultName, `${what}: walker fault for ${hex(va)}`).toBe('translation');
    expect(res.fault).toBe(FAULT_TRANSLATION);
    expect(res.faultStage, `${what}: fault stage`).toBe(r.stage);
    expect(res.faultLevel, `${what}: fault level`).toBe(level);
    expect(res.s1ptw, `${what}: not a stage-1 table-walk fault`).toBe(false);
    expect(res.faultIpa, `${what}: fault IPA`).toBe(r.stage === 2 ? va : -1);
  }
  expect(r.pt.lookup(va), `${what}: lookup(${hex(va)})`).toBeNull();
}

/** A permission fault for `acc` at `va` at the leaf level. */
function expectPermissionFault(r: Run, va: number, acc: number, level: number, what: string): void {
  const res = walk(r, va, acc);
  expect(res.faultName, `${what}: walker fault for ${hex(va)} acc ${acc}`).toBe('permission');
  expect(res.fault).toBe(FAULT_PERMISSION);
  expect(res.faultStage, `${what}: fault stage`).toBe(r.stage);
  expect(res.faultLevel, `${what}: fault level`).toBe(level);
}

/** The permissions R|W|NOEXEC|CACHE gives (no PRIV: the mapping is EL0-accessible at stage 1). */
function checkRwNoexecCache(r: Run, iova: number, shift: number, what: string): void {
  const level = leafLevelOf(r.gShift, shift);
  const va = iova + 42;
  expectTranslates(r, va, iova + 42, shift, ACC_WRITE, `${what} (write)`);
  expectTranslates(r, va, iova + 42, shift, ACC_READ | ACC_UNPRIV, `${what} (unprivileged read)`);
  expectPermissionFault(r, va, ACC_EXEC, level, `${what} (NOEXEC)`);
  expectPermissionFault(r, va, ACC_EXEC | ACC_UNPRIV, level, `${what} (NOEXEC, unprivileged)`);
  const res = walk(r, va, ACC_READ);
  expect(res.fault).toBe(FAULT_NONE);
  if (r.stage === 1) {
    // CACHE: AttrIndx 1 (io-pgtable's ARM_LPAE_MAIR_ATTR_IDX_CACHE), inner shareable; nG always set.
    expect(res.attrIndx, `${what}: AttrIndx`).toBe(1);
    expect(res.sh, `${what}: SH`).toBe(0b11);
    expect(res.nG, `${what}: nG`).toBe(1);
  } else {
    // CACHE: MemAttr 0b1111 (Normal, inner/outer write-back), inner shareable.
    expect(res.memAttr, `${what}: MemAttr`).toBe(0xf);
    expect(res.s2Sh, `${what}: SH`).toBe(0b11);
  }
}

/** The permissions WRITE alone gives. */
function checkWriteOnly(r: Run, iova: number, shift: number, what: string): void {
  const level = leafLevelOf(r.gShift, shift);
  const va = iova + 42;
  expectTranslates(r, va, iova + 42, shift, ACC_WRITE, `${what} (write)`);
  expectTranslates(r, va, iova + 42, shift, ACC_WRITE | ACC_UNPRIV, `${what} (unprivileged write)`);
  if (r.stage === 1) {
    // Stage 1 has no write-only encoding: AP[2:1] = 0b01 is read/write at EL1 and EL0.
    expectTranslates(r, va, iova + 42, shift, ACC_READ, `${what} (read)`);
    // Executable at EL0, but EL1 cannot execute EL0-writable memory (Arm ARM: PXN is implied).
    expectTranslates(r, va, iova + 42, shift, ACC_EXEC | ACC_UNPRIV, `${what} (unprivileged execute)`);
    expectPermissionFault(r, va, ACC_EXEC, level, `${what} (privileged execute of EL0-writable memory)`);
    expect(walk(r, va, ACC_READ).attrIndx, `${what}: no CACHE -> AttrIndx 0`).toBe(0);
  } else {
    // S2AP = 0b10: write-only; no NOEXEC: executable.
    expectPermissionFault(r, va, ACC_READ, level, `${what} (S2AP write-only: read)`);
    expectTranslates(r, va, iova + 42, shift, ACC_EXEC, `${what} (execute)`);
    expect(walk(r, va, ACC_WRITE).memAttr, `${what}: no CACHE -> MemAttr 0b0101`).toBe(0x5);
  }
}

function runSelftest(stage: 1 | 2, cfg: PgsizeConfig, ias: number, oas: number): void {
  const r = newRun(stage, cfg, ias, oas);
  const { pt } = r;
  const root = expectedRoot(stage, cfg.granule, ias, oas);
  expect(pt.startLevel, 'start level').toBe(root.start);
  expect(pt.concatenatedTables, 'concatenated root tables').toBe(root.concat);
  const rootRegs = stage === 1 ? r.regime.ttbr0 : r.regime.vttbr;
  expect(rootRegs.startLevel, 'walker start level (TCR.T0SZ / VTCR.SL0)').toBe(root.start);
  expect(rootRegs.base, 'walker table base (TTBR0 / VTTBR)').toBe(pt.root);
  expect(rootRegs.rootIndexBits, 'walker root index bits').toBe(pt.rootIndexBits);
  expect(pt.rootIndexBits, 'root index bits').toBe(ias - levelShiftOf(r.gShift, root.start));
  // Every size of the bitmap must be available to map().
  expect([...pt.leafShifts].sort((a, b) => a - b), 'page sizes').toEqual(cfg.shifts);

  // 1. Empty tables.
  for (const va of [42, SZ_1G + 42, SZ_2G + 42]) expectUnmapped(r, va, root.start, 'empty table');

  // 2. Map each size at 0, 1G, 2G, ...; an overlapping map is refused.
  const prot = PROT_READ | PROT_WRITE | PROT_NOEXEC | PROT_CACHE;
  let iova = 0;
  for (const shift of cfg.shifts) {
    const size = 2 ** shift;
    const what = `map ${hex(size)} at ${hex(iova)}`;
    pt.map(iova, iova, size, prot);
    expect(errorCode(() => pt.map(iova, iova + size, size, PROT_READ | PROT_NOEXEC)), `${what}: overlapping map`).toBe('EEXIST');
    checkRwNoexecCache(r, iova, shift, what);
    // The last byte of the leaf, too.
    expectTranslates(r, iova + size - 1, iova + size - 1, shift, ACC_READ, `${what} (last byte)`);
    iova += SZ_1G;
  }
  // The refused maps changed nothing: everything mapped so far still translates to itself.
  iova = 0;
  for (const shift of cfg.shifts) {
    expectTranslates(r, iova + 42, iova + 42, shift, ACC_READ, `after the refused maps, ${hex(iova)}`);
    iova += SZ_1G;
  }

  // 4. Full unmap, then remap with WRITE.
  iova = 0;
  for (const shift of cfg.shifts) {
    const size = 2 ** shift;
    const what = `unmap ${hex(size)} at ${hex(iova)}`;
    expect(pt.unmap(iova, size), `${what}: bytes unmapped`).toBe(size);
    // io-pgtable leaves the tables above the leaf in place: the walk now stops at the leaf's level.
    expectUnmapped(r, iova + 42, leafLevelOf(r.gShift, shift), what);
    pt.map(iova, iova, size, PROT_WRITE);
    checkWriteOnly(r, iova, shift, `remap ${hex(size)} at ${hex(iova)} with WRITE`);
    iova += SZ_1G;
  }

  // 5. The last largest page below 2^ias.
  const largest = cfg.shifts[cfg.shifts.length - 1]!;
  const size = 2 ** largest;
  const last = 2 ** ias - size;
  const what = `last largest page ${hex(size)} at ${hex(last)}`;
  expect(pt.lookup(last + 42), `${what}: not mapped before`).toBeNull();
  pt.map(last, last, size, prot);
  checkRwNoexecCache(r, last, largest, what);
  expectTranslates(r, 2 ** ias - 1, 2 ** ias - 1, largest, ACC_READ, `${what} (the last byte of the input range)`);
  // One byte further is beyond the input range: a level-0 Translation fault before any table is read
  // (stage 2 alone with a 48-bit IPA: the input is beyond PAMax, an Address size fault).
  const beyond = walk(r, 2 ** ias, ACC_READ);
  expect(beyond.faultName, `${what}: 2^ias`).toBe(stage === 2 && ias === 48 ? 'address-size' : 'translation');
  expect(beyond.faultLevel, `${what}: 2^ias fault level`).toBe(0);
  expect(beyond.reads, `${what}: 2^ias reads nothing`).toBe(0);
  expect(pt.lookup(2 ** ias), `${what}: lookup(2^ias)`).toBeNull();
  expect(pt.unmap(last, size), `${what}: bytes unmapped`).toBe(size);
  expectUnmapped(r, last + 42, leafLevelOf(r.gShift, largest), `${what} after unmap`);
  // The remapped pages are untouched by all this.
  iova = 0;
  for (const shift of cfg.shifts) {
    expectTranslates(r, iova + 42, iova + 42, shift, ACC_WRITE, `at the end, ${hex(iova)}`);
    iova += SZ_1G;
  }
}

function configs(): Array<{ cfg: PgsizeConfig; ias: number; oas: number }> {
  const out: Array<{ cfg: PgsizeConfig; ias: number; oas: number }> = [];
  for (const cfg of PGSIZES) {
    for (let k = 0; k < ADDRESS_SIZES.length; k++) {
      for (let j = k; j < ADDRESS_SIZES.length; j++) out.push({ cfg, ias: ADDRESS_SIZES[k]!, oas: ADDRESS_SIZES[j]! });
    }
  }
  return out;
}

describe('io-pgtable-arm selftest (KUnit arm_lpae_do_selftests), builder lookup and hardware walker', () => {
  it('has 63 configurations per stage (pgsize bitmaps x ias <= oas)', () => {
    expect(configs().length).toBe(63);
  });

  for (const stage of [1, 2] as const) {
    describe(`ARM_64_LPAE_S${stage}`, () => {
      for (const cfg of PGSIZES) {
        describe(`pgsize ${cfg.name}`, () => {
          for (const { ias, oas } of configs().filter((c) => c.cfg === cfg)) {
            it(`stage ${stage}, pgsize ${cfg.name}, ias ${ias}, oas ${oas}`, () => {
              runSelftest(stage, cfg, ias, oas);
            });
          }
        });
      }
    });
  }

  it('stage 2 concatenates the root exactly where Linux makes it mandatory, at least once per granule that has such a rule', () => {
    const seen = new Map<GranuleKiB, Array<{ ias: number; oas: number; tables: number }>>();
    for (const { cfg, ias, oas } of configs()) {
      const r = newRun(2, cfg, ias, oas);
      const expected = expectedRoot(2, cfg.granule, ias, oas);
      expect(r.pt.concatenatedTables, `${cfg.name} ias ${ias} oas ${oas}`).toBe(expected.concat);
      // The walker sees the concatenation: more index bits at the start level than one table holds.
      expect(Math.max(0, r.regime.vttbr.rootIndexBits - (r.gShift - 3)), `${cfg.name} ias ${ias} oas ${oas}: extra root index bits`).toBe(
        Math.log2(expected.concat),
      );
      if (r.pt.concatenatedTables > 1) {
        const list = seen.get(cfg.granule) ?? [];
        list.push({ ias, oas, tables: r.pt.concatenatedTables });
        seen.set(cfg.granule, list);
      }
    }
    // R_SRKBC / R_DXBSH: 4K with a 40- or 42-bit PA size, 16K with a 40- or 48-bit PA size or a 48-bit IPA.
    expect(seen.get(4)).toEqual([
      { ias: 40, oas: 40, tables: 2 },
      { ias: 40, oas: 42, tables: 2 },
      { ias: 42, oas: 42, tables: 8 },
    ]);
    expect(seen.get(16)).toEqual([
      { ias: 40, oas: 40, tables: 16 },
      { ias: 48, oas: 48, tables: 2 },
    ]);
    expect(seen.get(64)).toBeUndefined();
  });
});
