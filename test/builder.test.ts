/**
 * The table builder's own contract (io-pgtable-arm semantics): leaf choice,
 * errors, rollback, unmap results, protect, concatenated stage-2 roots, and
 * guest stage-1 tables behind a stage 2.
 */

import { describe, expect, it } from 'vitest';
import { MemoryError, PhysMem } from '../src/memory/phys.js';
import {
  PROT_CACHE,
  PROT_NOEXEC,
  PROT_READ,
  PROT_WRITE,
  PageTable,
  PgTableError,
  createGuestStage1,
  createStage1,
  createStage2,
} from '../src/pgtable/builder.js';
import { Regime, decodeStage1, decodeStage2 } from '../src/pgtable/regime.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { ACC_READ, ACC_WRITE, FAULT_PERMISSION, FAULT_TRANSLATION, WalkResult } from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';

const RAM = 0x4000_0000;
const mem = PhysMem.create({ regions: [{ base: RAM, size: 96 << 20 }] });
let next = RAM;
/** A fresh 2 MiB table pool for each builder. */
function pool(bytes = 2 << 20): PhysTables {
  const t = new PhysTables(mem, next, next + bytes);
  next += bytes;
  return t;
}
const RW = PROT_READ | PROT_WRITE;
const G1 = 2 ** 30;
const M2 = 2 ** 21;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof PgTableError) return e.code;
    throw e;
  }
  return 'none';
}

describe('map', () => {
  it('uses the largest leaf that alignment and the remaining size permit', () => {
    const pt = createStage1(pool(), { granule: 4, ias: 48, oas: 48 }, 5);
    pt.map(G1, 2 * G1, G1 + M2 + 4096, RW);
    expect(pt.lookup(G1 + 42)).toMatchObject({ level: 1, shift: 30, pa: 2 * G1 + 42 });
    expect(pt.lookup(2 * G1 + 42)).toMatchObject({ level: 2, shift: 21, pa: 3 * G1 + 42 });
    expect(pt.lookup(2 * G1 + M2 + 42)).toMatchObject({ level: 3, shift: 12, pa: 3 * G1 + M2 + 42 });
    expect(pt.lookup(2 * G1 + M2 + 4096)).toBeNull();
  });

  it('falls back to pages when the output address is less aligned than the input', () => {
    const pt = createStage2(pool(), { granule: 4, ias: 40, oas: 40 }, 3);
    pt.map(M2, M2 + 4096, M2, RW);
    expect(pt.lookup(M2)).toMatchObject({ level: 3, shift: 12, pa: M2 + 4096 });
    expect(pt.lookup(2 * M2 - 1)).toMatchObject({ level: 3, pa: 2 * M2 + 4095 });
  });

  it('rejects bad arguments with a clear error and the errno io-pgtable uses', () => {
    const pt = createStage1(pool(), { granule: 16, ias: 36, oas: 40 });
    expect(code(() => pt.map(0x1000, 0, 0x4000, RW))).toBe('EINVAL'); // iova not 16 KiB aligned
    expect(code(() => pt.map(0, 0x2000, 0x4000, RW))).toBe('EINVAL'); // pa not aligned
    expect(code(() => pt.map(2 ** 36 - 0x4000, 0, 0x8000, RW))).toBe('ERANGE'); // beyond ias
    expect(code(() => pt.map(0, 2 ** 40, 0x4000, RW))).toBe('ERANGE'); // beyond oas
    expect(code(() => pt.map(0, 0, 0x4000, PROT_NOEXEC))).toBe('EINVAL'); // neither read nor write
    expect(code(() => pt.map(0, 0, 0, RW))).toBe('EINVAL');
    expect(() => pt.map(0x1000, 0, 0x4000, RW)).toThrow(/multiples of the 16 KiB granule/);
    expect(() => pt.map(2 ** 36, 0, 0x4000, RW)).toThrow(/beyond the 36-bit input range/);
  });

  it('refuses to overwrite a leaf, and leaves nothing behind when a range map fails part-way', () => {
    const pt = createStage1(pool(), { granule: 4, ias: 39, oas: 40 });
    pt.map(0x10_0000 + 3 * 4096, 0x900_0000, 4096, RW);
    expect(code(() => pt.map(0x10_0000 + 3 * 4096, 0x800_0000, 4096, RW))).toBe('EEXIST');
    // Pages 0..2 would be mapped before page 3 collides: they must be rolled back.
    expect(code(() => pt.map(0x10_0000, 0x700_0000, 8 * 4096, RW))).toBe('EEXIST');
    for (let i = 0; i < 8; i++) {
      if (i === 3) expect(pt.lookup(0x10_0000 + i * 4096)?.pa).toBe(0x900_0000);
      else expect(pt.lookup(0x10_0000 + i * 4096)).toBeNull();
    }
    // A block over existing smaller mappings is refused; inside an existing block too.
    expect(code(() => pt.map(0, 0, M2, RW))).toBe('EEXIST');
    pt.map(G1, G1, G1, RW);
    expect(code(() => pt.map(G1 + M2, 0, 4096, RW))).toBe('EEXIST');
  });

  it('replaces an empty table left behind by unmaps with a block', () => {
    const pt = createStage1(pool(), { granule: 4, ias: 39, oas: 40 });
    pt.map(M2, 0x100_0000, 4096, RW);
    expect(pt.unmap(M2, 4096)).toBe(4096);
    pt.map(M2, 0x400_0000, M2, RW);
    expect(pt.lookup(M2 + 5)).toMatchObject({ level: 2, pa: 0x400_0005 });
  });

  it('reports exhausted table memory as an error, not a crash', () => {
    const pt = createStage1(new PhysTables(mem, next, next + 3 * 4096), { granule: 4, ias: 48, oas: 48 });
    next += 4 * 4096;
    expect(() => pt.map(0, 0, 4096, RW)).toThrow(MemoryError);
    expect(() => pt.map(0, 0, 4096, RW)).toThrow(/out of table memory/);
    expect(pt.lookup(0)).toBeNull();
  });
});

describe('unmap', () => {
  it('returns the bytes unmapped, stops at a hole, and refuses part of a block', () => {
    const pt = createStage1(pool(), { granule: 4, ias: 39, oas: 40 });
    pt.map(0, 0x100_0000, 4 * 4096, RW);
    pt.map(6 * 4096, 0x200_0000, 4096, RW);
    expect(pt.unmap(0, 8 * 4096)).toBe(4 * 4096); // stops at the hole at page 4
    expect(pt.lookup(6 * 4096)?.pa).toBe(0x200_0000);
    pt.map(G1, G1, M2, RW);
    expect(pt.unmap(G1 + 4096, 4096)).toBe(0); // part of a 2 MiB block: nothing (Linux >= 6.13)
    expect(pt.lookup(G1 + 4096)?.pa).toBe(G1 + 4096);
    expect(pt.unmap(G1, M2)).toBe(M2);
    expect(pt.lookup(G1)).toBeNull();
  });

  it('unmapping a whole block-sized range of pages frees the table below it', () => {
    const t = pool();
    const pt = createStage1(t, { granule: 4, ias: 39, oas: 40 });
    pt.map(M2, 0x100_0000, M2, RW); // a 2 MiB block (pa aligned)
    pt.unmap(M2, M2);
    const before = t.bytesInUse;
    pt.map(M2, 0x100_1000, M2, RW); // pa not 2 MiB aligned: 512 pages in a new level-3 table
    expect(t.bytesInUse).toBe(before + 4096);
    expect(pt.unmap(M2, M2)).toBe(M2);
    expect(t.bytesInUse).toBe(before);
  });
});

describe('protect', () => {
  it('changes permissions in place, as the walker sees them', () => {
    const pt = createStage1(pool(), { granule: 4, ias: 39, oas: 40 });
    pt.map(0x40_0000, 0x300_0000, 3 * 4096, RW | PROT_CACHE);
    const regime = decodeStage1(pt.stage1Fields(), new Regime());
    const res = new WalkResult();
    expect(translate(mem, regime, 0x40_1000, ACC_WRITE, res)).toBe(true);
    expect(pt.protect(0x40_0000, 2 * 4096, PROT_READ)).toBe(2);
    expect(translate(mem, regime, 0x40_1000, ACC_WRITE, res)).toBe(false);
    expect(res.fault).toBe(FAULT_PERMISSION);
    expect(translate(mem, regime, 0x40_1000, ACC_READ, res)).toBe(true);
    expect(res.pa).toBe(0x300_1000);
    expect(translate(mem, regime, 0x40_2000, ACC_WRITE, res)).toBe(true); // outside the range: unchanged
  });

  it('refuses a range that cuts a block, changing nothing', () => {
    const pt = createStage2(pool(), { granule: 4, ias: 40, oas: 40 });
    pt.map(0, 0, M2, RW);
    const before = pt.lookup(0)!;
    expect(code(() => pt.protect(0, 4096, PROT_READ))).toBe('EINVAL');
    expect(pt.lookup(0)).toEqual(before);
  });
});

describe('stage-2 roots', () => {
  const cases: Array<{ granule: 4 | 16 | 64; ias: number; oas: number; start: number; tables: number }> = [
    { granule: 4, ias: 40, oas: 40, start: 1, tables: 2 }, // R_SRKBC: 4 KiB, 40-bit PA
    { granule: 4, ias: 42, oas: 42, start: 1, tables: 8 }, // R_SRKBC: 4 KiB, 42-bit PA
    { granule: 4, ias: 44, oas: 44, start: 0, tables: 1 },
    { granule: 16, ias: 48, oas: 48, start: 1, tables: 2 }, // R_DXBSH
    { granule: 16, ias: 40, oas: 40, start: 2, tables: 16 }, // R_SRKBC: 16 KiB, 40-bit PA
    { granule: 64, ias: 48, oas: 48, start: 1, tables: 1 },
  ];
  for (const c of cases) {
    it(`${c.granule} KiB, ias ${c.ias}, oas ${c.oas}: start level ${c.start}, ${c.tables} root table(s), walked correctly`, () => {
      const pt = createStage2(pool(4 << 20), { granule: c.granule, ias: c.ias, oas: c.oas });
      expect(pt.startLevel).toBe(c.start);
      expect(pt.concatenatedTables).toBe(c.tables);
      const regime = decodeStage2(pt.stage2Fields(), new Regime());
      const res = new WalkResult();
      // The last page of the input range lands in the last concatenated table.
      const page = 2 ** (c.granule === 4 ? 12 : c.granule === 16 ? 14 : 16);
      const top = 2 ** c.ias - page;
      pt.map(top, page * 7, page, RW);
      expect(translate(mem, regime, top + 42, ACC_READ, res)).toBe(true);
      expect(res.pa).toBe(page * 7 + 42);
      expect(translate(mem, regime, top - page, ACC_READ, res)).toBe(false);
      expect(res.fault).toBe(FAULT_TRANSLATION);
    });
  }
});

describe('a guest stage 1 whose tables live at IPAs behind a stage 2', () => {
  it('keeps its tables in the guest window and translates nested', () => {
    const s2 = createStage2(pool(), { granule: 4, ias: 40, oas: 40 }, 9);
    const window = 0x8000_0000;
    const backing = next;
    next += 1 << 20;
    s2.map(window, backing, 1 << 20, RW); // the guest's table window
    s2.map(0x1_0000_0000, 0x4100_0000, M2, RW); // guest RAM the device will reach
    const s1 = createGuestStage1(mem, s2, window, window + (1 << 20), { granule: 4, ias: 48, oas: 40 }, 7);
    expect(s1.root).toBeGreaterThanOrEqual(window);
    expect(s1.root).toBeLessThan(window + (1 << 20));
    s1.map(0x7f00_0000_0000, 0x1_0000_0000, M2, RW);
    const regime = decodeStage2(s2.stage2Fields(), decodeStage1(s1.stage1Fields(), new Regime()));
    expect(regime.asid).toBe(7);
    expect(regime.vmid).toBe(9);
    const res = new WalkResult();
    expect(translate(mem, regime, 0x7f00_0000_1234, ACC_WRITE, res)).toBe(true);
    expect(res.ipa).toBe(0x1_0000_1234);
    expect(res.pa).toBe(0x4100_1234);
    expect(s1.lookup(0x7f00_0000_1234)?.pa).toBe(0x1_0000_1234);
  });

  it('reports a guest table window that stage 2 does not map', () => {
    const s2 = createStage2(pool(), { granule: 4, ias: 40, oas: 40 });
    expect(() => createGuestStage1(mem, s2, 0x9000_0000, 0x9010_0000, { granule: 4, ias: 48, oas: 40 })).toThrow(
      /IPA 0x90000000 is not mapped by stage 2/,
    );
  });

  it('a PageTable can be built directly with the same options', () => {
    const pt = new PageTable({ stage: 1, granule: 64, ias: 42, oas: 48, tables: pool() });
    expect(pt.startLevel).toBe(2);
  });
});
