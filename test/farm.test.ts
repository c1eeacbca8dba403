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
