/**
 * The VMSAv8-64 translation table walker: a pure function of (memory, decoded
 * regime, input address, access) that fills a WalkResult with the translation
 * or the fault. Stage 1 only, stage 2 only, or nested, where every stage-1
 * table address is an IPA that stage 2 translates first.
 *
 * It follows the Arm ARM (DDI 0487) pseudocode: AArch64.TranslationTableWalk
 * for each stage, AArch64.CheckPermission / CheckS2Permission, and
 * AArch64.FullTranslate for the order of the stages (stage 1, including its
 * permission check, completes before stage 2 translates the output IPA).
 *
 * Hot-path rules kept here: addresses are numbers below 2^53 (a TTBR1-half VA
 * is passed as its negative two's-complement value), descriptors are read
 * with one single-copy atomic 64-bit load as two 32-bit words, nothing is
 * allocated, and each stage is one loop over levels.
 */

import type { PhysMem } from '../memory/phys.js';
import {
  AF,
  APTABLE0_HI,
  APTABLE1_HI,
  OA_HI_MASK,
  PXNTABLE_HI,
  S1_AP1,
  S1_AP2,
  S1_ATTRINDX_MASK,
  S1_ATTRINDX_SHIFT,
  S1_NG,
  S1_PXN_HI,
  S1_UXN_HI,
  S2_MEMATTR_MASK,
  S2_MEMATTR_SHIFT,
  S2_S2AP_R,
  S2_S2AP_W,
  S2_XN_HI,
  SH_MASK,
  SH_SHIFT,
  UXNTABLE_HI,
} from '../pgtable/descriptor.js';
import { INV_POW2, POW2 } from '../pgtable/geometry.js';
import { PA_MAX, type Regime, type TableRoot } from '../pgtable/regime.js';
import type { WalkCacheHooks } from './hooks.js';
import {
  ACC_EXEC,
  ACC_KIND_MASK,
  ACC_UNPRIV,
  ACC_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_ADDRESS_SIZE,
  FAULT_EXTERNAL,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  PERM_ALL,
  PERM_PR,
  PERM_PW,
  PERM_PX,
  PERM_UR,
  PERM_UW,
  PERM_UX,
  type WalkResult,
} from './result.js';

const TWO_POW_32 = 4294967296;

function fault(res: WalkResult, type: number, stage: number, level: number, s1ptw: boolean, ipa: number): number {
  res.fault = type;
  res.faultStage = stage;
  res.faultLevel = level;
  res.s1ptw = s1ptw;
  res.faultIpa = stage === 2 ? ipa : -1;
  return -1;
}

/**
 * True when a leaf at `level` is encoded legally: a page (0b11) at level 3, a
 * block (0b01) at a level where the granule allows blocks (4 KiB: levels 1-2;
 * 16 and 64 KiB: level 2). Anything else is a Translation fault at that level.
 */
function leafEncodingOk(lo: number, level: number, gShift: number): boolean {
  if (level === 3) return (lo & 2) !== 0;
  return level === 2 || (level === 1 && gShift === 12);
}

/**
 * One stage-2 walk of `res.s2In` for an access of kind `kind`
 * (ACC_READ/WRITE/EXEC). On success returns 0 and leaves the PA in
 * `res.s2Out`; on a fault returns -1 with the fault in `res`. With `s1ptw` the
 * walk is for a stage-1 descriptor fetch; otherwise it is the final
 * translation and records its leaf level, size, permissions and attributes.
 * (Addresses travel through `res` rather than as arguments and return values:
 * a double crossing a call that is not inlined is boxed, an allocation.)
 */
export function walkStage2(
  mem: PhysMem,
  root: TableRoot,
  kind: number,
  res: WalkResult,
  s1ptw: boolean,
  wc: WalkCacheHooks | null,
  regime: Regime | null,
): number {
  const ipa = res.s2In;
  // IPA beyond VTCR.T0SZ's input range: Translation fault, level 0.
  if (ipa >= POW2[root.inputBits]!) return fault(res, FAULT_TRANSLATION, 2, 0, s1ptw, ipa);
  // VTTBR.BADDR beyond VTCR.PS: Address size fault, level 0.
  if (root.base >= POW2[root.outputBits]!) return fault(res, FAULT_ADDRESS_SIZE, 2, 0, s1ptw, ipa);

  const gShift = root.granuleShift;
  const stride = root.stride;
  const tableMask = -(1 << gShift); // clears bits below the granule in a next-level table address
  const oaHiShift = root.outputBits - 32;
  let level = root.startLevel;
  let indexMask = (1 << root.rootIndexBits) - 1;
  let table = root.base;
  if (wc !== null) {
    // Start at the deepest stage-2 table a walk cache holds for this IPA.
    const l = wc.s2Find(regime!, ipa);
    if (l > level) {
      level = l;
      table = wc.table;
      indexMask = (1 << stride) - 1;
    }
  }
  for (;;) {
    const shift = gShift + (3 - level) * stride;
    const index = (ipa * INV_POW2[shift]!) & indexMask;
    const off = mem.offsetOf(table + index * 8);
    if (off < 0) return fault(res, FAULT_EXTERNAL, 2, level, s1ptw, ipa);
    const lo = mem.loadAt(off);
    const hi = mem.hi;
    res.reads++;
    if ((lo & 1) === 0) return fault(res, FAULT_TRANSLATION, 2, level, s1ptw, ipa);
    if (level < 3 && (lo & 2) !== 0) {
      // Table descriptor: next-level table address, bits [47:granule].
      if ((hi & OA_HI_MASK) >>> oaHiShift !== 0) return fault(res, FAULT_ADDRESS_SIZE, 2, level, s1ptw, ipa);
      table = (hi & OA_HI_MASK) * TWO_POW_32 + ((lo & tableMask) >>> 0);
      level++;
      indexMask = (1 << stride) - 1;
      if (wc !== null) wc.s2Insert(regime!, ipa, level, table);
      continue;
    }
    if (!leafEncodingOk(lo, level, gShift)) return fault(res, FAULT_TRANSLATION, 2, level, s1ptw, ipa);
    // Block or page: output address bits [47:shift] (leaf shifts are at most 30 bits).
    if ((hi & OA_HI_MASK) >>> oaHiShift !== 0) return fault(res, FAULT_ADDRESS_SIZE, 2, level, s1ptw, ipa);
    if ((lo & AF) === 0) return fault(res, FAULT_ACCESS_FLAG, 2, level, s1ptw, ipa);
    // S2AP[0] = read, S2AP[1] = write; XN (bit 54) forbids execution at both ELs.
    const r = (lo & S2_S2AP_R) !== 0;
    const w = (lo & S2_S2AP_W) !== 0;
    const x = (hi & S2_XN_HI) === 0;
    const allowed = kind === ACC_WRITE ? w : kind === ACC_EXEC ? x : r;
    if (!allowed) return fault(res, FAULT_PERMISSION, 2, level, s1ptw, ipa);
    const pageMask = (1 << shift) - 1;
    res.s2Out = (hi & OA_HI_MASK) * TWO_POW_32 + ((lo & ~pageMask & 0xfffff000) >>> 0) + (ipa & pageMask);
    res.lastS2Shift = shift;
    if (!s1ptw) {
      res.s2Level = level;
      res.sizeShift = shift;
      res.s2SizeShift = shift;
      res.perm = (r ? PERM_PR | PERM_UR : 0) | (w ? PERM_PW | PERM_UW : 0) | (x ? PERM_PX | PERM_UX : 0);
      res.memAttr = (lo >>> S2_MEMATTR_SHIFT) & S2_MEMATTR_MASK;
      res.s2Sh = (lo >>> SH_SHIFT) & SH_MASK;
    }
    return 0;
  }
}

/**
 * Stage 1 of a regime for input address `va` (signed: negative values are the
 * TTBR1 half). On success returns 0 with the IPA (the PA without stage 2) in
 * `res.ipa`, and records its leaf level, size, permissions and attributes; on
 * a fault returns -1 with the fault in `res`.
 */
export function walkStage1(mem: PhysMem, regime: Regime, va: number, acc: number, res: WalkResult, wc: WalkCacheHooks | null): number {
  let root: TableRoot;
  let input: number;
  if (va >= 0) {
    root = regime.ttbr0;
    if (va >= POW2[root.inputBits]!) return fault(res, FAULT_TRANSLATION, 1, 0, false, -1);
    input = va;
  } else {
    root = regime.ttbr1;
    const span = POW2[root.inputBits]!;
    if (va < -span) return fault(res, FAULT_TRANSLATION, 1, 0, false, -1);
    input = va + span;
  }
  // TCR.EPDn = 1: a walk of this half is a Translation fault, level 0.
  if (!root.enabled) return fault(res, FAULT_TRANSLATION, 1, 0, false, -1);
  // TTBRn.BADDR beyond TCR.IPS: Address size fault, level 0.
  if (root.base >= POW2[root.outputBits]!) return fault(res, FAULT_ADDRESS_SIZE, 1, 0, false, -1);

  const nested = regime.s2;
  const s2root = regime.vttbr;
  const gShift = root.granuleShift;
  const stride = root.stride;
  const tableMask = -(1 << gShift);
  const oaHiShift = root.outputBits - 32;
  let level = root.startLevel;
  let indexMask = (1 << root.rootIndexBits) - 1;
  let table = root.base;
  // Hierarchical limits accumulated from table descriptors (APTable, UXNTable, PXNTable).
  let limits = 0;
  if (wc !== null) {
    // Start at the deepest stage-1 table a walk cache holds for this VA.
    const l = wc.s1Find(regime, va);
    if (l > level) {
      level = l;
      table = wc.table;
      limits = wc.limits;
      indexMask = (1 << stride) - 1;
    }
  }
  for (;;) {
    const shift = gShift + (3 - level) * stride;
    const index = (input * INV_POW2[shift]!) & indexMask;
    let descAddr = table + index * 8;
    if (nested) {
      // The descriptor address is an IPA: translate it at stage 2 (a read; faults are s1ptw faults).
      const cached = wc !== null ? wc.ptwFind(regime, descAddr) : -1;
      if (cached >= 0) descAddr = cached;
      else {
        res.s2In = descAddr;
        if (walkStage2(mem, s2root, 0, res, true, wc, regime) < 0) return -1;
        if (wc !== null) wc.ptwInsert(regime, descAddr, res.s2Out, res.lastS2Shift);
        descAddr = res.s2Out;
      }
    }
    const off = mem.offsetOf(descAddr);
    if (off < 0) return fault(res, FAULT_EXTERNAL, 1, level, false, -1);
    const lo = mem.loadAt(off);
    const hi = mem.hi;
    res.reads++;
    if ((lo & 1) === 0) return fault(res, FAULT_TRANSLATION, 1, level, false, -1);
    if (level < 3 && (lo & 2) !== 0) {
      if ((hi & OA_HI_MASK) >>> oaHiShift !== 0) return fault(res, FAULT_ADDRESS_SIZE, 1, level, false, -1);
      limits |= hi & (APTABLE0_HI | APTABLE1_HI | UXNTABLE_HI | PXNTABLE_HI);
      table = (hi & OA_HI_MASK) * TWO_POW_32 + ((lo & tableMask) >>> 0);
      level++;
      indexMask = (1 << stride) - 1;
      if (wc !== null) wc.s1Insert(regime, va, level, table, limits);
      continue;
    }
    if (!leafEncodingOk(lo, level, gShift)) return fault(res, FAULT_TRANSLATION, 1, level, false, -1);
    if ((hi & OA_HI_MASK) >>> oaHiShift !== 0) return fault(res, FAULT_ADDRESS_SIZE, 1, level, false, -1);
    if ((lo & AF) === 0) return fault(res, FAULT_ACCESS_FLAG, 1, level, false, -1);

    // AArch64.CheckPermission for the EL1&0 regime (no PAN): AP[2] (or APTable[1]) makes the
    // location read-only, AP[1] (cleared by APTable[0]) grants EL0 access; a location writable
    // at EL0 is never executable at EL1; SCTLR.WXN makes writable locations execute-never.
    // EL0 execute depends on UXN/UXNTable only, not on AP[1]/APTable[0] (AArch64.S1DirectBasePermissions:
    // ux = NOT(uxn OR uxn_table); AP[2:1] = 0b00 or 0b10 with UXN = 0 is execute-only memory at EL0).
    const ro = (lo & S1_AP2) !== 0 || (limits & APTABLE1_HI) !== 0;
    const user = (lo & S1_AP1) !== 0 && (limits & APTABLE0_HI) === 0;
    const pw = !ro;
    const uw = user && !ro;
    const wxn = regime.wxn;
    const px = (hi & S1_PXN_HI) === 0 && (limits & PXNTABLE_HI) === 0 && !uw && !(wxn && pw);
    const ux = (hi & S1_UXN_HI) === 0 && (limits & UXNTABLE_HI) === 0 && !(wxn && uw);
    const perm =
      PERM_PR | (pw ? PERM_PW : 0) | (px ? PERM_PX : 0) | (user ? PERM_UR : 0) | (uw ? PERM_UW : 0) | (ux ? PERM_UX : 0);
    const kind = acc & ACC_KIND_MASK;
    const need = (kind === ACC_WRITE ? PERM_PW : kind === ACC_EXEC ? PERM_PX : PERM_PR) << ((acc & ACC_UNPRIV) !== 0 ? 3 : 0);
    if ((perm & need) === 0) return fault(res, FAULT_PERMISSION, 1, level, false, -1);

    const pageMask = (1 << shift) - 1;
    res.s1Level = level;
    res.sizeShift = shift;
    res.s1SizeShift = shift;
    res.perm = perm;
    res.attrIndx = (lo >>> S1_ATTRINDX_SHIFT) & S1_ATTRINDX_MASK;
    res.sh = (lo >>> SH_SHIFT) & SH_MASK;
    res.nG = (lo & S1_NG) !== 0 ? 1 : 0;
    res.ipa = (hi & OA_HI_MASK) * TWO_POW_32 + ((lo & ~pageMask & 0xfffff000) >>> 0) + (input & pageMask);
    return 0;
  }
}

/**
 * Translates `va` for access `acc` (ACC_READ/WRITE/EXEC | ACC_UNPRIV) in
 * `regime`, filling `res`. Returns true on success (`res.pa`), false on a
 * fault (`res.fault`, `res.faultStage`, `res.faultLevel`, `res.s1ptw`).
 */
export function translate(mem: PhysMem, regime: Regime, va: number, acc: number, res: WalkResult, wc: WalkCacheHooks | null = null): boolean {
  res.reset();
  let s1perm = PERM_ALL;
  let s1shift = 64;
  if (regime.s1) {
    if (walkStage1(mem, regime, va, acc, res, wc) < 0) return false;
    s1perm = res.perm;
    s1shift = res.sizeShift;
  } else if (va < 0 || va >= POW2[PA_MAX]!) {
    // Stage 1 off: the input is the IPA, and bits above PAMax are an Address size fault.
    fault(res, FAULT_ADDRESS_SIZE, 1, 0, false, -1);
    return false;
  } else {
    res.ipa = va;
  }
  if (!regime.s2) {
    res.pa = res.ipa;
    res.perm = s1perm;
    res.sizeShift = s1shift === 64 ? 12 : s1shift;
    return true;
  }
  res.s2In = res.ipa;
  if (walkStage2(mem, regime.vttbr, acc & ACC_KIND_MASK, res, false, wc, regime) < 0) return false;
  res.pa = res.s2Out;
  res.perm &= s1perm;
  if (s1shift < res.sizeShift) res.sizeShift = s1shift;
  return true;
}

export { FAULT_NONE };
