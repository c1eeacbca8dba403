import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TranslationCaches, type CacheConfig } from '../src/cache/caches.js';
import { NoCache } from '../src/cache/interface.js';
import { CACHE_PRESETS, makeCache, presetNames } from '../src/cache/presets.js';
import { GLOBAL, Tlb, type Replacement } from '../src/cache/tlb.js';
import { PhysMem } from '../src/memory/phys.js';
import { PROT_READ, PROT_WRITE, createGuestStage1, createStage2, type PageTable } from '../src/pgtable/builder.js';
import { Regime, decodeStage1, decodeStage2 } from '../src/pgtable/regime.js';
import { PhysTables } from '../src/pgtable/table-memory.js';
import { parseScript, runScript } from '../src/replay/script.js';
import { Smmu } from '../src/smmu/smmu.js';
import { ACC_READ, ACC_WRITE, WalkResult } from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';

const P = 12; // 4 KiB entries
const page = (n: number): number => n * 4096;

/** A 4-entry fully associative TLB; fills pages A..D (0..3) in order. */
function fourWay(replacement: Replacement): Tlb {
  const t = new Tlb({ entries: 4, ways: 4, replacement });
  for (let i = 0; i < 4; i++) t.fill(0, 1, 2, page(i), P, page(100 + i), -1, 63, 0);
  return t;
}

function resident(t: Tlb): number[] {
  const out: number[] = [];
  for (let i = 0; i < 8; i++) {
    const before = { ...t.stats };
    if (t.lookup(0, 1, 2, page(i)) >= 0) out.push(i);
    Object.assign(t.stats, before);
  }
  return out;
}

describe('replacement policies, against hand-worked sequences', () => {
  // Sequence: fill A B C D (ways 0..3), touch A, fill E.
  it('true LRU evicts the least recently used (B)', () => {
    const t = fourWay('lru');
    t.lookup(0, 1, 2, page(0));
    t.fill(0, 1, 2, page(4), P, 0, -1, 63, 0);
    expect(resident(t)).toEqual([0, 2, 3, 4]);
  });

  it('tree PLRU evicts C: after touching A the root points right, and D\'s fill pointed the right pair at C', () => {
    const t = fourWay('plru');
    t.lookup(0, 1, 2, page(0));
    t.fill(0, 1, 2, page(4), P, 0, -1, 63, 0);
    expect(resident(t)).toEqual([0, 1, 3, 4]);
  });

  it('FIFO evicts the first filled (A), whatever was touched', () => {
    const t = fourWay('fifo');
    t.lookup(0, 1, 2, page(0));
    t.fill(0, 1, 2, page(4), P, 0, -1, 63, 0);
    expect(resident(t)).toEqual([1, 2, 3, 4]);
  });

  it('round-robin uses one counter for the whole cache (gem5): two sets share it', () => {
    // 2 sets x 2 ways. Fill until both sets are full, then two replacements in one set take ways 0 then 1.
    const t = new Tlb({ entries: 4, ways: 2, replacement: 'round-robin' });
    const inSet = (set: number): number[] => {
      const out: number[] = [];
      for (let i = 0; out.length < 4 && i < 1000; i++) {
        const probe = new Tlb({ entries: 4, ways: 2, replacement: 'lru' });
        if (probe.fill(0, 0, 0, page(i), P, 0, -1, 63, 0) >> 1 === set) out.push(i);
      }
      return out;
    };
    const [a, b, c, d] = inSet(0);
    for (const v of [a!, b!]) t.fill(0, 0, 0, page(v), P, 0, -1, 63, 0);
    expect(t.fill(0, 0, 0, page(c!), P, 0, -1, 63, 0)).toBe(0); // counter 0 -> way 0
    expect(t.fill(0, 0, 0, page(d!), P, 0, -1, 63, 0)).toBe(1); // counter 1 -> way 1
  });

  it('random replacement is reproducible for a seed and stays inside the set', () => {
    const run = (): number[] => {
      const t = new Tlb({ entries: 8, ways: 8, replacement: 'random', seed: 7 });
      const slots: number[] = [];
      for (let i = 0; i < 20; i++) slots.push(t.fill(0, 0, 0, page(i), P, 0, -1, 63, 0));
      return slots;
    };
    const a = run();
    expect(a).toEqual(run());
    expect(a.every((s) => s >= 0 && s < 8)).toBe(true);
    expect(new Set(a.slice(8)).size).toBeGreaterThan(1);
  });

  it("flush-when-full (QEMU): the 257th insertion wipes the table", () => {
    const t = new Tlb({ entries: 256, ways: 256, replacement: 'flush-when-full' });
    for (let i = 0; i < 256; i++) t.fill(0, 0, 0, page(i), P, 0, -1, 63, 0);
    expect(t.occupancy).toBe(256);
    t.fill(0, 0, 0, page(999), P, 0, -1, 63, 0);
    expect(t.occupancy).toBe(1);
    expect(t.stats.flushes).toBe(1);
  });

  it('rejects impossible geometries with a clear error', () => {
    expect(() => new Tlb({ entries: 6, ways: 4, replacement: 'lru' })).toThrow(/multiple of ways/);
    expect(() => new Tlb({ entries: 12, ways: 4, replacement: 'lru' })).toThrow(/power of two/);
    expect(() => new Tlb({ entries: 12, ways: 3, replacement: 'plru' })).toThrow(/power-of-two number of ways/);
  });
});

describe('entries: sizes, tags, isolation', () => {
  it('a 2 MiB block entry is found from any address inside it and removed by an invalidation of any address inside it', () => {
    const c = new TranslationCaches({ name: 't', main: { entries: 64, ways: 4, replacement: 'lru' } });
    const t = c.main!;
    t.fill(0, 1, 5, 0x4020_0000, 21, 0x8020_0000, -1, 63, 1);
    for (const va of [0x4020_0000, 0x4020_0123, 0x402f_f000, 0x403f_fff8]) {
      const s = t.lookup(0, 1, 5, va);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(t.outputOf(s, va)).toBe(va + 0x4000_0000);
    }
    expect(t.lookup(0, 1, 5, 0x4040_0000)).toBe(-1);
    c.invalidate({ kind: 'va', vmid: 1, asid: 5, allAsids: false, va: 0x4037_7000, leaf: true });
    expect(t.lookup(0, 1, 5, 0x4020_0000)).toBe(-1);
  });

  it('VMIDs and ASIDs isolate; global entries match every ASID and survive TLBIASID', () => {
    const c = new TranslationCaches({ name: 't', main: { entries: 64, ways: 4, replacement: 'lru' } });
    const t = c.main!;
    t.fill(0, 1, 5, 0x1000, P, 0xa000, -1, 63, 1);
    t.fill(0, 1, GLOBAL, 0x2000, P, 0xb000, -1, 63, 1);
    expect(t.lookup(0, 1, 6, 0x1000)).toBe(-1); // other ASID
    expect(t.lookup(0, 2, 5, 0x1000)).toBe(-1); // other VMID
    expect(t.lookup(1, 1, 5, 0x1000)).toBe(-1); // other context bank
    expect(t.lookup(0, 1, 6, 0x2000)).toBeGreaterThanOrEqual(0); // global
    c.invalidate({ kind: 'asid', vmid: 1, asid: 5 });
    expect(t.lookup(0, 1, 5, 0x1000)).toBe(-1);
    expect(t.lookup(0, 1, 5, 0x2000)).toBeGreaterThanOrEqual(0);
    c.invalidate({ kind: 'vmid', vmid: 1 });
    expect(t.occupancy).toBe(0);
  });
});

// ---- a nested world for translation-level tests

function world() {
  const mem = PhysMem.create({ regions: [{ base: 0x4000_0000, size: 16 << 20 }] });
  const s2 = createStage2(new PhysTables(mem, 0x4000_0000, 0x4080_0000), { granule: 4, ias: 40, oas: 48 }, 3);
  s2.map(0x1_0000_0000, 0x4080_0000, 4 << 20, PROT_READ | PROT_WRITE); // the guest's table window
  const s1 = createGuestStage1(mem, s2, 0x1_0000_0000, 0x1_0040_0000, { granule: 4, ias: 48, oas: 40 }, 9);
  const regime = (): Regime => decodeStage2(s2.stage2Fields(), decodeStage1(s1.stage1Fields(), new Regime()));
  return { mem, s1, s2, regime };
}

describe('the IPAS2 rule for combined entries', () => {
  function staleAfterIpaOnly(config: CacheConfig, kvmRule: boolean): boolean {
    const { mem, s1, s2, regime } = world();
    s1.map(0x10_0000, 0x2_0000_0000, 0x1000, PROT_READ | PROT_WRITE);
    s2.map(0x2_0000_0000, 0x9000_0000, 0x1000, PROT_READ | PROT_WRITE);
    const c = new TranslationCaches(config);
    const r = regime();
    const res = new WalkResult();
    expect(c.translate(mem, r, 0, 0, 0x10_0040, ACC_READ, res)).toBe(true);
    expect(res.pa).toBe(0x9000_0040);
    // KVM moves the IPA page to another frame: break, TLBIIPAS2, make.
    s2.unmap(0x2_0000_0000, 0x1000);
    c.invalidate({ kind: 'ipa', vmid: r.vmid, ipa: 0x2_0000_0000, leaf: true });
    if (kvmRule) c.invalidate({ kind: 'vmid', vmid: r.vmid });
    s2.map(0x2_0000_0000, 0xa000_0000, 0x1000, PROT_READ | PROT_WRITE);
    c.translate(mem, r, 0, 0, 0x10_0040, ACC_READ, res);
    return res.pa !== 0xa000_0040;
  }
  const combined: CacheConfig = { name: 'c', main: { entries: 64, ways: 4, replacement: 'lru' }, ipaInvalidation: 'architectural' };

  it('architectural minimum: a stage-2 change followed only by TLBIIPAS2 leaves a stale combined entry', () => {
    expect(staleAfterIpaOnly(combined, false)).toBe(true);
  });
  it("with KVM's rule (then invalidate the VMID's stage-1 entries) nothing stale remains", () => {
    expect(staleAfterIpaOnly(combined, true)).toBe(false);
  });
  it('the conservative implementation removes combined entries on TLBIIPAS2 alone', () => {
    expect(staleAfterIpaOnly({ ...combined, ipaInvalidation: 'conservative' }, false)).toBe(false);
  });
  it('split caches are exact under TLBIIPAS2 alone (the stage-1 entry holds the IPA, not the PA)', () => {
    expect(staleAfterIpaOnly({ name: 's', s1: { entries: 64, ways: 4, replacement: 'lru' }, s2: { entries: 64, ways: 4, replacement: 'lru' } }, false)).toBe(false);
  });
});

describe('race-free fills', () => {
  it('a walk that began before an invalidation does not insert its result after it', () => {
    const { mem, s1, s2, regime } = world();
    s1.map(0x10_0000, 0x2_0000_0000, 0x1000, PROT_READ | PROT_WRITE);
    s2.map(0x2_0000_0000, 0x9000_0000, 0x1000, PROT_READ | PROT_WRITE);
    for (const name of ['combined', 'split', 'mmu500', 'gem5', 'qemu']) {
      const c = new TranslationCaches(CACHE_PRESETS[name]!);
      const r = regime();
      const res = new WalkResult();
      // Another agent's invalidation lands between the walk's descriptor reads and its fill.
      c.afterWalk = () => c.invalidate({ kind: 'va', vmid: r.vmid, asid: r.asid, allAsids: false, va: 0x10_0000, leaf: true });
      expect(c.translate(mem, r, 0, 0, 0x10_0000, ACC_READ, res)).toBe(true);
      c.afterWalk = null;
      const walks = c.stats.walks;
      c.translate(mem, r, 0, 0, 0x10_0000, ACC_READ, res);
      expect(c.stats.walks, name).toBe(walks + 1); // nothing was cached: it walked again
      c.translate(mem, r, 0, 0, 0x10_0000, ACC_READ, res);
      expect(c.stats.walks, name).toBe(walks + 1); // and this time it did cache
    }
  });
});

describe('differential: every strategy answers what the uncached walker answers', () => {
  const configs = presetNames().filter((n) => CACHE_PRESETS[n] !== null);
  const tinySplit: CacheConfig = {
    name: 'tiny-split',
    s1: { entries: 4, ways: 2, replacement: 'fifo' },
    s2: { entries: 2, ways: 1, replacement: 'lru' },
  };
  const tinyConservative: CacheConfig = {
    name: 'tiny-conservative',
    micro: { entries: 2, ways: 2, replacement: 'lru' },
    main: { entries: 4, ways: 4, replacement: 'plru' },
    ipaInvalidation: 'conservative',
  };
  const tiny: CacheConfig = {
    name: 'tiny',
    micro: { entries: 2, ways: 2, replacement: 'fifo' },
    main: { entries: 8, ways: 2, replacement: 'plru' },
    s1: { entries: 4, ways: 1, replacement: 'lru' },
    s2: { entries: 4, ways: 4, replacement: 'random' },
    walk: { s1: { entries: 2, ways: 2, replacement: 'lru' }, s2: { entries: 2, ways: 1, replacement: 'fifo' }, ptw: { entries: 2, ways: 2, replacement: 'lru' } },
  };
  // Mostly DMA over a few pages (so that cached entries are reused after changes), fewer changes;
  // stage-2 moves flush the whole VMID (KVM's rule), so they are the rarest.
  const op = fc.oneof(
    { arbitrary: fc.record({ t: fc.constant('dma' as const), page: fc.nat(7), off: fc.nat(4095), write: fc.boolean() }), weight: 6 },
    { arbitrary: fc.record({ t: fc.constant('s1unmap' as const), page: fc.nat(7) }), weight: 1 },
    { arbitrary: fc.record({ t: fc.constant('s1remap' as const), page: fc.nat(7), to: fc.nat(15), ro: fc.boolean() }), weight: 2 },
    { arbitrary: fc.record({ t: fc.constant('s2move' as const), page: fc.nat(7), frame: fc.nat(63), kvmRule: fc.boolean() }), weight: 1 },
    // Table-level changes: the last-level table of the whole region is freed and rebuilt elsewhere
    // (a decoy mapping takes the freed frame), with non-leaf invalidations: walk caches must let go.
    { arbitrary: fc.record({ t: fc.constant('s1retable' as const), shift: fc.nat(7) }), weight: 1 },
    { arbitrary: fc.record({ t: fc.constant('s2retable' as const), frame: fc.nat(63) }), weight: 1 },
  );

  it('over random table changes, each followed by the TLBIs the architecture requires (KVM rule at stage 2)', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 10, maxLength: 80 }), fc.constantFrom(...configs, 'tiny', 'tiny-split', 'tiny-conservative'), (ops, name) => {
        const { mem, s1, s2, regime } = world();
        const IPA = 0x2_0000_0000;
        const VA = 0x7f00_0000_0000;
        for (let i = 0; i < 16; i++) {
          s2.map(IPA + page(i), 0x9000_0000 + page(i), 0x1000, PROT_READ | PROT_WRITE);
          s1.map(VA + page(i), IPA + page(i), 0x1000, PROT_READ | PROT_WRITE);
        }
        const config = name === 'tiny' ? tiny : name === 'tiny-split' ? tinySplit : name === 'tiny-conservative' ? tinyConservative : CACHE_PRESETS[name]!;
        const c = new TranslationCaches(config);
        // Without combined entries, or with the conservative IPA invalidation, TLBIIPAS2 alone is enough.
        const exactUnderIpa = (config.main === undefined && config.micro === undefined) || config.ipaInvalidation === 'conservative';
        const r = regime();
        const a = new WalkResult();
        const b = new WalkResult();
        const mapped = (pt: PageTable, addr: number): boolean => pt.lookup(addr) !== null;
        let decoys = 0;
        for (const o of ops) {
          if (o.t === 'dma') {
            const va = VA + page(o.page) + o.off;
            const acc = o.write ? ACC_WRITE : ACC_READ;
            const want = translate(mem, r, va, acc, a);
            const got = c.translate(mem, r, 0, 1, va, acc, b);
            expect(got).toBe(want);
            if (want) expect(b.pa).toBe(a.pa);
            else expect([b.fault, b.faultStage, b.faultLevel]).toEqual([a.fault, a.faultStage, a.faultLevel]);
          } else if (o.t === 's1unmap' || o.t === 's1remap') {
            const va = VA + page(o.page);
            if (mapped(s1, va)) s1.unmap(va, 0x1000);
            c.invalidate({ kind: 'va', vmid: r.vmid, asid: r.asid, allAsids: false, va, leaf: true });
            if (o.t === 's1remap') s1.map(va, IPA + page(o.to), 0x1000, o.ro ? PROT_READ : PROT_READ | PROT_WRITE);
          } else if (o.t === 's1retable') {
            // Unmap the whole 2 MiB region (frees its level-3 table), TLBIVA (non-leaf) per page.
            s1.unmap(VA, 0x20_0000);
            for (let i = 0; i < 8; i++) c.invalidate({ kind: 'va', vmid: r.vmid, asid: r.asid, allAsids: false, va: VA + page(i), leaf: false });
            decoys++;
            s1.map(VA + decoys * 0x4000_0000, IPA, 0x1000, PROT_READ); // takes the freed table frame
            for (let i = 0; i < 8; i++) s1.map(VA + page(i), IPA + page((i + o.shift) % 16), 0x1000, PROT_READ | PROT_WRITE);
          } else if (o.t === 's2retable') {
            // The same at stage 2 for the 2 MiB of IPA space holding the pages, TLBIIPAS2 (non-leaf) per page, KVM's rule.
            s2.unmap(IPA, 0x20_0000);
            for (let i = 0; i < 16; i++) c.invalidate({ kind: 'ipa', vmid: r.vmid, ipa: IPA + page(i), leaf: false });
            c.invalidate({ kind: 'vmid', vmid: r.vmid });
            decoys++;
            s2.map(IPA + decoys * 0x4000_0000, 0x9000_0000, 0x1000, PROT_READ);
            for (let i = 0; i < 16; i++) s2.map(IPA + page(i), 0x9000_0000 + page((i + o.frame) % 64), 0x1000, PROT_READ | PROT_WRITE);
          } else {
            const ipa = IPA + page(o.page);
            if (mapped(s2, ipa)) s2.unmap(ipa, 0x1000);
            c.invalidate({ kind: 'ipa', vmid: r.vmid, ipa, leaf: true });
            if (o.kvmRule || !exactUnderIpa) c.invalidate({ kind: 'vmid', vmid: r.vmid }); // KVM's rule for combined entries
            s2.map(ipa, 0x9000_0000 + page(o.frame), 0x1000, PROT_READ | PROT_WRITE);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('caches really cache: repeated translations stop walking', () => {
    const { mem, s1, s2, regime } = world();
    s1.map(0x10_0000, 0x2_0000_0000, 0x1000, PROT_READ | PROT_WRITE);
    s2.map(0x2_0000_0000, 0x9000_0000, 0x1000, PROT_READ | PROT_WRITE);
    for (const name of configs) {
      const c = new TranslationCaches(CACHE_PRESETS[name]!);
      const r = regime();
      const res = new WalkResult();
      c.translate(mem, r, 0, 0, 0x10_0000, ACC_READ, res);
      const first = c.stats.descriptorReads;
      for (let i = 1; i < 10; i++) c.translate(mem, r, 0, 0, 0x10_0000 + i * 8, ACC_READ, res);
      const cfg = CACHE_PRESETS[name]!;
      if (cfg.main === undefined && cfg.s1 === undefined && cfg.micro === undefined) {
        // Walk caches only: every translation walks, but after the first it starts at both stages'
        // last-level tables, with the stage-1 table page's stage-2 translation cached: 2 reads, not 24.
        expect(c.stats.walks, name).toBe(10);
        expect(first, name).toBeLessThan(24);
        expect(c.stats.descriptorReads - first, name).toBe(9 * 2);
      } else {
        expect(c.stats.walks, name).toBe(1);
        expect(c.stats.hits, name).toBe(9);
      }
    }
  });
});

describe('the SMMU model with every preset', () => {
  const dir = join(import.meta.dirname, 'conformance', 'scripts');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  for (const preset of presetNames()) {
    it(`all public register scripts pass with --caches ${preset}`, () => {
      const failures: string[] = [];
      let hits = 0;
      for (const f of files) {
        const s = parseScript(readFileSync(join(dir, f), 'utf8'), f);
        let cache = makeCache(preset);
        const o = runScript(s, f, (mem) => new Smmu(s.id, mem, (cache = makeCache(preset))));
        if (cache instanceof TranslationCaches) {
          hits += cache.stats.hits;
          for (const [k, v] of Object.entries(cache.structureStats())) if (k.startsWith('walk-')) hits += v.hits;
        }
        for (const st of o.steps) if (!st.pass) failures.push(`${o.name} step ${st.index}`);
      }
      expect(failures).toEqual([]);
      if (preset !== 'none') expect(hits).toBeGreaterThan(0);
      else expect(makeCache(preset)).toBeInstanceOf(NoCache);
    });
  }
});
