/**
 * Alternative descriptor-read constructions, for measuring what single-copy
 * atomicity costs inside a real walk. Only `PhysMem` itself (wasm
 * i64.atomic.load) is what the project uses; these exist for the benchmark.
 */

import { PhysMem, type PhysMemShared } from '../src/memory/phys.js';

/** Atomics.load on a BigInt64Array (tear-free), halves extracted with BigInt.asIntN. */
export class BigIntAtomicsMem extends PhysMem {
  private readonly big: BigInt64Array;
  static from(shared: PhysMemShared): BigIntAtomicsMem {
    return new BigIntAtomicsMem(shared);
  }
  protected constructor(shared: PhysMemShared) {
    super(shared);
    this.big = new BigInt64Array(this.buffer);
  }
  override loadAt(off: number): number {
    const v = Atomics.load(this.big, off >> 3);
    this.hi = Number(BigInt.asIntN(32, v >> 32n));
    return Number(BigInt.asIntN(32, v));
  }
}

/** Two plain 32-bit loads: NOT tear-free (an upper bound on speed, never correct under races). */
export class PlainPairMem extends PhysMem {
  static from(shared: PhysMemShared): PlainPairMem {
    return new PlainPairMem(shared);
  }
  override loadAt(off: number): number {
    this.hi = this.i32[(off >> 2) + 1]!;
    return this.i32[off >> 2]!;
  }
}
