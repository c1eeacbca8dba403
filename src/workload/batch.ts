/**
 * Batches: the reusable typed arrays DMA streams are delivered in.
 *
 * A record is one DMA transaction as the SMMU sees it: the stream ID of the
 * device, the VA (IOVA) of its first byte, the access kind, and its length in
 * bytes. VAs are numbers below 2^53 in magnitude; a TTBR1-half (upper) VA is
 * its negative two's-complement value, as everywhere in this project.
 */

export const ACC_R = 0;
export const ACC_W = 1;
export const ACC_X = 2;

/** Access kinds by code (0 = read, 1 = write, 2 = exec). */
export const ACC_LETTERS = ['r', 'w', 'x'] as const;
export type AccLetter = (typeof ACC_LETTERS)[number];

export interface Batch {
  /** Stream IDs (0 .. 2^31-1). */
  readonly sid: Int32Array;
  /** VAs, negative for the upper (TTBR1) half. */
  readonly va: Float64Array;
  /** 0 = read, 1 = write, 2 = exec. */
  readonly acc: Uint8Array;
  /** Transaction lengths in bytes (0 = unknown, as read from a trace without sizes). */
  readonly size: Uint32Array;
  /** Records filled by the last fill(). */
  count: number;
  /** Length of the arrays. */
  readonly capacity: number;
}

export function createBatch(capacity: number): Batch {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 26) {
    throw new RangeError(`batch capacity: expected an integer from 1 to ${1 << 26}, got ${String(capacity)}`);
  }
  return {
    sid: new Int32Array(capacity),
    va: new Float64Array(capacity),
    acc: new Uint8Array(capacity),
    size: new Uint32Array(capacity),
    count: 0,
    capacity,
  };
}

/**
 * Anything that delivers records in batches: every generator (infinite: it
 * always fills the whole batch) and every trace reader (finite: fewer at the
 * end, then 0). `fill` overwrites the batch from index 0, sets `batch.count`
 * and returns it.
 */
export interface Source {
  fill(batch: Batch): number;
}

const TWO32 = 4294967296;

/** "0x..." for a VA; a negative (upper-half) VA as its 64-bit two's complement, 16 hex digits. */
export function formatVa(va: number): string {
  if (va >= 0) return '0x' + va.toString(16);
  const hi = Math.floor(va / TWO32);
  const lo = va - hi * TWO32;
  return '0x' + (hi >>> 0).toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

/**
 * Parses a VA written as "0x..." (up to 16 hex digits; 16 digits with bit 63
 * set are an upper-half VA, returned negative) or "-0x...". Returns undefined
 * for malformed text or a value that is not below 2^53 in magnitude.
 */
export function parseVa(s: string): number | undefined {
  const m = /^(-?)0[xX]([0-9a-fA-F]{1,16})$/.exec(s);
  if (m === null) return undefined;
  const digits = m[2]!;
  let v: number;
  if (digits.length <= 13) {
    v = parseInt(digits, 16);
  } else {
    const padded = digits.padStart(16, '0');
    let hi = parseInt(padded.slice(0, 8), 16);
    const lo = parseInt(padded.slice(8), 16);
    if (m[1] === '' && hi >= 0x80000000) hi -= TWO32; // two's complement
    v = hi * TWO32 + lo;
  }
  if (m[1] === '-') v = -v;
  if (!Number.isSafeInteger(v)) return undefined;
  return v === 0 ? 0 : v; // no -0
}
