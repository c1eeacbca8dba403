/**
 * VMSAv8-64 translation table descriptor fields (Arm ARM DDI 0487, D8.3
 * "Translation table descriptor formats"), with the Arm ARM's names.
 *
 * Descriptors are 64 bits; the hot path handles them as two 32-bit words read
 * in one single-copy atomic access (memory/atomic64.ts). Fields of bits [31:0]
 * are named `*_LO` masks or shifts on the low word, fields of bits [63:32]
 * `*_HI` on the high word, so bit 54 (UXN) is `1 << (54 - 32)` on `hi`.
 */

// ---- bits [1:0]: descriptor type ----
/** Bit[0]: valid. */
export const DESC_VALID = 1 << 0;
/** Bit[1]: 1 = table (levels 0-2) or page (level 3); 0 = block (levels 0-2) or reserved (level 3). */
export const DESC_TABLE_OR_PAGE = 1 << 1;
export const DESC_TYPE_MASK = 0b11;
export const DESC_TYPE_BLOCK = 0b01;
export const DESC_TYPE_TABLE = 0b11;
export const DESC_TYPE_PAGE = 0b11;

// ---- lower attributes of block and page descriptors, bits [11:2] ----
/** Stage 1 AttrIndx[2:0], bits [4:2]: index into MAIR. */
export const S1_ATTRINDX_SHIFT = 2;
export const S1_ATTRINDX_MASK = 0b111;
/** Stage 1 NS, bit[5]. */
export const S1_NS = 1 << 5;
/** Stage 1 AP[2:1], bits [7:6]: AP[1] (bit 6) = EL0 access, AP[2] (bit 7) = read-only. */
export const S1_AP1 = 1 << 6;
export const S1_AP2 = 1 << 7;
/** Stage 2 MemAttr[3:0], bits [5:2]. */
export const S2_MEMATTR_SHIFT = 2;
export const S2_MEMATTR_MASK = 0b1111;
/** Stage 2 S2AP[1:0], bits [7:6]: S2AP[0] (bit 6) = read, S2AP[1] (bit 7) = write. */
export const S2_S2AP_R = 1 << 6;
export const S2_S2AP_W = 1 << 7;
/** SH[1:0], bits [9:8], both stages. */
export const SH_SHIFT = 8;
export const SH_MASK = 0b11;
export const SH_NON = 0b00;
export const SH_OUTER = 0b10;
export const SH_INNER = 0b11;
/** AF, bit[10]: the Access flag. */
export const AF = 1 << 10;
/** nG, bit[11] (stage 1 only): not global, the entry is tagged with the ASID. */
export const S1_NG = 1 << 11;

// ---- output address, bits [47:12] (the granule's low bits are RES0 in tables and pages) ----
/** Bits [31:12] of an output or next-level table address, in the low word. */
export const OA_LO_MASK = 0xfffff000;
/** Bits [47:32] of an output or next-level table address, in the high word. */
export const OA_HI_MASK = 0x0000ffff;

// ---- upper attributes of block and page descriptors, bits [63:51] ----
/** DBM, bit[51] (not modelled: hardware dirty-state update is off). */
export const DBM_HI = 1 << (51 - 32);
/** Contiguous, bit[52] (a hint; not modelled). */
export const CONTIGUOUS_HI = 1 << (52 - 32);
/** Stage 1 PXN, bit[53]. */
export const S1_PXN_HI = 1 << (53 - 32);
/** Stage 1 UXN (XN for single-privilege regimes), bit[54]. */
export const S1_UXN_HI = 1 << (54 - 32);
/** Stage 2 XN, bit[54] (XN[1] with FEAT_XNX; this model implements Armv8.0's single XN bit). */
export const S2_XN_HI = 1 << (54 - 32);

// ---- next-level attributes of table descriptors, bits [63:59] (stage 1 only; RES0/ignored at stage 2) ----
/** PXNTable, bit[59]. */
export const PXNTABLE_HI = 1 << (59 - 32);
/** UXNTable (XNTable), bit[60]. */
export const UXNTABLE_HI = 1 << (60 - 32);
/** APTable[0], bit[61]: no EL0 access at later levels. */
export const APTABLE0_HI = 1 << (61 - 32);
/** APTable[1], bit[62]: no write access at later levels. */
export const APTABLE1_HI = 1 << (62 - 32);
/** NSTable, bit[63]. */
export const NSTABLE_HI = 1 << 31;

/** The descriptor as a BigInt, from its two words (slow path, for tools and tests). */
export function descToBigInt(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Output address bits [47:12] of a descriptor, as a number. */
export function descOutputAddress(lo: number, hi: number): number {
  return (hi & OA_HI_MASK) * 4294967296 + ((lo & OA_LO_MASK) >>> 0);
}
