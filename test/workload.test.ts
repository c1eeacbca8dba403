/**
 * DMA workloads (src/workload): generators (determinism, the shape of each
 * stream, hand-worked ring and page-pool recycling orders, Zipf against its
 * analytic head frequency, access mixes), configuration errors, the binary and
 * JSON-lines trace formats (round trips, streaming through a small buffer,
 * malformed input named by file and record/line), recording generators, and
 * `smmu-farm trace` through the built command line.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { mulberry32 as legacyMulberry32 } from '../src/workloads/nested-4k-1g.js';
import {
  BinaryTraceReader,
  JsonlTraceReader,
  Rng,
  RingGenerator,
  SgGenerator,
  StorageGenerator,
  TraceError,
  WorkloadConfigError,
  ZipfGenerator,
  ZipfSampler,
  convertTrace,
  createBatch,
  createGenerator,
  createPreset,
  formatVa,
  mulberry32,
  openTraceReader,
  openTraceWriter,
  parseVa,
  presetConfig,
  recordTrace,
  resolveConfig,
  traceInfo,
  workloadPresetNames,
  type Batch,
  type Source,
} from '../src/workload/index.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const tmp = (): string => mkdtempSync(join(tmpdir(), 'smmu-workload-'));

interface Rec {
  sid: number;
  va: number;
  acc: number;
  size: number;
}

/** The first n records of a source, pulled with batches of the given capacity. */
function take(src: Source, n: number, capacity = 1024): Rec[] {
  const b = createBatch(capacity);
  const out: Rec[] = [];
  while (out.length < n) {
    const got = src.fill(b);
    if (got === 0) break;
    for (let i = 0; i < got && out.length < n; i++) out.push({ sid: b.sid[i]!, va: b.va[i]!, acc: b.acc[i]!, size: b.size[i]! });
  }
  return out;
}

/** Columns of the first n records (fast to compare). */
function columns(src: Source, n: number, capacity = 4096): { sid: Int32Array; va: Float64Array; acc: Uint8Array; size: Uint32Array } {
  const all = { sid: new Int32Array(n), va: new Float64Array(n), acc: new Uint8Array(n), size: new Uint32Array(n) };
  const b: Batch = createBatch(capacity);
  let k = 0;
  while (k < n) {
    const got = src.fill(b);
    if (got === 0) break;
    const m = Math.min(got, n - k);
    all.sid.set(b.sid.subarray(0, m), k);
    all.va.set(b.va.subarray(0, m), k);
    all.acc.set(b.acc.subarray(0, m), k);
    all.size.set(b.size.subarray(0, m), k);
    k += m;
  }
  expect(k).toBe(n);
  return all;
}

/** Byte-for-byte equality of two typed arrays (much faster than toEqual on long arrays). */
function same(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function sameColumns(a: ReturnType<typeof columns>, b: ReturnType<typeof columns>): boolean {
  return same(a.sid, b.sid) && same(a.va, b.va) && same(a.acc, b.acc) && same(a.size, b.size);
}

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

// ------------------------------------------------------------------ generators

describe('PRNG', () => {
  it('Rng draws exactly what mulberry32 draws, and nested-4k-1g still exports the same mulberry32', () => {
    const a = mulberry32(42);
    const b = legacyMulberry32(42);
    const r = new Rng(42);
    for (let i = 0; i < 1000; i++) {
      const x = a();
      expect(b()).toBe(x);
      expect(r.float()).toBe(x);
    }
    // below(n) stays in range, also above 2^32 (two draws).
    const q = new Rng(7);
    for (let i = 0; i < 1000; i++) {
      const v = q.below(2 ** 40);
      expect(Number.isInteger(v) && v >= 0 && v < 2 ** 40).toBe(true);
    }
  });
});

describe('determinism', () => {
  it('every preset gives the same stream for the same seed, whatever the batch size, and another for another seed', () => {
    for (const name of workloadPresetNames()) {
      const a = columns(createPreset(name, 7), 20000, 4096);
      const b = columns(createPreset(name, 7), 20000, 7);
      expect(sameColumns(a, b), name).toBe(true);
      // seq-stream (all reads, in address order) has nothing random in it.
      if (name === 'seq-stream') continue;
      const c = columns(createPreset(name, 8), 20000);
      expect(same(c.va, a.va), name).toBe(false);
    }
  });

  it('a resolved configuration is plain JSON and rebuilds the identical stream', () => {
    for (const name of workloadPresetNames()) {
      const r = resolveConfig(presetConfig(name), { seed: 3 });
      const again = JSON.parse(JSON.stringify(r)) as unknown;
      expect(sameColumns(columns(createGenerator(again), 5000), columns(createPreset(name, 3), 5000)), name).toBe(true);
    }
  });
});

describe('sequential', () => {
  it('walks the footprint at the stride and starts again at base', () => {
    const g = createGenerator({ kind: 'sequential', sid: 9, base: '0x1000', footprint: 8192, accessSize: 64, stride: 256 });
    const recs = take(g, 100);
    recs.forEach((r, i) => {
      expect(r).toEqual({ sid: 9, va: 0x1000 + ((i * 256) % 8192), acc: 0, size: 64 });
    });
    // A stride that does not divide the footprint: the pass ends when the next access would not fit.
    const h = createGenerator({ kind: 'sequential', footprint: 1000, accessSize: 100, stride: 300 });
    expect(take(h, 9).map((r) => r.va)).toEqual([0, 300, 600, 900, 0, 300, 600, 900, 0]);
  });

  it('cuts accesses into transactions of at most maxBurst bytes that never cross 4 KiB, in the upper half too', () => {
    const g = createGenerator({ kind: 'sequential', base: '0x800', footprint: 3 * 8192, accessSize: 8192, stride: 8192 });
    expect(take(g, 4).map((r) => [r.va, r.size])).toEqual([
      [0x800, 0x800],
      [0x1000, 0x1000],
      [0x2000, 0x800],
      [0x2800, 0x800],
    ]);
    const up = createGenerator({ kind: 'sequential', base: '0xffffffffffff0800', footprint: 0xf000, accessSize: 4096, maxBurst: 1024 });
    const recs = take(up, 6);
    expect(recs.map((r) => r.va)).toEqual([-0xf800, -0xf400, -0xf000, -0xec00, -0xe800, -0xe400]);
    // -0xf800 + 2048 = -0xf000: the first access is cut at the 4 KiB boundary.
    expect(recs.map((r) => r.size)).toEqual([1024, 1024, 1024, 1024, 1024, 1024]);
    const cut = take(createGenerator({ kind: 'sequential', base: -0x10800, footprint: 0x10000, accessSize: 4096 }), 2);
    expect(cut.map((r) => [r.va, r.size])).toEqual([
      [-0x10800, 0x800],
      [-0x10000, 0x800],
    ]);
  });
});

describe('uniform', () => {
  it('covers the footprint evenly (chi-square over 64 pages below the 99.9% quantile), aligned and in bounds', () => {
    const base = 0x4000_0000;
    const g = createGenerator({ kind: 'uniform', base, footprint: 64 * 4096, accessSize: 4096, seed: 11 });
    const n = 64000;
    const counts = new Array<number>(64).fill(0);
    let bad = 0;
    for (const r of take(g, n)) {
      if (!(r.va >= base && r.va < base + 64 * 4096 && r.va % 4096 === 0)) bad++;
      counts[(r.va - base) / 4096]++;
    }
    expect(bad).toBe(0);
    const e = n / 64;
    const chi2 = counts.reduce((a, c) => a + (c - e) ** 2 / e, 0);
    expect(chi2).toBeLessThan(103.4); // chi-square, 63 degrees of freedom, 99.9%
    expect(Math.min(...counts)).toBeGreaterThan(e * 0.85);
  });

  it('draws the read/write/exec mix within 1%', () => {
    const recs = take(createGenerator({ kind: 'uniform', footprint: 1 << 20, mix: { r: 5, w: 3, x: 2 }, seed: 5 }), 100000);
    const f = [0, 0, 0];
    for (const r of recs) f[r.acc]!++;
    expect(f[0]! / 1e5).toBeCloseTo(0.5, 1);
    expect(Math.abs(f[0]! / 1e5 - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(f[1]! / 1e5 - 0.3)).toBeLessThan(0.01);
    expect(Math.abs(f[2]! / 1e5 - 0.2)).toBeLessThan(0.01);
    // A zero weight never happens.
    expect(take(createGenerator({ kind: 'uniform', mix: { w: 1 } }), 2000).every((r) => r.acc === 1)).toBe(true);
  });
});

describe('Zipf', () => {
  it('s = 1 over 1000 pages: the head frequencies match 1/(k H_N) and the first 20 ranks pass chi-square', () => {
    const N = 1000;
    let H = 0;
    for (let k = 1; k <= N; k++) H += 1 / k;
    const n = 200000;
    const g = createGenerator({ kind: 'zipf', pages: N, s: 1, scatter: false, accessSize: 4096, seed: 3 });
    const counts = new Array<number>(N).fill(0);
    for (const r of take(g, n)) counts[r.va / 4096]++;
    expect(Math.abs(counts[0]! / n - 1 / H)).toBeLessThan(0.004); // 1/H_1000 = 0.1336; sigma = 0.00076
    expect(Math.abs(counts[1]! / n - 1 / (2 * H))).toBeLessThan(0.003);
    expect(Math.abs(counts[9]! / n - 1 / (10 * H))).toBeLessThan(0.0015);
    let chi2 = 0;
    let tail = 0;
    for (let k = 1; k <= 20; k++) chi2 += (counts[k - 1]! - n / (k * H)) ** 2 / (n / (k * H));
    for (let k = 21; k <= N; k++) tail += 1 / (k * H);
    const tailCount = counts.slice(20).reduce((a, c) => a + c, 0);
    chi2 += (tailCount - n * tail) ** 2 / (n * tail);
    expect(chi2).toBeLessThan(45.3); // 20 degrees of freedom, 99.9%
  });

  it('the sampler matches the exact distribution for a small n and a large s', () => {
    const sm = new ZipfSampler(5, 2);
    const rng = new Rng(99);
    const c = [0, 0, 0, 0, 0];
    const n = 100000;
    for (let i = 0; i < n; i++) c[sm.sample(rng) - 1]!++;
    const Z = [1, 2, 3, 4, 5].reduce((a, k) => a + 1 / k ** 2, 0);
    const chi2 = c.reduce((a, x, i) => a + (x - n / ((i + 1) ** 2 * Z)) ** 2 / (n / ((i + 1) ** 2 * Z)), 0);
    expect(chi2).toBeLessThan(18.5); // 4 degrees of freedom, 99.9%
  });

  it('scatter places the hot ranks on a permutation of the pages; the hottest page carries rank 1', () => {
    const N = 4096;
    const g = createGenerator({ kind: 'zipf', pages: N, s: 0.99, base: 0x10_0000_0000, seed: 4 }) as ZipfGenerator;
    const seen = new Set<number>();
    for (let k = 1; k <= N; k++) seen.add(g.pageOfRank(k));
    expect(seen.size).toBe(N);
    let H = 0;
    for (let k = 1; k <= N; k++) H += 1 / k ** 0.99;
    const counts = new Map<number, number>();
    const n = 100000;
    let bad = 0;
    for (const r of take(g, n)) {
      const p = Math.floor((r.va - 0x10_0000_0000) / 4096);
      if (!(p >= 0 && p < N && r.size === 64 && r.va % 64 === 0)) bad++;
      counts.set(p, (counts.get(p) ?? 0) + 1);
    }
    expect(bad).toBe(0);
    const [hot, hotCount] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]!;
    expect(hot).toBe(g.pageOfRank(1));
    expect(Math.abs(hotCount / n - 1 / H)).toBeLessThan(0.005);
    expect(g.pageOfRank(1)).not.toBe(0);
  });
});

describe('NIC rings', () => {
  const tiny = { kind: 'ring', entries: 2, bufSize: 4096, headroom: 0, packetBytes: 64, descriptors: false, txFraction: 0 } as const;
  const buffers = (g: RingGenerator, n: number): number[] => take(g, n).map((r) => (r.va - g.layout.rxBuf) / 4096);

  it('ring order: packet n uses buffer n mod poolBuffers (worked by hand: 2 slots, 4 buffers)', () => {
    const g = createGenerator({ ...tiny, recycle: 'ring', poolBuffers: 4 }) as RingGenerator;
    expect(buffers(g, 10)).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
    const own = createGenerator({ ...tiny, entries: 3, recycle: 'ring' }) as RingGenerator;
    expect(buffers(own, 7)).toEqual([0, 1, 2, 0, 1, 2, 0]);
  });

  it('page-pool order (worked by hand: 2 slots, 4 buffers, the stack holds 1 and frees in order onto a LIFO)', () => {
    // slot0=b0 slot1=b1, free list pops b2 then b3.
    // p1: b0 up the stack (holds b0), slot0 <- b2.   p2: b1 up, stack frees b0, slot1 <- b0 (LIFO top).
    // p3: b2 up, frees b1, slot0 <- b1.   p4: b0 up, frees b2, slot1 <- b2.   ... b3 is never touched.
    const g = createGenerator({ ...tiny, recycle: 'page-pool', poolBuffers: 4, hold: 1, completion: 'in-order' }) as RingGenerator;
    expect(buffers(g, 10)).toEqual([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
    // Holding nothing, a freed buffer goes straight back into its own slot.
    const h = createGenerator({ ...tiny, recycle: 'page-pool', poolBuffers: 4, hold: 0 }) as RingGenerator;
    expect(buffers(h, 6)).toEqual([0, 1, 0, 1, 0, 1]);
  });

  it('shuffled page-pool completions: a LIFO touches only entries + hold buffers, never reuses a buffer before its slot comes round', () => {
    const E = 16;
    const H = 8;
    const g = createGenerator({ ...tiny, entries: E, recycle: 'page-pool', poolBuffers: 64, hold: H, seed: 12 }) as RingGenerator;
    const seq = buffers(g, 5000);
    expect(new Set(seq).size).toBe(E + H);
    expect(Math.max(...seq)).toBeLessThan(64);
    const last = new Map<number, number>();
    let minGap = Infinity;
    seq.forEach((b, i) => {
      const j = last.get(b);
      if (j !== undefined) minGap = Math.min(minGap, i - j);
      last.set(b, i);
    });
    expect(minGap).toBeGreaterThanOrEqual(E);
    // Shuffled, unlike in-order, where the cycle is exactly entries + hold long.
    const gaps = new Set<number>();
    seq.forEach((b, i) => {
      if (i >= 1000 && seq.indexOf(b, i + 1) > 0) gaps.add(seq.indexOf(b, i + 1) - i);
    });
    expect(gaps.size).toBeGreaterThan(3);
    const inOrder = buffers(createGenerator({ ...tiny, entries: E, recycle: 'page-pool', poolBuffers: 64, hold: H, completion: 'in-order' }) as RingGenerator, 400);
    for (let i = E + H; i < 400; i++) expect(inOrder[i]).toBe(inOrder[i - (E + H)]);
  });

  it('each packet fetches its descriptor, moves the data (rx writes, tx reads) and writes the descriptor back', () => {
    const g = createGenerator({ kind: 'ring', entries: 4, bufSize: 2048, headroom: 64, packetBytes: 1000, txFraction: 0.5, seed: 2 }) as RingGenerator;
    expect(g.layout).toEqual({ rxBuf: 0, txBuf: 8192, rxDesc: 16384, txDesc: 20480, end: 24576 });
    const recs = take(g, 3 * 400, 3 * 400);
    const head = { rx: 0, tx: 0 };
    const post = { rx: 0, tx: 0 };
    for (let p = 0; p < 400; p++) {
      const [d, data, wb] = [recs[3 * p]!, recs[3 * p + 1]!, recs[3 * p + 2]!];
      const side = d.va >= 20480 ? 'tx' : 'rx';
      const descBase = side === 'tx' ? 20480 : 16384;
      const bufBase = side === 'tx' ? 8192 : 0;
      expect(d).toEqual({ sid: 0, va: descBase + head[side] * 16, acc: 0, size: 16 });
      expect(data).toEqual({ sid: 0, va: bufBase + (post[side] % 4) * 2048 + 64, acc: side === 'tx' ? 0 : 1, size: 1000 });
      expect(wb).toEqual({ ...d, acc: 1 });
      head[side] = (head[side] + 1) % 4;
      post[side]++;
    }
    expect(g.rxPackets + g.txPackets).toBe(400);
    expect(Math.abs(g.txPackets / 400 - 0.5)).toBeLessThan(0.1);
  });
});

describe('scatter-gather lists', () => {
  it('each I/O has segmentsMin..segmentsMax segments in one direction, each inside one page of the footprint, sized and aligned', () => {
    const base = 0x2_0000_0000;
    const g = createGenerator({
      kind: 'sg',
      base,
      footprint: 1 << 20,
      segments: [2, 5],
      segmentBytes: [512, 2048],
      align: 512,
      mix: { r: 1, w: 1 },
      seed: 6,
    }) as SgGenerator;
    const b = createBatch(1);
    const ios = new Map<number, Rec[]>();
    const bad: Rec[] = [];
    for (let i = 0; i < 20000; i++) {
      g.fill(b);
      const r = { sid: b.sid[0]!, va: b.va[0]!, acc: b.acc[0]!, size: b.size[0]! };
      const io = ios.get(g.ios) ?? [];
      io.push(r);
      ios.set(g.ios, io);
      const off = r.va - base;
      const inBounds = off >= 0 && off + r.size <= 1 << 20;
      const inOnePage = Math.floor(off / 4096) === Math.floor((off + r.size - 1) / 4096);
      const shaped = r.size % 512 === 0 && r.size >= 512 && r.size <= 2048 && off % 512 === 0;
      if (!(inBounds && inOnePage && shaped)) bad.push(r);
    }
    expect(bad).toEqual([]);
    ios.delete(g.ios); // the last list may be unfinished
    const lens = [...ios.values()].map((io) => io.length);
    expect(Math.min(...lens)).toBe(2);
    expect(Math.max(...lens)).toBe(5);
    expect(Math.abs(lens.reduce((a, c) => a + c, 0) / lens.length - 3.5)).toBeLessThan(0.1);
    for (const io of ios.values()) expect(new Set(io.map((r) => r.acc)).size).toBe(1);
    const dirs = [...ios.values()].map((io) => io[0]!.acc);
    expect(Math.abs(dirs.filter((a) => a === 1).length / dirs.length - 0.5)).toBeLessThan(0.05);
  });
});

describe('storage mix', () => {
  it('large sequential I/Os continue where the last one ended; small random ones are aligned; the share is seqFraction', () => {
    const base = 0x1_0000_0000;
    const fp = 1 << 24;
    const g = createGenerator({ kind: 'storage', base, footprint: fp, seqFraction: 0.3, seqBytes: 65536, randBytes: 4096, seed: 8 }) as StorageGenerator;
    const b = createBatch(1);
    let cursor = 0;
    let inSeq = 0;
    let seqs = 0;
    let rands = 0;
    const bad: string[] = [];
    for (let i = 0; i < 30000; i++) {
      const before = g.seqIos;
      const beforeR = g.randIos;
      g.fill(b);
      const va = b.va[0]!;
      if (g.seqIos > before) {
        seqs++;
        if (cursor + 65536 > fp) cursor = 0;
        if (va !== base + cursor) bad.push(`${i}: a sequential I/O at ${formatVa(va)}, expected ${formatVa(base + cursor)}`);
        inSeq = 65536;
      } else if (g.randIos > beforeR) {
        rands++;
        if (b.size[0] !== 4096 || (va - base) % 4096 !== 0 || va < base || va >= base + fp) bad.push(`${i}: random I/O ${formatVa(va)} +${b.size[0]}`);
        continue;
      } else if (va !== base + cursor || inSeq <= 0) {
        bad.push(`${i}: ${formatVa(va)} does not continue a sequential I/O at ${formatVa(base + cursor)}`);
      }
      if (b.size[0] !== 4096) bad.push(`${i}: size ${b.size[0]}`);
      cursor += 4096;
      inSeq -= 4096;
    }
    expect(bad).toEqual([]);
    expect(Math.abs(seqs / (seqs + rands) - 0.3)).toBeLessThan(0.02);
  });
});

describe('several devices', () => {
  it('round-robin runs, default stream IDs by position, and each stream is the one it would be alone', () => {
    const cfg = {
      kind: 'interleave',
      order: 'round-robin',
      run: 2,
      seed: 5,
      streams: [
        { kind: 'uniform', footprint: 1 << 20 },
        { kind: 'sequential', sid: 40 },
        { kind: 'zipf', pages: 100 },
      ],
    };
    const recs = take(createGenerator(cfg), 60);
    expect(recs.slice(0, 12).map((r) => r.sid)).toEqual([0, 0, 40, 40, 2, 2, 0, 0, 40, 40, 2, 2]);
    const resolved = resolveConfig(cfg);
    if (resolved.kind !== 'interleave') throw new Error('kind');
    resolved.streams.forEach(({ weight, ...s }, i) => {
      expect(weight).toBe(1);
      const alone = take(createGenerator(s), 20).map((r) => r.va);
      const mine = recs.filter((r) => r.sid === [0, 40, 2][i]).map((r) => r.va);
      expect(mine).toEqual(alone);
    });
  });

  it('weighted choice follows the weights; multi-device has three devices and some exec', () => {
    const recs = take(
      createGenerator({ kind: 'interleave', streams: [{ kind: 'uniform', weight: 3 }, { kind: 'uniform', weight: 1 }], seed: 1 }),
      40000,
    );
    expect(Math.abs(recs.filter((r) => r.sid === 0).length / 40000 - 0.75)).toBeLessThan(0.01);
    const md = take(createPreset('multi-device'), 50000);
    expect(new Set(md.map((r) => r.sid))).toEqual(new Set([0x100, 0x200, 0x300]));
    expect(md.some((r) => r.acc === 2)).toBe(true);
  });
});

describe('configuration errors', () => {
  const msg = (c: unknown, o?: { seed?: number }): string => errorOf(() => createGenerator(c, o)).message;

  it('name the JSON path and what is wrong', () => {
    expect(msg({ kind: 'zipf', s: -1 })).toBe('$.s: expected a number > 0, got -1');
    expect(msg({ kind: 'interleave', streams: [{ kind: 'uniform' }, { kind: 'zipf', s: 0 }] })).toBe('$.streams[1].s: expected a number > 0, got 0');
    expect(msg({ kind: 'warp' })).toMatch(/^\$\.kind: expected "sequential" or .* got "warp"$/);
    expect(msg({})).toMatch(/^\$\.kind: required/);
    expect(msg(null)).toBe('$: expected an object, got null');
    expect(msg({ kind: 'uniform', footprnt: 4096 })).toMatch(/^\$\.footprnt: unknown property \(expected one of: .*footprint/);
    expect(msg({ kind: 'uniform', mix: { r: 0 } })).toBe('$.mix: expected at least one of r, w, x to be > 0');
    expect(msg({ kind: 'uniform', mix: { read: 1 } })).toMatch(/^\$\.mix\.read: unknown property/);
    expect(msg({ kind: 'ring', mix: { r: 1 } })).toMatch(/^\$\.mix: not used by "ring"/);
    expect(msg({ kind: 'ring', entries: 8, recycle: 'page-pool', hold: 4, poolBuffers: 10 })).toBe(
      '$.poolBuffers: expected at least entries + hold (8 + 4 = 12) buffers, got 10',
    );
    expect(msg({ kind: 'ring', hold: 4 })).toBe('$.hold: only for recycle "page-pool"');
    expect(msg({ kind: 'ring', bufSize: 2048, headroom: 64, packetBytes: 2000 })).toMatch(/^\$\.packetBytes: expected a packet size \(at most bufSize - headroom = 1984\)/);
    expect(msg({ kind: 'sg', segmentBytes: [100, 4096] })).toMatch(/^\$\.segmentBytes: expected multiples of align \(512\)/);
    expect(msg({ kind: 'sg', segments: [5, 2] })).toBe('$.segments: expected min <= max, got [5,2]');
    expect(msg({ kind: 'sg', segments: [0, 2] })).toMatch(/^\$\.segments\[0\]: expected a segment count from 1/);
    expect(msg({ kind: 'uniform', base: '0xzz' })).toMatch(/^\$\.base: expected a VA/);
    expect(msg({ kind: 'uniform', base: -4096, footprint: 8192 })).toMatch(/^\$: the region .* crosses from the upper \(TTBR1\) half/);
    expect(msg({ kind: 'uniform', seed: 1.5 })).toMatch(/^\$\.seed: expected a seed/);
    expect(msg({ kind: 'uniform' }, { seed: -1 })).toMatch(/^seed: expected a seed from 0 to 4294967295/);
    expect(msg({ kind: 'zipf', pages: 1 << 25 })).toMatch(/^\$\.pages: .*scatter: false/);
    expect(msg({ kind: 'uniform', weight: 2 })).toMatch(/^\$\.weight: unknown property/);
    expect(errorOf(() => createGenerator({ kind: 'zipf', s: 'a' }))).toBeInstanceOf(WorkloadConfigError);
    expect(errorOf(() => presetConfig('nope')).message).toMatch(/unknown workload preset "nope" \(known: seq-stream, /);
  });
});

// ------------------------------------------------------------------ traces

/** A small hand-made source: negative VAs, large stream IDs, every access kind. */
function handSource(n: number): Source {
  let k = 0;
  return {
    fill(b: Batch): number {
      let i = 0;
      while (i < b.capacity && k < n) {
        b.sid[i] = (k * 2654435761) % 0x7fffffff;
        b.va[i] = k % 3 === 0 ? -0x20_0000 - k * 64 : k % 3 === 1 ? 2 ** 52 + k : k * 4096;
        b.acc[i] = k % 3;
        b.size[i] = k % 4097;
        i++;
        k++;
      }
      b.count = i;
      return i;
    },
  };
}

describe('trace formats', () => {
  it('VAs print as 64-bit two\'s complement hex and parse back', () => {
    expect(formatVa(-0x20_0000)).toBe('0xffffffffffe00000');
    expect(formatVa(0x1234)).toBe('0x1234');
    expect(parseVa('0xffffffffffe00000')).toBe(-0x20_0000);
    expect(parseVa('-0x200000')).toBe(-0x20_0000);
    expect(parseVa('0x1fffffffffffff')).toBe(2 ** 53 - 1);
    expect(parseVa('0x20000000000000')).toBeUndefined();
    expect(parseVa('0x0g')).toBeUndefined();
  });

  it('binary -> JSON lines -> binary is byte-identical (with and without sizes); the records survive', () => {
    const dir = tmp();
    for (const sizes of [true, false]) {
      const a = join(dir, `a-${sizes}.smtr`);
      const j = join(dir, `a-${sizes}.jsonl`);
      const c = join(dir, `c-${sizes}.smtr`);
      expect(recordTrace(handSource(3000), a, { count: 5000, sizes, meta: { note: 'hand', n: [1, 2] } })).toBe(3000);
      expect(statSync(a).size).toBe(24 + JSON.stringify({ note: 'hand', n: [1, 2] }).length + 3000 * (sizes ? 17 : 13));
      expect(convertTrace(a, j)).toBe(3000);
      expect(convertTrace(j, c)).toBe(3000);
      expect(readFileSync(c).equals(readFileSync(a))).toBe(true);
      const lines = readFileSync(j, 'utf8').split('\n');
      expect(lines[0]).toBe(`{"format":"smmu-trace/1","sizes":${sizes},"meta":{"note":"hand","n":[1,2]}}`);
      expect(lines[1]).toBe(`{"sid":0,"va":"0xffffffffffe00000","acc":"r"${sizes ? ',"size":0' : ''}}`);
      expect(lines[2]).toBe(`{"sid":${2654435761 % 0x7fffffff},"va":"0x10000000000001","acc":"w"${sizes ? ',"size":1' : ''}}`);
      expect(lines[3]).toBe(`{"sid":${(2 * 2654435761) % 0x7fffffff},"va":"0x2000","acc":"x"${sizes ? ',"size":2' : ''}}`);
      const want = columns(handSource(3000), 3000);
      for (const f of [a, j, c]) {
        const got = columns(openTraceReader(f), 3000);
        expect(got.va).toEqual(want.va);
        expect(got.sid).toEqual(want.sid);
        expect(got.acc).toEqual(want.acc);
        expect(got.size).toEqual(sizes ? want.size : new Uint32Array(3000));
      }
    }
  });

  it('streams a trace much larger than its buffer, in any batch size', () => {
    const dir = tmp();
    const f = join(dir, 'big.smtr');
    const n = 50000;
    recordTrace(createPreset('storage-mix', 2), f, { count: n });
    const r = new BinaryTraceReader(f, { bufferBytes: 100 });
    expect(r.bufferBytes).toBe(85); // 5 records of 17 bytes
    expect(r.header.count).toBe(n);
    const got = columns(r, n, 64);
    const want = columns(createPreset('storage-mix', 2), n);
    expect(sameColumns(got, want)).toBe(true);
    expect(r.fill(createBatch(8))).toBe(0);
    expect(r.position).toBe(n);
    const jl = join(dir, 'big.jsonl');
    convertTrace(f, jl);
    expect(statSync(jl).size).toBeGreaterThan(100 * 256);
    const jr = new JsonlTraceReader(jl, { bufferBytes: 256 });
    expect(sameColumns(columns(jr, n, 1000), want)).toBe(true);
    expect(jr.fill(createBatch(4))).toBe(0);
  });

  it('a generator recorded into a trace replays identically, and its metadata rebuilds it', () => {
    const dir = tmp();
    for (const name of ['ring-pagepool', 'multi-device', 'zipf-0.99']) {
      for (const ext of ['smtr', 'jsonl']) {
        const f = join(dir, `${name}.${ext}`);
        const config = resolveConfig(presetConfig(name), { seed: 21 });
        recordTrace(createGenerator(config), f, { count: 7000, meta: { config } });
        const r = openTraceReader(f);
        const got = columns(r, 7000, 333);
        expect(r.fill(createBatch(1))).toBe(0);
        const want = columns(createPreset(name, 21), 7000);
        expect(sameColumns(got, want), `${name}.${ext}`).toBe(true);
        const again = columns(createGenerator(openTraceReader(f).header.meta!.config), 7000);
        expect(sameColumns(again, want), `${name}.${ext} from its metadata`).toBe(true);
      }
    }
  });

  it('malformed binary traces are reported with the file and the record', () => {
    const dir = tmp();
    const good = join(dir, 'good.smtr');
    recordTrace(handSource(10), good, { count: 10 });
    const bytes = readFileSync(good);
    const put = (name: string, b: Uint8Array): string => {
      const f = join(dir, name);
      writeFileSync(f, b);
      return f;
    };
    const readAll = (f: string): Error => errorOf(() => columns(openTraceReader(f, { bufferBytes: 40 }), 10, 3));

    const magic = put('magic.smtr', Buffer.concat([Buffer.from('NOPE'), bytes.subarray(4)]));
    expect(readAll(magic).message).toBe(`${magic}: header: bad magic: expected "SMTR" (53 4d 54 52), got 4e 4f 50 45`);
    expect(readAll(magic)).toBeInstanceOf(TraceError);
    const empty = put('empty.smtr', new Uint8Array(0));
    expect(readAll(empty).message).toBe(`${empty}: header: bad magic: expected "SMTR" (53 4d 54 52), got an empty file`);
    const trunc = put('trunc.smtr', bytes.subarray(0, 24 + 7 * 17 + 5));
    expect(readAll(trunc).message).toBe(`${trunc}: record 7 (byte ${24 + 7 * 17}): truncated: 5 of 17 bytes`);
    const short = put('short.smtr', bytes.subarray(0, 24 + 7 * 17));
    expect(readAll(short).message).toBe(`${short}: record 7 (byte ${24 + 7 * 17}): missing: the header announces 10 records, the file ends after 7`);
    const trailing = put('trailing.smtr', Buffer.concat([bytes, Buffer.from([1, 2])]));
    expect(readAll(trailing).message).toBe(`${trailing}: record 10 (byte ${24 + 10 * 17}): trailing data after the 10 records the header announces`);
    const badAcc = Buffer.from(bytes);
    badAcc[24 + 4 * 17 + 12] = 7;
    const acc = put('acc.smtr', badAcc);
    expect(readAll(acc).message).toBe(`${acc}: record 4 (byte ${24 + 4 * 17}): acc 7: expected 0 (read), 1 (write) or 2 (exec)`);
    const v2 = Buffer.from(bytes);
    v2[4] = 2;
    expect(readAll(put('v2.smtr', v2)).message).toMatch(/v2\.smtr: header: unsupported version 2/);
    const headerOnly = put('hdr.smtr', bytes.subarray(0, 10));
    expect(readAll(headerOnly).message).toBe(`${headerOnly}: header: truncated: 10 of 24 bytes`);
    // A writer that was never closed leaves the count unknown: the records run to the end of the file.
    const open = Buffer.from(bytes);
    open.fill(0xff, 8, 16);
    expect(columns(openTraceReader(put('open.smtr', open)), 10).va).toEqual(columns(handSource(10), 10).va);
    expect(errorOf(() => openTraceReader(join(dir, 'absent.smtr'))).message).toBe(`${join(dir, 'absent.smtr')}: cannot open: no such file`);
    expect(errorOf(() => openTraceReader(join(dir, 'x.csv'))).message).toMatch(/x\.csv: unknown trace format: expected a \.smtr/);
  });

  it('malformed JSON lines are reported with the file and the line; a failed conversion leaves no output', () => {
    const dir = tmp();
    const put = (name: string, text: string): string => {
      const f = join(dir, name);
      writeFileSync(f, text);
      return f;
    };
    const readAll = (f: string): string => errorOf(() => take(openTraceReader(f), 100)).message;
    const hdr = '{"format":"smmu-trace/1","sizes":false}\n';
    const ok = '{"sid":1,"va":"0x1000","acc":"r"}\n';
    const badHex = put('hex.jsonl', hdr + ok + '\n{"sid":1,"va":"0x10g0","acc":"w"}\n' + ok);
    expect(readAll(badHex)).toBe(
      `${badHex}: line 4: va: expected "0x..." hex (at most 16 digits; bit 63 set or "-0x..." for an upper-half VA) below 2^53 in magnitude, got "0x10g0"`,
    );
    expect(readAll(put('json.jsonl', hdr + ok + '{"sid":1,\n'))).toMatch(/json\.jsonl: line 3: not JSON: /);
    expect(readAll(put('acc.jsonl', ok + '{"sid":1,"va":"0x1","acc":"rw"}\n'))).toMatch(/acc\.jsonl: line 2: acc: expected "r", "w" or "x", got "rw"$/);
    expect(readAll(put('key.jsonl', ok + '{"sid":1,"va":"0x1","acc":"r","pasid":3}\n'))).toMatch(/key\.jsonl: line 2: unknown key "pasid"/);
    expect(readAll(put('size.jsonl', hdr + '{"sid":1,"va":"0x1","acc":"r","size":4}\n'))).toMatch(/size\.jsonl: line 2: size: not expected/);
    expect(readAll(put('nosize.jsonl', '{"sid":1,"va":"0x1","acc":"r","size":4}\r\n{"sid":1,"va":"0x1","acc":"r"}\r\n'))).toMatch(
      /nosize\.jsonl: line 2: size: expected an integer from 0 to 4294967295 \(the trace has sizes\), got nothing/,
    );
    expect(readAll(put('sid.jsonl', '{"sid":-1,"va":"0x1","acc":"r"}\n'))).toMatch(/sid\.jsonl: line 1: sid: expected an integer from 0 to 2147483647/);
    expect(readAll(put('fmt.jsonl', '{"format":"smmu-trace/9"}\n'))).toMatch(/fmt\.jsonl: line 1: header: format: expected "smmu-trace\/1", got "smmu-trace\/9"/);
    // Without a header the first record decides; CRLF and a last line without a newline are fine.
    expect(take(openTraceReader(put('plain.jsonl', '{"sid":"0x10","va":"0xffffffffffff0000","acc":"x"}\r\n\r\n{"sid":2,"va":4096,"acc":"w"}')), 9)).toEqual([
      { sid: 16, va: -0x10000, acc: 2, size: 0 },
      { sid: 2, va: 4096, acc: 1, size: 0 },
    ]);
    const out = join(dir, 'out.smtr');
    expect(errorOf(() => convertTrace(badHex, out)).message).toMatch(/hex\.jsonl: line 4: va:/);
    expect(existsSync(out)).toBe(false);
    expect(errorOf(() => convertTrace(badHex, badHex)).message).toMatch(/would overwrite the input/);
  });

  it('writers refuse records that cannot be stored, naming the record', () => {
    const dir = tmp();
    const w = openTraceWriter(join(dir, 'w.smtr'));
    const b = createBatch(2);
    b.va[1] = 0.5;
    b.count = 2;
    expect(errorOf(() => w.write(b)).message).toBe(`${join(dir, 'w.smtr')}: record 1: va 0.5 is not an integer below 2^53 in magnitude`);
    w.abort();
    expect(existsSync(join(dir, 'w.smtr'))).toBe(false);
  });

  it('traceInfo counts records, streams, the mix and the footprint', () => {
    const dir = tmp();
    const f = join(dir, 'i.jsonl');
    writeFileSync(
      f,
      [
        '{"sid":5,"va":"0x1000","acc":"r","size":64}',
        '{"sid":5,"va":"0x1ff0","acc":"w","size":32}', // spans two pages
        '{"sid":5,"va":"0x1000","acc":"r","size":64}',
        '{"sid":7,"va":"0xfffffffffffff000","acc":"x","size":16}',
      ].join('\n') + '\n',
    );
    const i = traceInfo(f);
    expect(i).toMatchObject({ count: 4, r: 2, w: 1, x: 1, bytes: 176, footprintPages: 3, sizes: true });
    expect(i.streams).toEqual([
      { sid: 5, count: 3, r: 2, w: 1, x: 0, pages: 2, vaMin: 0x1000, vaMax: 0x200f, bytes: 160 },
      { sid: 7, count: 1, r: 0, w: 0, x: 1, pages: 1, vaMin: -0x1000, vaMax: -0x1000 + 15, bytes: 16 },
    ]);
  });
});

// ------------------------------------------------------------------ the command line

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'trace', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('smmu-farm trace', () => {
  it('gen, info and convert round trip through the built command line', () => {
    const dir = tmp();
    const a = join(dir, 'a.smtr');
    const g = cli('gen', 'ring-pagepool', '--count', '20000', '--seed', '9', '-o', a);
    expect(g.stderr).toBe('');
    expect(g.status).toBe(0);
    expect(g.stdout).toBe(`${a}: 20000 records of ring-pagepool (seed 9)\n`);
    expect(sameColumns(columns(openTraceReader(a), 20000), columns(createPreset('ring-pagepool', 9), 20000))).toBe(true);

    const info = cli('info', '--json', a);
    expect(info.status).toBe(0);
    const doc = JSON.parse(info.stdout) as { count: number; r: number; w: number; x: number; streams: Array<{ sid: number }>; meta: { seed: number } };
    const recs = take(createPreset('ring-pagepool', 9), 20000);
    expect(doc.count).toBe(20000);
    expect([doc.r, doc.w, doc.x]).toEqual([0, 1, 2].map((k) => recs.filter((r) => r.acc === k).length));
    expect(doc.streams.map((s) => s.sid)).toEqual([0]);
    expect(doc.meta.seed).toBe(9);

    const j = join(dir, 'a.jsonl');
    const b = join(dir, 'b.smtr');
    expect(cli('convert', a, j).status).toBe(0);
    const c = cli('convert', j, b);
    expect(c.status).toBe(0);
    expect(c.stdout).toBe(`${j} -> ${b}: 20000 records\n`);
    expect(readFileSync(b).equals(readFileSync(a))).toBe(true);

    const text = cli('info', j);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/JSON lines smmu-trace\/1, 20000 records, with sizes/);
    expect(text.stdout).toMatch(/\nstreams: 1\n {2}sid 0x0: 20000 records/);
  });

  it('gen from a JSON configuration file; bad input exits non-zero with the file and where', () => {
    const dir = tmp();
    const cfg = join(dir, 'w.json');
    writeFileSync(cfg, JSON.stringify({ kind: 'interleave', streams: [{ kind: 'uniform', sid: 3 }, { kind: 'sg', sid: 4, mix: { w: 1 } }] }));
    const out = join(dir, 'w.jsonl');
    expect(cli('gen', cfg, '--count', '100', '-o', out).status).toBe(0);
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(101);

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ kind: 'interleave', streams: [{ kind: 'zipf', s: -2 }] }));
    const e1 = cli('gen', bad, '-o', join(dir, 'x.smtr'));
    expect(e1.status).toBe(1);
    expect(e1.stderr).toBe(`error: ${bad}: $.streams[0].s: expected a number > 0, got -2\n`);

    const e2 = cli('gen', 'nope', '-o', join(dir, 'x.smtr'));
    expect(e2.status).toBe(2);
    expect(e2.stderr).toMatch(/unknown workload preset "nope"/);
    expect(cli('gen', 'uniform-1g', '-o', join(dir, 'x.txt')).status).toBe(2);

    const broken = join(dir, 'broken.smtr');
    recordTrace(createPreset('sg-list'), join(dir, 'ok.smtr'), { count: 100 });
    // No metadata (recordTrace without meta), so record 50 starts at byte 24 + 50 * 17.
    writeFileSync(broken, readFileSync(join(dir, 'ok.smtr')).subarray(0, 24 + 50 * 17 + 3));
    const e3 = cli('info', broken);
    expect(e3.status).toBe(1);
    expect(e3.stderr).toBe(`error: ${broken}: record 50 (byte ${24 + 50 * 17}): truncated: 3 of 17 bytes\n`);
    const e4 = cli('convert', broken, join(dir, 'c.jsonl'));
    expect(e4.status).toBe(1);
    expect(existsSync(join(dir, 'c.jsonl'))).toBe(false);
  });

  it('every subcommand has --help', () => {
    for (const sub of ['convert', 'gen', 'info', 'presets']) {
      const r = cli(sub, '--help');
      expect(r.status, sub).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: smmu-farm trace ${sub}`));
    }
    const p = cli('presets');
    expect(p.stdout.trim().split('\n').map((l) => l.split(':')[0])).toEqual(workloadPresetNames());
  });
});
