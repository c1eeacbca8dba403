/**
 * Translation granule geometry (Arm ARM DDI 0487, D8.2 "Translation table
 * walk"): how many address bits each lookup level resolves, and which levels
 * may hold block descriptors.
 */

export type GranuleKiB = 4 | 16 | 64;
export const GRANULES: readonly GranuleKiB[] = [4, 16, 64];

/** log2 of the granule size: 12, 14 or 16. */
export function granuleShift(g: GranuleKiB): number {
  return g === 4 ? 12 : g === 16 ? 14 : 16;
}

/** Bits resolved per full lookup level: granuleShift - 3 (9, 11 or 13). */
export function strideOf(gShift: number): number {
  return gShift - 3;
}

/** log2 of the size of the region one descriptor at `level` maps. */
export function levelShift(gShift: number, level: number): number {
  return gShift + (3 - level) * (gShift - 3);
}

/**
 * Whether a block descriptor is allowed at `level` (48-bit output, no
 * FEAT_LPA / FEAT_LPA2): 4 KiB granule at levels 1 and 2 (1 GiB, 2 MiB);
 * 16 KiB at level 2 (32 MiB); 64 KiB at level 2 (512 MiB). Level 3 holds pages.
 */
export function blockAllowed(gShift: number, level: number): boolean {
  if (level === 2) return true;
  if (level === 1) return gShift === 12;
  return false;
}

/** The first level that a walk of `inputBits` needs when no tables are concatenated. */
export function naturalStartLevel(gShift: number, inputBits: number): number {
  const stride = gShift - 3;
  const levels = Math.ceil((inputBits - gShift) / stride);
  return 4 - levels;
}

/** Page sizes (log2) that `map` can use for a granule: the page plus the allowed blocks. */
export function leafShifts(gShift: number): number[] {
  const out: number[] = [];
  for (let level = 3; level >= 0; level--) {
    if (level === 3 || blockAllowed(gShift, level)) out.push(levelShift(gShift, level));
  }
  return out;
}

/** Output address sizes that TCR.IPS / VTCR.PS encode: 0b000 = 32 bits ... 0b101 = 48 bits. */
export const PA_SIZE_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];

export function paSizeEncoding(bits: number): number {
  const i = PA_SIZE_BITS.indexOf(bits);
  if (i < 0) throw new RangeError(`output address size ${bits} is not one of 32, 36, 40, 42, 44, 48`);
  return i;
}

/** 2^n for n in 0..64, exact doubles. */
export const POW2: Float64Array = (() => {
  const t = new Float64Array(65);
  for (let i = 0; i <= 64; i++) t[i] = 2 ** i;
  return t;
})();

/** 2^-n for n in 0..64: multiplying by it is an exact right shift for numbers below 2^53. */
export const INV_POW2: Float64Array = (() => {
  const t = new Float64Array(65);
  for (let i = 0; i <= 64; i++) t[i] = 2 ** -i;
  return t;
})();
