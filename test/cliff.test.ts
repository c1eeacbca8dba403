/**
 * The IOTLB cliff's ring (src/bench/cliff.ts): tables with 4 KiB and 2 MiB
 * leaves translate every buffer to the right PA, the hit rate falls at the
 * TLB's reach and not before, and bad footprints are refused.
 */

import { describe, expect, it } from 'vitest';
import { CLIFF_BUFFER, buildCliffTables, ringPoint } from '../src/bench/cliff.js';

const tlb = (entries: number) => ({ name: `main-${entries}`, main: { entries, ways: 4, replacement: 'lru' as const } });

describe('IOTLB cliff ring', () => {
  it('a 64-entry TLB reaches 256 KiB of 4 KiB pages: full hits up to it, half past it, no walk caches = 24 reads per miss', () => {
    const t = buildCliffTables('4K', 4 << 20);
    expect(ringPoint(t, tlb(64), 256 << 10).hitRate).toBe(1);
    const past = ringPoint(t, tlb(64), 1 << 20);
    expect(past.hitRate).toBe(0.5);
    expect(past.readsPerTranslation).toBe(12);
    expect(past.translations).toBe((1 << 20) / CLIFF_BUFFER);
  });

  it('2 MiB leaves: a 64-entry TLB covers a 64 MiB ring; a 4-entry one misses once per 2 MiB page, each miss an 18-read nested walk', () => {
    const t = buildCliffTables('2M', 64 << 20);
    expect(ringPoint(t, tlb(64), 64 << 20).hitRate).toBe(1);
    // 1024 buffers per 2 MiB page: only the first misses. The walk: 3 stage-1 levels (0-2), each
    // table's IPA walked through stage 2's 4 KiB table window (4 reads) and then read (1), and the
    // output IPA's stage-2 walk ending at a level-2 block (3 reads): 3 x 5 + 3 = 18.
    const small = ringPoint(t, tlb(4), 64 << 20);
    expect(small.hitRate).toBe(1 - 1 / 1024);
    expect(small.readsPerTranslation * 1024).toBe(18);
  });

  it('refuses footprints it cannot serve', () => {
    const t = buildCliffTables('4K', 1 << 20);
    expect(() => ringPoint(t, tlb(64), 2 << 20)).toThrow(/up to the 1048576 bytes mapped/);
    expect(() => ringPoint(t, tlb(64), 1000)).toThrow(/multiple of 2048/);
    expect(() => buildCliffTables('2M', 3 << 20)).toThrow(/multiple of 2097152/);
  });
});
