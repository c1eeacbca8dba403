/**
 * The translation regime, decoded once from register-style values into plain
 * objects that the walker reads on every access (in the manner of QEMU's
 * SMMUTransCfg): TCR/TTBR0/TTBR1 for stage 1, VTCR/VTTBR for stage 2.
 *
 * Field names and encodings follow the Arm ARM (DDI 0487, D13.2 TCR_EL1 and
 * VTCR_EL2) and, for the SMMU, IHI 0062 (SMMU_CBn_TCR, TCR2, TTBRn). The
 * implementation modelled is Armv8.0 with a 48-bit physical address size
 * (PAMax = 48): no FEAT_LPA/LPA2, no FEAT_TTST (so TxSZ is 16..39), no
 * hardware Access-flag or dirty-state updates.
 */

import {
  PA_SIZE_BITS,
  granuleShift,
  levelShift,
  naturalStartLevel,
  type GranuleKiB,
} from './geometry.js';

/** The implementation's largest physical address size (ID_AA64MMFR0_EL1.PARange / SMMU_IDR2.OAS). */
export const PA_MAX = 48;
export const TXSZ_MIN = 16;
export const TXSZ_MAX = 39;

export class RegimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegimeError';
  }
}

/**
 * One translation table root: TTBR0, TTBR1 or VTTBR with the TCR/VTCR fields
 * that shape its walk. A class so every instance has the same shape.
 */
export class TableRoot {
  /** False when the walk is disabled (TCR.EPDn = 1, or the half/stage is off). */
  enabled = false;
  /** log2 granule: 12, 14, 16 (TCR.TGn / VTCR.TG0). */
  granuleShift = 12;
  /** Bits per full level: granuleShift - 3. */
  stride = 9;
  /** Initial lookup level (from TxSZ for stage 1, from VTCR.SL0 for stage 2). */
  startLevel = 0;
  /** Input address size in bits: 64 - TxSZ. */
  inputBits = 48;
  /** Index bits at the initial level (more than `stride` when stage-2 root tables are concatenated). */
  rootIndexBits = 9;
  /** Table base address from the TTBR (BADDR with the bits below the table's alignment cleared). */
  base = 0;
  /** Output address size in bits (TCR.IPS / VTCR.PS, capped at PAMax). */
  outputBits = 48;
  /** TxSZ as programmed. */
  tsz = 16;
}

/** Stage 1 permission-model switches carried with the regime. */
export class Regime {
  /** Stage 1 on (otherwise the input address is the IPA). */
  s1 = false;
  /** Stage 2 on (otherwise the IPA is the PA). */
  s2 = false;
  /** TTBR0 half: input addresses [0, 2^inputBits). */
  ttbr0 = new TableRoot();
  /** TTBR1 half: input addresses [2^64 - 2^inputBits, 2^64), passed to the walker as negative numbers. */
  ttbr1 = new TableRoot();
  /** Stage 2 (VTTBR). */
  vttbr = new TableRoot();
  /** SCTLR.WXN: writable implies execute-never at stage 1. */
  wxn = false;
  /** ASID from TTBR0/TTBR1 (TCR.A1 picks which; tags caches only). */
  asid = 0;
  /** VMID (tags caches only). */
  vmid = 0;
  /** The context bank this regime belongs to (tags stage-1 walk caches; 0 outside an SMMU). */
  cb = 0;
}

/** Stage 1 TCR fields, as the register holds them (TCR_EL1 layout; SMMU_CBn_TCR + TCR2). */
export interface Stage1Fields {
  T0SZ: number;
  /** TG0: 0b00 = 4 KiB, 0b01 = 64 KiB, 0b10 = 16 KiB. */
  TG0: number;
  EPD0?: number;
  T1SZ?: number;
  /** TG1: 0b01 = 16 KiB, 0b10 = 4 KiB, 0b11 = 64 KiB. */
  TG1?: number;
  /** EPD1 defaults to 1: the TTBR1 half is off unless asked for. */
  EPD1?: number;
  /** IPS: 0b000 = 32 bits ... 0b101 = 48 bits (SMMU_CBn_TCR2.PASize). */
  IPS: number;
  /** TTBR0 (BADDR in bits [47:1]; the ASID field, if any, given separately). */
  TTBR0: number;
  TTBR1?: number;
  ASID?: number;
  WXN?: number;
}

/** Stage 2 VTCR fields, as the register holds them (VTCR_EL2 layout; SMMU_CBn_TCR for a stage-2 bank). */
export interface Stage2Fields {
  T0SZ: number;
  /** SL0: initial lookup level, encoding depends on TG0. */
  SL0: number;
  /** TG0: 0b00 = 4 KiB, 0b01 = 64 KiB, 0b10 = 16 KiB. */
  TG0: number;
  /** PS: 0b000 = 32 bits ... 0b101 = 48 bits. */
  PS: number;
  VTTBR: number;
  VMID?: number;
}

export function tg0ToGranule(tg0: number): GranuleKiB {
  switch (tg0) {
    case 0b00:
      return 4;
    case 0b01:
      return 64;
    case 0b10:
      return 16;
    default:
      throw new RegimeError(`TG0 = ${tg0} is reserved`);
  }
}

export function granuleToTg0(g: GranuleKiB): number {
  return g === 4 ? 0b00 : g === 64 ? 0b01 : 0b10;
}

export function tg1ToGranule(tg1: number): GranuleKiB {
  switch (tg1) {
    case 0b01:
      return 16;
    case 0b10:
      return 4;
    case 0b11:
      return 64;
    default:
      throw new RegimeError(`TG1 = ${tg1} is reserved`);
  }
}

export function granuleToTg1(g: GranuleKiB): number {
  return g === 16 ? 0b01 : g === 4 ? 0b10 : 0b11;
}

function decodePs(ps: number, field: string): number {
  if (!Number.isInteger(ps) || ps < 0 || ps > 7) throw new RegimeError(`${field} = ${ps} is not a 3-bit value`);
  // Encodings above PAMax (0b110 = 52 bits here, 0b111 reserved) behave as PAMax (Arm ARM: "treated as the
  // largest supported size").
  const bits = ps < PA_SIZE_BITS.length ? PA_SIZE_BITS[ps]! : PA_MAX;
  return Math.min(bits, PA_MAX);
}

function checkTsz(tsz: number, field: string): void {
  if (!Number.isInteger(tsz) || tsz < TXSZ_MIN || tsz > TXSZ_MAX) {
    throw new RegimeError(`${field} = ${tsz} is outside ${TXSZ_MIN}..${TXSZ_MAX} (input sizes 48..25 bits)`);
  }
}

function checkBase(addr: number, field: string): void {
  if (!Number.isSafeInteger(addr) || addr < 0 || addr >= 2 ** 48) {
    throw new RegimeError(`${field} = ${addr} is not an address below 2^48`);
  }
}

/**
 * Fills `root` for one TTBR/VTTBR. BADDR bits below the initial table's size
 * are treated as zero (Arm ARM pseudocode AArch64.TTBaseAddress: the base is
 * aligned to the size of the initial table; the 64-byte minimum applies only
 * to 52-bit output addresses, which this model does not implement).
 */
function fillRoot(root: TableRoot, g: GranuleKiB, tsz: number, base: number, outputBits: number, startLevel: number): void {
  const gs = granuleShift(g);
  root.enabled = true;
  root.granuleShift = gs;
  root.stride = gs - 3;
  root.inputBits = 64 - tsz;
  root.tsz = tsz;
  root.startLevel = startLevel;
  root.rootIndexBits = root.inputBits - levelShift(gs, startLevel);
  const align = 2 ** (root.rootIndexBits + 3);
  root.base = Math.floor(base / align) * align;
  root.outputBits = outputBits;
}

/** Decodes stage 1 (TCR, TTBR0/1) into `regime` (which it returns), turning stage 1 on. */
export function decodeStage1(f: Stage1Fields, regime: Regime = new Regime()): Regime {
  const ips = decodePs(f.IPS, 'TCR.IPS');
  const t0 = regime.ttbr0;
  const t1 = regime.ttbr1;
  t0.enabled = false;
  t1.enabled = false;
  if ((f.EPD0 ?? 0) === 0) {
    checkTsz(f.T0SZ, 'TCR.T0SZ');
    checkBase(f.TTBR0, 'TTBR0');
    const g = tg0ToGranule(f.TG0);
    fillRoot(t0, g, f.T0SZ, f.TTBR0, ips, naturalStartLevel(granuleShift(g), 64 - f.T0SZ));
  }
  if ((f.EPD1 ?? 1) === 0) {
    const t1sz = f.T1SZ ?? f.T0SZ;
    checkTsz(t1sz, 'TCR.T1SZ');
    checkBase(f.TTBR1 ?? 0, 'TTBR1');
    const g = tg1ToGranule(f.TG1 ?? 0b10);
    fillRoot(t1, g, t1sz, f.TTBR1 ?? 0, ips, naturalStartLevel(granuleShift(g), 64 - t1sz));
  } else {
    // Keep the input size of a disabled half so that its range is still recognised (and faults).
    t1.inputBits = 64 - (f.T1SZ ?? f.T0SZ);
  }
  if (!t0.enabled) t0.inputBits = 64 - f.T0SZ;
  regime.s1 = true;
  regime.asid = f.ASID ?? 0;
  regime.wxn = (f.WXN ?? 0) !== 0;
  return regime;
}

/**
 * The stage-2 initial lookup level for VTCR.SL0 (Arm ARM, AArch64.S2StartLevel):
 * 4 KiB: 0 -> level 2, 1 -> level 1, 2 -> level 0; 16/64 KiB: 0 -> level 3,
 * 1 -> level 2, 2 -> level 1. SL0 = 3 is reserved without FEAT_TTST/LPA2.
 */
export function s2StartLevel(g: GranuleKiB, sl0: number): number {
  if (!Number.isInteger(sl0) || sl0 < 0 || sl0 > 2) {
    throw new RegimeError(`VTCR.SL0 = ${sl0} is reserved (0..2 are defined for this implementation)`);
  }
  return g === 4 ? 2 - sl0 : 3 - sl0;
}

export function s2Sl0For(g: GranuleKiB, startLevel: number): number {
  return g === 4 ? 2 - startLevel : 3 - startLevel;
}

/**
 * The stage-2 consistency rules (Arm ARM, AArch64.S2InvalidSL and
 * AArch64.S2InconsistentSL): the initial level must resolve at least one bit
 * and at most a full level plus 4 bits (16 concatenated tables); a level-0
 * start (4 KiB) or level-1 start (16/64 KiB) needs PAMax >= 44 / 42 / 44.
 * Returns the error text, or null when consistent.
 */
export function s2ConfigError(g: GranuleKiB, tsz: number, sl0: number): string | null {
  if (tsz < TXSZ_MIN || tsz > TXSZ_MAX) return `VTCR.T0SZ = ${tsz} is outside ${TXSZ_MIN}..${TXSZ_MAX}`;
  if (sl0 < 0 || sl0 > 2) return `VTCR.SL0 = ${sl0} is reserved`;
  const gs = granuleShift(g);
  const stride = gs - 3;
  const start = s2StartLevel(g, sl0);
  if (sl0 === 2 && PA_MAX < (g === 16 ? 42 : 44)) return `VTCR.SL0 = 2 needs a larger PAMax`;
  const levels = 3 - start;
  const minIa = levels * stride + gs + 1;
  const maxIa = minIa + (stride - 1) + 4;
  const ia = 64 - tsz;
  if (ia < minIa || ia > maxIa) {
    return `VTCR.SL0 = ${sl0} (initial level ${start}) is inconsistent with VTCR.T0SZ = ${tsz}: a ${ia}-bit IPA needs an input size of ${minIa}..${maxIa} bits at that level`;
  }
  return null;
}

/** Decodes stage 2 (VTCR, VTTBR) into `regime` (which it returns), turning stage 2 on. */
export function decodeStage2(f: Stage2Fields, regime: Regime = new Regime()): Regime {
  const g = tg0ToGranule(f.TG0);
  const ps = decodePs(f.PS, 'VTCR.PS');
  if (!Number.isInteger(f.T0SZ)) throw new RegimeError(`VTCR.T0SZ = ${f.T0SZ} is not an integer`);
  const err = s2ConfigError(g, f.T0SZ, f.SL0);
  if (err !== null) throw new RegimeError(err);
  checkBase(f.VTTBR, 'VTTBR');
  fillRoot(regime.vttbr, g, f.T0SZ, f.VTTBR, ps, s2StartLevel(g, f.SL0));
  regime.s2 = true;
  regime.vmid = f.VMID ?? 0;
  return regime;
}

/** Turns stage 1 off: the input address is used as the IPA. */
export function stage1Off(regime: Regime): Regime {
  regime.s1 = false;
  regime.ttbr0.enabled = false;
  regime.ttbr1.enabled = false;
  return regime;
}
