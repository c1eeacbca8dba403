/**
 * The translation farm: results equal the single-threaded walker's for a
 * deterministic workload (both distributions, with and without caches), and
 * invalidations reach units that were idle during the sync.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CACHE_PRESETS } from '../src/cache/presets.js';
import { PROT_READ, PROT_WRITE } from '../src/pgtable/builder.js';
import { ArmSmmuDriver } from '../src/driver/arm-smmu.js';
import { Farm } from '../src/farm/farm.js';
import { RES_ABORT, RES_OK } from '../src/farm/unit.js';
import { encodeIds } from '../src/smmu/id.js';
import { Smmu } from '../src/smmu/smmu.js';
import { ACC_READ, FAULT_TRANSLATION, WalkResult } from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';
import { buildNested4k1g, type Nested4k1g } from '../src/workloads/nested-4k-1g.js';

let w: Nested4k1g;
let smmu: Smmu;

beforeAll(() => {
  w = buildNested4k1g({ seed: 3, fraction: 1 / 64, queries: 8192 });
  smmu = new Smmu(encodeIds({ smrs: 16, contextBanks: 8, s2OnlyBanks: 2 }), w.mem);
  const drv = new ArmSmmuDriver(smmu);
  drv.probe();
  drv.reset();
  const d2 = drv.createDomain('s2', w.stage2);
  const dn = drv.createDomain('nested', w.stage1, d2);
  drv.attach(dn, [{ id: 0, mask: 7 }]); // streams 0..7: the nested bank
  drv.routeStream(9, 'bypass');
});

function batch(n: number, offset = 0) {
  const sids = new Int32Array(n);
  const vas = new Float64Array(n);
  const accs = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    sids[i] = i % 11 === 10 ? 9 : i % 11 === 9 ? 200 : i & 7; // mostly nested; some bypass; some unknown streams
    vas[i] = w.vas[(i + offset) % w.vas.length]!;
  }
  return { sids, vas, accs, pa: new Float64Array(n), status: new Int8Array(n) };
}

describe('the farm agrees with the single-threaded walker', () => {
  const configs: Array<[number, 'affinity' | 'dynamic', string | null]> = [
    [1, 'affinity', null],
    [2, 'affinity', null],
    [2, 'dynamic', null],
    [2, 'affinity', 'mmu600'],
    [3, 'dynamic', 'mmu500'],
    [2, 'affinity', 'mmu600-shared'],
    [3, 'dynamic', 'mmu600-shared'],
  ];
  for (const [units, distribution, preset] of configs) {
    it(`${units} unit(s), ${distribution}, caches ${preset ?? 'none'}`, async () => {
      const farm = await Farm.start({ mem: w.mem, units, cache: preset === null ? null : CACHE_PRESETS[preset]!, distribution, capacity: 8192 });
      try {
        farm.loadConfig(smmu, [0, 1, 2, 3, 4, 5, 6, 7, 9]);
        const res = new WalkResult();
        for (let round = 0; round < 3; round++) {
          const b = batch(6000, round * 1000);
          farm.translate(b.sids, b.vas, b.accs, 6000, b.pa, b.status);
          for (let i = 0; i < 6000; i++) {
            const sid = b.sids[i]!;
            if (sid === 200) expect(b.status[i]).toBe(RES_ABORT);
            else if (sid === 9) {
              expect(b.status[i]).toBe(RES_OK);
              expect(b.pa[i]).toBe(b.vas[i]);
            } else {
              expect(translate(w.mem, w.nested, b.vas[i]!, ACC_READ, res)).toBe(true);
              expect(b.status[i]).toBe(RES_OK);
              expect(b.pa[i]).toBe(res.pa);
            }
          }
        }
        const stats = farm.unitStats();
        expect(stats.reduce((a, s) => a + s.translations, 0)).toBe(18000);
        if (preset !== null) expect(stats.reduce((a, s) => a + s.hits, 0)).toBeGreaterThan(0);
      } finally {
        await farm.close();
      }
    });
  }
});

describe('requests written in place (Farm.queue, translateQueued)', () => {
  it('gives the same answers as translate() and the walker, for any split of requests over the units', async () => {
    const farm = await Farm.start({ mem: w.mem, units: 2, cache: CACHE_PRESETS.mmu600!, distribution: 'affinity', capacity: 4096 });
    try {
      farm.loadConfig(smmu, [0, 1, 2, 3, 4, 5, 6, 7, 9]);
      const b = batch(5000, 77);
      const counts = [3000, 2000];
      const q = [farm.queue(0), farm.queue(1)];
      // Deliberately not the affinity split: unit 0 gets the first 3000 requests whatever their stream.
      for (let i = 0; i < 5000; i++) {
        const u = i < 3000 ? 0 : 1;
        const k = i < 3000 ? i : i - 3000;
        q[u]!.sid[k] = b.sids[i]!;
        q[u]!.va[k] = b.vas[i]!;
        q[u]!.acc[k] = b.accs[i]!;
      }
      farm.translateQueued(counts);
      // translate() uses the same queues: keep the in-place results first.
      const got = q.map((x, u) => ({ pa: x.pa.slice(0, counts[u]), status: x.status.slice(0, counts[u]) }));
      farm.translate(b.sids, b.vas, b.accs, 5000, b.pa, b.status);
      const res = new WalkResult();
      for (let i = 0; i < 5000; i++) {
        const u = i < 3000 ? 0 : 1;
        const k = i < 3000 ? i : i - 3000;
        expect(got[u]!.status[k]).toBe(b.status[i]);
        if (b.status[i] === RES_OK) expect(got[u]!.pa[k]).toBe(b.pa[i]);
        if (b.sids[i]! <= 7) {
          expect(translate(w.mem, w.nested, b.vas[i]!, ACC_READ, res)).toBe(true);
          expect(got[u]!.pa[k]).toBe(res.pa);
        }
      }
      const stats = farm.unitStats();
      expect(stats.reduce((a, x) => a + x.translations, 0)).toBe(10000);
      expect(() => farm.translateQueued([4097, 0])).toThrow(/unit 0 count 4097 is outside 0..4096/);
      expect(() => farm.translateQueued([1])).toThrow(/1 counts for 2 units/);
      expect(() => farm.queue(2)).toThrow(/unit 2 does not exist/);
    } finally {
      await farm.close();
    }
  });

  it('pipelines: the next batch is filled and submitted while the current one translates, and both are right', async () => {
    const farm = await Farm.start({ mem: w.mem, units: 2, cache: CACHE_PRESETS.mmu600!, distribution: 'affinity', capacity: 2048 });
    try {
      farm.loadConfig(smmu, [0, 1, 2, 3, 4, 5, 6, 7]);
      const res = new WalkResult();
      const fill = (offset: number): { d: number; q: ReturnType<Farm['queue']>[]; vas: number[][] } => {
        const q = [farm.queue(0), farm.queue(1)];
        const vas: number[][] = [[], []];
        for (let u = 0; u < 2; u++) {
          for (let k = 0; k < 2000; k++) {
            const va = w.vas[(offset + k * 2 + u) % w.vas.length]!;
            q[u]!.sid[k] = u;
            q[u]!.va[k] = va;
            q[u]!.acc[k] = 0;
            vas[u]!.push(va);
          }
        }
        return { d: farm.submitQueued([2000, 2000]), q, vas };
      };
      let prev = fill(0);
      for (let round = 1; round <= 6; round++) {
        const next = fill(round * 4000); // submitted while `prev` may still be translating
        // The slot of `prev` is not free until it has been waited for.
        expect(() => farm.queue(0)).toThrow(/still uses these queues: waitQueued/);
        farm.waitQueued(prev.d);
        for (let u = 0; u < 2; u++) {
          for (let k = 0; k < 2000; k++) {
            expect(prev.q[u]!.status[k]).toBe(RES_OK);
            expect(translate(w.mem, w.nested, prev.vas[u]![k]!, ACC_READ, res)).toBe(true);
            expect(prev.q[u]!.pa[k]).toBe(res.pa);
          }
        }
        prev = next;
      }
      farm.waitQueued(prev.d);
      expect(() => farm.waitQueued(prev.d + 1)).toThrow(/only \d+ batches were submitted/);
      // translate() after in-place batches: uses the next slot and waits for anything in flight.
      const b = batch(3000, 5);
      farm.translate(b.sids, b.vas, b.accs, 3000, b.pa, b.status);
      for (let i = 0; i < 3000; i++) if (b.sids[i]! <= 7) expect(b.status[i]).toBe(RES_OK);
      expect(farm.unitStats().reduce((a, x) => a + x.translations, 0)).toBe(7 * 4000 + 3000);
    } finally {
      await farm.close();
    }
  });

  it('is refused with the dynamic distribution', async () => {
    const farm = await Farm.start({ mem: w.mem, units: 1, cache: null, distribution: 'dynamic', capacity: 1024 });
    try {
      expect(() => farm.queue(0)).toThrow(/affinity/);
      expect(() => farm.translateQueued([0])).toThrow(/affinity/);
    } finally {
      await farm.close();
    }
  });
});

describe('invalidation', () => {
  let farm: Farm;
  beforeAll(async () => {
    farm = await Farm.start({ mem: w.mem, units: 2, cache: CACHE_PRESETS.mmu600!, distribution: 'affinity', capacity: 4096 });
    farm.loadConfig(smmu, [0, 1, 2, 3, 4, 5, 6, 7]);
  });
  afterAll(async () => {
    await farm.close();
  });

  it('a unit that was idle during the sync still applies the invalidation before it translates again', () => {
    // Warm both units' caches with one page.
    const va = w.vas[5]!;
    const page = va - (va % 4096);
    const n = 64;
    const b = batch(n);
    b.vas.fill(va);
    for (let i = 0; i < n; i++) b.sids[i] = i & 7; // the nested bank's streams, spread over both units
    farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
    expect([...b.status].every((s) => s === RES_OK)).toBe(true);
    const before = farm.unitStats().reduce((a, s) => a + s.walks, 0);
    farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
    expect(farm.unitStats().reduce((a, s) => a + s.walks, 0)).toBe(before); // all hits: cached
    // The guest unmaps the page (break), invalidates and syncs while every unit is idle.
    const leaf = w.stage1.lookup(page)!;
    expect(w.stage1.unmap(page, 4096)).toBe(4096);
    const seq = farm.invalidate({ kind: 'va', vmid: w.nested.vmid, asid: w.nested.asid, allAsids: false, va: page, leaf: true });
    const t0 = performance.now();
    farm.sync();
    expect(performance.now() - t0).toBeLessThan(50); // idle units do not delay it
    expect(seq).toBeGreaterThan(0);
    farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
    // No unit returned the removed translation: every access now faults at stage 1.
    expect([...b.status].every((s) => s === FAULT_TRANSLATION)).toBe(true);
    expect(farm.unitStats().every((s) => s.invalidationsApplied >= 1)).toBe(true);
    w.stage1.map(page, leaf.pa, 4096, PROT_READ | PROT_WRITE); // make: map the page again
    farm.invalidate({ kind: 'va', vmid: w.nested.vmid, asid: w.nested.asid, allAsids: false, va: page, leaf: true });
    farm.sync();
  });

  it('a unit that fell a whole ring behind flushes instead of applying a lapped ring', () => {
    for (let i = 0; i < 5000; i++) farm.invalidate({ kind: 'asid', vmid: 77, asid: i & 0xffff });
    farm.sync();
    const b = batch(16);
    farm.translate(b.sids, b.vas, b.accs, 16, b.pa, b.status);
    expect(farm.unitStats().some((s) => s.fullFlushes >= 1)).toBe(true);
  });
});

describe('a shared TLB (mmu600-shared): one TLB in shared memory for every unit', () => {
  /** Unit 1's walks and hits when unit 0 has first translated the same pages (streams 0 and 1 share the nested bank). */
  async function secondUnit(preset: string): Promise<{ walks: number; hits: number; translations: number; pages: number }> {
    const farm = await Farm.start({ mem: w.mem, units: 2, cache: CACHE_PRESETS[preset]!, distribution: 'affinity', capacity: 4096 });
    try {
      farm.loadConfig(smmu, [0, 1, 2, 3, 4, 5, 6, 7]);
      const n = 256; // addresses on fewer pages than the shared TLB holds
      const b = batch(n);
      for (let i = 0; i < n; i++) b.vas[i] = w.vas[i * 7]!;
      const pages = new Set([...b.vas].map((v) => Math.floor(v / 4096))).size;
      b.sids.fill(0); // stream 0: unit 0
      farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
      expect([...b.status].every((x) => x === RES_OK)).toBe(true);
      const pa0 = Float64Array.from(b.pa);
      const before = farm.unitStats()[1]!;
      b.sids.fill(1); // stream 1: unit 1, the same pages
      farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
      expect([...b.status].every((x) => x === RES_OK)).toBe(true);
      expect([...b.pa]).toEqual([...pa0]);
      const after = farm.unitStats()[1]!;
      return { walks: after.walks - before.walks, hits: after.hits - before.hits, translations: after.translations - before.translations, pages };
    } finally {
      await farm.close();
    }
  }

  it('pages one unit walked are hits for another unit, where private TLBs make it walk them again', async () => {
    const shared = await secondUnit('mmu600-shared');
    expect(shared).toMatchObject({ walks: 0, hits: 256, translations: 256 });
    const priv = await secondUnit('mmu600');
    expect(priv.pages).toBeGreaterThan(200);
    expect(priv.walks).toBe(priv.pages); // one walk per page, the rest hit its own TLB
  });

  it('an invalidation and sync remove a shared entry for every unit, busy or idle', async () => {
    const farm = await Farm.start({ mem: w.mem, units: 2, cache: CACHE_PRESETS['mmu600-shared']!, distribution: 'affinity', capacity: 4096 });
    try {
      farm.loadConfig(smmu, [0, 1, 2, 3, 4, 5, 6, 7]);
      const va = w.vas[11]!;
      const page = va - (va % 4096);
      const n = 64;
      const b = batch(n);
      b.vas.fill(va);
      for (let i = 0; i < n; i++) b.sids[i] = i & 7; // both units
      farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
      farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
      expect([...b.status].every((x) => x === RES_OK)).toBe(true);
      const leaf = w.stage1.lookup(page)!;
      expect(w.stage1.unmap(page, 4096)).toBe(4096);
      farm.invalidate({ kind: 'va', vmid: w.nested.vmid, asid: w.nested.asid, allAsids: false, va: page, leaf: true });
      farm.sync();
      farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
      expect([...b.status].every((x) => x === FAULT_TRANSLATION)).toBe(true);
      w.stage1.map(page, leaf.pa, 4096, PROT_READ | PROT_WRITE);
      farm.invalidate({ kind: 'va', vmid: w.nested.vmid, asid: w.nested.asid, allAsids: false, va: page, leaf: true });
      farm.sync();
      farm.translate(b.sids, b.vas, b.accs, n, b.pa, b.status);
      expect([...b.status].every((x) => x === RES_OK)).toBe(true);
    } finally {
      await farm.close();
    }
  });
});
