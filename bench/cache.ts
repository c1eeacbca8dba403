/**
 * `npm run bench:cache`: the caches of issue D.
 *
 * 1. Hit path: ns per lookup of each TLB structure (direct-mapped, 4-way,
 *    fully associative micro-TLB) on addresses that all hit, and ns per
 *    translation through TranslationCaches when the main TLB hits.
 * 2. Strategies: descriptor reads per translation, hit rate and ns per
 *    translation for every preset on the `nested-4k-1g` workload (and on the
 *    ring and Zipf workloads of src/workload when present).
 * Every timed figure is the median of --rounds tinybench runs with min and max.
 * --quick: 2 rounds of 100 ms, 1/16 of nested-4k-1g, 64K queries; --tiny (for
 * tests): 1 round of 20 ms, 1/256 of it, 4K queries.
 * results/cache.json follows the smmu-farm-bench/1 schema (src/bench/schema.ts).
 */

import { Bench } from 'tinybench';
import { TranslationCaches } from '../src/cache/caches.js';
import { CACHE_PRESETS, presetNames } from '../src/cache/presets.js';
import { Tlb, type TlbGeometry } from '../src/cache/tlb.js';
import { ACC_READ, WalkResult } from '../src/walk/result.js';
import type { PhysMem } from '../src/memory/phys.js';
import type { Regime } from '../src/pgtable/regime.js';
import { createBatch, createPreset } from '../src/workload/index.js';
import { buildNested4k1g, buildNestedRegions } from '../src/workloads/nested-4k-1g.js';
import { BENCH_SCHEMA, exact, fromSpread, type BenchDoc, type Figure } from '../src/bench/schema.js';
import { arg, benchMode, commandLine, fmt, machine, spread, publish, runMain, type Spread } from './lib.js';

const BATCH = 4096;

async function timeIt(rounds: number, timeMs: number, fn: () => void): Promise<Spread> {
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const bench = new Bench({ time: timeMs, warmupTime: Math.min(100, timeMs) });
    bench.add('x', fn);
    await bench.run();
    samples.push((bench.tasks[0]!.result!.latency.p50! * 1e6) / BATCH);
  }
  return spread(samples);
}

async function hitPath(rounds: number, timeMs: number): Promise<Record<string, Spread>> {
  const geoms: Record<string, TlbGeometry> = {
    'direct-mapped 1024': { entries: 1024, ways: 1, replacement: 'lru' },
    '4-way 1024 (LRU)': { entries: 1024, ways: 4, replacement: 'lru' },
    '4-way 1024 (PLRU)': { entries: 1024, ways: 4, replacement: 'plru' },
    'fully associative 32 (LRU)': { entries: 32, ways: 32, replacement: 'lru' },
  };
  const out: Record<string, Spread> = {};
  for (const [name, g] of Object.entries(geoms)) {
    const t = new Tlb(g);
    const hits: number[] = [];
    for (let i = 0; hits.length < Math.min(g.entries, 256) && i < 100000; i++) {
      const va = ((i * 7919) % 1000003) * 4096 + 64;
      t.fill(0, 1, 2, va, 12, 0x1000_0000 + i * 4096, -1, 63, 0);
    }
    for (let i = 0; hits.length < 256 && i < 100000; i++) {
      const va = ((i * 7919) % 1000003) * 4096 + 64;
      if (t.lookup(0, 1, 2, va) >= 0) hits.push(va);
    }
    while (hits.length < 256) hits.push(hits[hits.length % Math.max(1, hits.length)]!);
    const vas = Float64Array.from(hits);
    // Accumulate in a local (an outer variable would box a heap number on every addition).
    const sink = new Int32Array(1);
    out[name] = await timeIt(rounds, timeMs, () => {
      let acc = 0;
      for (let k = 0; k < BATCH; k++) acc = (acc + t.lookup(0, 1, 2, vas[k & 255]!)) | 0;
      sink[0] = acc;
    });
    if (sink[0] === 0x7fffffff) process.stdout.write('');
  }
  return out;
}

interface StrategyRow {
  workload: string;
  preset: string;
  readsPerTranslation: number;
  hitRate: number;
  walksPerTranslation: number;
  nsPerTranslation: Spread;
}

interface Stream {
  label: string;
  mem: PhysMem;
  regime: Regime;
  vas: Float64Array;
  sids: Int32Array;
}

/** The query streams: nested-4k-1g, and two DMA workloads of src/workload over nested tables of their footprints. */
function streams(fraction: number, queries: number): Stream[] {
  const w = buildNested4k1g({ seed: 1, fraction, queries });
  const out: Stream[] = [{ label: 'nested-4k-1g', mem: w.mem, regime: w.nested, vas: w.vas, sids: new Int32Array(w.vas.length) }];
  for (const name of ['ring-pagepool', 'zipf-0.99']) {
    const gen = createPreset(name, 1);
    const t = buildNestedRegions(gen.regions(), 1);
    const b = createBatch(queries);
    gen.fill(b);
    out.push({ label: name, mem: t.mem, regime: t.nested, vas: b.va.slice(0, b.count), sids: b.sid.slice(0, b.count) });
  }
  return out;
}

async function strategies(rounds: number, timeMs: number, fraction: number, queries: number): Promise<StrategyRow[]> {
  const rows: StrategyRow[] = [];
  const res = new WalkResult();
  for (const st of streams(fraction, queries)) {
    const { mem, regime, vas, sids } = st;
    const n = vas.length;
    for (const preset of presetNames()) {
      const cfg = CACHE_PRESETS[preset];
      // `none` is the TranslationCaches front end with no structures: it walks every time.
      const c = new TranslationCaches(cfg ?? { name: 'none' });
      // A warm-up pass over the query stream, then count over a second pass.
      for (let i = 0; i < n; i++) c.translate(mem, regime, 0, sids[i]!, vas[i]!, ACC_READ, res);
      const before = { ...c.stats };
      for (let i = 0; i < n; i++) c.translate(mem, regime, 0, sids[i]!, vas[i]!, ACC_READ, res);
      const readsPer = (c.stats.descriptorReads - before.descriptorReads) / n;
      const hitRate = (c.stats.hits - before.hits) / n;
      const walksPer = (c.stats.walks - before.walks) / n;
      let cursor = 0;
      const ns = await timeIt(rounds, timeMs, () => {
        let i = cursor;
        for (let k = 0; k < BATCH; k++) {
          c.translate(mem, regime, 0, sids[i]!, vas[i]!, ACC_READ, res);
          i = i + 1 === n ? 0 : i + 1;
        }
        cursor = i;
      });
      rows.push({ workload: st.label, preset, readsPerTranslation: readsPer, hitRate, walksPerTranslation: walksPer, nsPerTranslation: ns });
      process.stderr.write(`bench:cache: ${st.label} ${preset} ${fmt(readsPer, 2)} reads/translation\n`);
    }
  }
  return rows;
}

async function main(): Promise<void> {
  const mode = benchMode();
  const quick = mode !== 'full';
  const tiny = mode === 'tiny';
  const rounds = Number(arg('--rounds', tiny ? '1' : quick ? '2' : '5'));
  const timeMs = Number(arg('--time', tiny ? '20' : quick ? '100' : '300'));
  const outDir = arg('--out', 'results');
  const fraction = tiny ? 1 / 256 : quick ? 0.0625 : 1;
  const queries = tiny ? 1 << 12 : quick ? 1 << 16 : 1 << 20;
  const hits = await hitPath(rounds, timeMs);
  const rows = await strategies(rounds, timeMs, fraction, queries);
  const m = machine();
  const workloads = tiny
    ? 'nested-4k-1g (tiny: 1/256 of the VA), ring-pagepool, zipf-0.99; 4K queries each'
    : quick
      ? 'nested-4k-1g (quick: 1/16 of the VA), ring-pagepool, zipf-0.99; 64K queries each'
      : 'nested-4k-1g (1 GiB), ring-pagepool, zipf-0.99 (1 GiB footprint); 1M queries each';
  const figures: Figure[] = [
    ...Object.entries(hits).map(([structure, s]) => fromSpread('ns per lookup (hit)', 'ns', { structure }, s)),
    ...rows.flatMap((r) => {
      const p = { workload: r.workload, preset: r.preset };
      const f = [
        exact('descriptor reads per translation', 'reads', p, r.readsPerTranslation),
        exact('TLB hit rate', '%', p, 100 * r.hitRate),
        exact('walks per translation', 'walks', p, r.walksPerTranslation),
      ];
      if (r.walksPerTranslation > 0) f.push(exact('descriptor reads per walk', 'reads', p, r.readsPerTranslation / r.walksPerTranslation));
      f.push(fromSpread('ns per translation', 'ns', p, r.nsPerTranslation));
      return f;
    }),
  ];
  const json: BenchDoc = {
    schema: BENCH_SCHEMA,
    suite: 'cache',
    benchmark: 'cache',
    command: commandLine('bench:cache', mode),
    config: { mode, workloads, fraction, queries, rounds, tinybenchTimeMs: timeMs, batch: BATCH, presets: presetNames() },
    headline: {
      title: 'Descriptor reads per translation, by cache preset and workload (nested, 4 KiB pages; 24 without caches)',
      metric: 'descriptor reads per translation',
      x: 'preset',
      series: 'workload',
    },
    figures,
    machine: m,
    rounds,
    tinybenchTimeMs: timeMs,
    cReference: { '4-way lookup ns': 5.6, 'direct-mapped lookup ns': 1.7 },
    hitPathNsPerLookup: hits,
    workloads,
    strategies: rows,
  };
  const md = [
    '# Cache benchmark',
    '',
    `Command: \`${json.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    `Medians of ${rounds} tinybench runs (${timeMs} ms each, ${BATCH} operations per call), min-max beside them.`,
    '',
    '## Hit path (ns per lookup, every lookup hits)',
    '',
    '| structure | ns/lookup | min-max |',
    '|---|---:|---:|',
    ...Object.entries(hits).map(([k, s]) => `| ${k} | ${fmt(s.median, 2)} | ${fmt(s.min, 2)}-${fmt(s.max, 2)} |`),
    '',
    'A straightforward C lookup takes about 5.6 ns (4-way) and 1.7 ns (direct-mapped) on these machines.',
    '',
    `## Strategies (${workloads}): a second pass over each query stream after a warm-up pass`,
    '',
    'Every walk is nested, 4 KiB pages, 4 levels at both stages: 24 descriptor reads without caches.',
    '',
    '| workload | preset | descriptor reads / translation | TLB hit rate | walks / translation | ns / translation | min-max |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.workload} | ${r.preset} | ${fmt(r.readsPerTranslation, 2)} | ${fmt(100 * r.hitRate, 1)}% | ${fmt(r.walksPerTranslation, 3)} | ${fmt(r.nsPerTranslation.median)} | ${fmt(r.nsPerTranslation.min)}-${fmt(r.nsPerTranslation.max)} |`,
    ),
    '',
  ].join('\n');
  publish('cache', json, md, outDir);
}

runMain('cache', main);
