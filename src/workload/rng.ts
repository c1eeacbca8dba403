/**
 * Seedable PRNGs for workloads. Everything in src/workload is deterministic for
 * a seed: the same seed gives the same stream, record for record.
 *
 * `mulberry32` is the generator the `nested-4k-1g` builder has always used
 * (moved here; src/workloads/nested-4k-1g.ts re-exports it). `Rng` is the
 * same algorithm with its state in a field, so a generator can draw integers
 * and floats from one state without a closure per draw.
 */

const TWO32 = 4294967296;
const TWO53 = 9007199254740992;

/** A small, fast, seedable PRNG (mulberry32). Returns floats in [0, 1) with 32 bits of randomness. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** mulberry32 with its state in a field: `float()` draws exactly what `mulberry32(seed)()` draws. */
export class Rng {
  private a: number;

  constructor(seed: number) {
    this.a = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const a = (this.a = (this.a + 0x6d2b79f5) | 0);
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A float in [0, 1) with 32 random bits (one draw). */
  float(): number {
    return this.u32() / TWO32;
  }

  /** A float in [0, 1) with 53 random bits (two draws). */
  float53(): number {
    const hi = this.u32() >>> 11; // 21 bits
    const lo = this.u32(); // 32 bits
    return (hi * TWO32 + lo) / TWO53;
  }

  /** A uniform integer in [0, n) for 1 <= n <= 2^53: one draw when n <= 2^32, two above. */
  below(n: number): number {
    return Math.floor((n <= TWO32 ? this.float() : this.float53()) * n);
  }
}

/** The seed of child `index` of a composite generator whose own seed is `seed` (a 32-bit mix). */
export function deriveSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

