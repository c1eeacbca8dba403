/**
 * Deliberately broken variants of the farm's protocol, for the stress tester
 * (`smmu-farm stress --inject BUG`): each one must be caught by its checker,
 * which is what shows the checker can fail. Every switch defaults off, and the
 * normal path pays at most a constant flag check outside inner loops.
 *
 * | mode         | where                         | what breaks                                                        |
 * |--------------|-------------------------------|--------------------------------------------------------------------|
 * | `skip-ack`   | unit (UnitInit.inject)        | `Unit.catchUp` acknowledges invalidations without applying them     |
 * | `early-sync` | publisher (InvalidatorOptions)| `FarmInvalidator.sync` returns before any unit acknowledged         |
 * | `late-fill`  | unit + cache                  | the unit applies invalidations from inside a walk (the cache's     |
 * |              |                               | `afterWalk` hook), and the cache ignores its epoch rule, so a walk |
 * |              |                               | that began before an invalidation fills the cache after it         |
 * | `torn-read`  | unit memory                   | descriptors are read as two independent 32-bit halves              |
 *
 * `late-fill` applies whatever was published when the walk ends (the hook
 * is `Unit.catchUp`): with the stress tester's hot pages, invalidations of
 * the page being walked land mid-walk often enough. `torn-read` reads the high word first, then the low word, with a little
 * work in between as a compiler or a slow path might put there; reading the
 * high word first makes the tear observable on the transitions that
 * walkers race most (invalid -> valid: the old high word with the new low
 * word is an address that was never written).
 */

import { PhysMem, type PhysMemShared } from '../memory/phys.js';

export const INJECT_MODES = ['skip-ack', 'early-sync', 'late-fill', 'torn-read'] as const;
export type InjectMode = (typeof INJECT_MODES)[number];
/** The modes that break the unit side (passed in UnitInit). */
export type UnitInject = 'skip-ack' | 'late-fill' | 'torn-read';

export function isInjectMode(s: string): s is InjectMode {
  return (INJECT_MODES as readonly string[]).includes(s);
}

/** Loads between the two halves of a torn-read descriptor read. */
export const TEAR_GAP_LOADS = 16;

/** Physical memory whose descriptor reads are NOT single-copy atomic: two 32-bit loads. */
export class TearingPhysMem extends PhysMem {
  static attachTearing(shared: PhysMemShared): TearingPhysMem {
    return new TearingPhysMem(shared);
  }

  override loadAt(off: number): number {
    const hi = Atomics.load(this.i32, (off >> 2) + 1);
    // A little work between the halves (loads of the always-zero word, which the compiler
    // cannot drop), as a slow path might put there.
    let x = 0;
    for (let i = 0; i < TEAR_GAP_LOADS; i++) x |= Atomics.load(this.i32, 0);
    const lo = Atomics.load(this.i32, off >> 2);
    this.hi = hi | x;
    return lo;
  }
}
