/**
 * `npm run bench:walk`: ns per walk and descriptor reads per walk for stage 1
 * only, stage 2 only and nested on the `nested-4k-1g` workload, with tinybench.
 *
 * Each descriptor-read construction runs in its own process (so V8 sees one
 * memory class and the walker stays monomorphic):
 *   atomic  wasm i64.atomic.load (what the project uses; tear-free)
 *   bigint  Atomics.load on a BigInt64Array (tear-free, allocates BigInts)
 *   plain   two plain 32-bit loads (NOT tear-free: the speed of light)
 * Every figure is the median over `--rounds` tinybench runs, with min and max.
 *
 * Options: --rounds N (default 5), --time MS per tinybench run (default 400),
 * --quick (2 rounds of 150 ms, 1/4 of the workload), --tiny (1 round of 20 ms,
 * 1/64 of the workload: for tests), --out DIR (default results).
 * results/walk.json follows the smmu-farm-bench/1 schema (src/bench/schema.ts).
 */

import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { PhysMem } from '../src/memory/phys.js';
import type { Regime } from '../src/pgtable/regime.js';
import { ACC_READ, WalkResult } from '../src/walk/result.js';
import { translate } from '../src/walk/walk.js';
import { buildNested4k1g } from '../src/workloads/nested-4k-1g.js';
import { BENCH_SCHEMA, exact, fromSpread, type BenchDoc } from '../src/bench/schema.js';
import { arg, benchMode, commandLine, fmt, machine, modeArgs, spread, publish, runMain, type BenchMode, type Spread } from './lib.js';
import { BigIntAtomicsMem, PlainPairMem } from './mem-variants.js';

const C_REFERENCE_NS = 74;
const BATCH = 4096;
const VARIANTS = ['atomic', 'bigint', 'plain'] as const;
type Variant = (typeof VARIANTS)[number];
const MODES = ['stage1', 'stage2', 'nested'] as const;
type Mode = (typeof MODES)[number];

interface ChildResult {
  variant: Variant;
  buildMs: number;
  pages: number;
  tableBytes: number;
  modes: Record<Mode, { nsPerWalk: Spread; readsPerWalk: number; faults: number }>;
}

async function child(variant: Variant, rounds: number, timeMs: number, fraction: number, queries: number): Promise<ChildResult> {
  const w = buildNested4k1g({ seed: 1, fraction, queries });
  const mem: PhysMem =
    variant === 'atomic' ? w.mem : variant === 'bigint' ? BigIntAtomicsMem.from(w.mem.share()) : PlainPairMem.from(w.mem.share());
  const res = new WalkResult();
  const inputs: Record<Mode, [Regime, Float64Array]> = {
    stage1: [w.s1only, w.vas],
    stage2: [w.s2only, w.ipas],
    nested: [w.nested, w.vas],
  };
  const out = {} as ChildResult['modes'];
  for (const mode of MODES) {
    const [regime, addrs] = inputs[mode];
    const n = addrs.length;
    // Correctness and reads per walk, over every query address once.
    let reads = 0;
    let faults = 0;
    for (let i = 0; i < n; i++) {
      if (!translate(mem, regime, addrs[i]!, ACC_READ, res)) faults++;
      reads += res.reads;
    }
    let cursor = 0;
    const samples: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const bench = new Bench({ time: timeMs, warmupTime: Math.min(200, timeMs) });
      bench.add(mode, () => {
        let c = cursor;
        for (let k = 0; k < BATCH; k++) {
          translate(mem, regime, addrs[c]!, ACC_READ, res);
          c = c + 1 === n ? 0 : c + 1;
        }
        cursor = c;
      });
      await bench.run();
      const p50 = bench.tasks[0]!.result?.latency.p50;
      if (p50 === undefined) throw new Error(`tinybench gave no result for ${mode}`);
      samples.push((p50 * 1e6) / BATCH);
    }
    out[mode] = { nsPerWalk: spread(samples), readsPerWalk: reads / n, faults };
  }
  return { variant, buildMs: w.buildMs, pages: w.pages, tableBytes: w.stage2.tableBytesInUse + w.stage1.tableBytesInUse, modes: out };
}

async function main(): Promise<void> {
  const mode: BenchMode = benchMode();
  const quick = mode !== 'full';
  const rounds = Number(arg('--rounds', mode === 'tiny' ? '1' : quick ? '2' : '5'));
  const timeMs = Number(arg('--time', mode === 'tiny' ? '20' : quick ? '150' : '400'));
  const fraction = mode === 'tiny' ? 1 / 64 : quick ? 0.25 : 1;
  const queries = mode === 'tiny' ? 1 << 14 : 1 << 20;
  const variantArg = arg('--child', '');
  if (variantArg !== '') {
    const r = await child(variantArg as Variant, rounds, timeMs, fraction, queries);
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const outDir = arg('--out', 'results');
  const self = fileURLToPath(import.meta.url);
  const results: ChildResult[] = [];
  for (const v of VARIANTS) {
    process.stderr.write(`bench:walk: ${v} ...\n`);
    const extra = modeArgs(mode);
    const text = execFileSync(process.execPath, [self, '--child', v, '--rounds', String(rounds), '--time', String(timeMs), ...extra], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    results.push(JSON.parse(text.trim().split('\n').pop()!) as ChildResult);
  }
  const m = machine();
  const atomic = results.find((r) => r.variant === 'atomic')!;
  const nested = atomic.modes.nested.nsPerWalk.median;
  const workload = mode === 'tiny' ? 'nested-4k-1g (tiny: 1/64 of the VA)' : quick ? 'nested-4k-1g (quick: 1/4 of the VA)' : 'nested-4k-1g';
  const figures = results.flatMap((r) =>
    MODES.flatMap((regime) => [
      fromSpread('ns per walk', 'ns', { variant: r.variant, regime }, r.modes[regime].nsPerWalk),
      exact('descriptor reads per walk', 'reads', { variant: r.variant, regime }, r.modes[regime].readsPerWalk),
    ]),
  );
  const json: BenchDoc = {
    schema: BENCH_SCHEMA,
    suite: 'walk',
    benchmark: 'walk',
    command: commandLine('bench:walk', mode),
    config: { mode, workload, fraction, queries, rounds, tinybenchTimeMs: timeMs, batch: BATCH, variants: [...VARIANTS] },
    headline: { title: 'Time per walk (nested-4k-1g), by regime and descriptor-read construction', metric: 'ns per walk', x: 'regime', series: 'variant' },
    figures,
    workload,
    machine: m,
    rounds,
    tinybenchTimeMs: timeMs,
    batch: BATCH,
    cReferenceNsPerNestedWalk: C_REFERENCE_NS,
    nestedRatioToC: nested / C_REFERENCE_NS,
    variants: results,
  };
  const row = (r: ChildResult, mode: Mode): string => {
    const s = r.modes[mode].nsPerWalk;
    return `| ${r.variant} | ${mode} | ${fmt(s.median)} | ${fmt(s.min)} | ${fmt(s.max)} | ${fmt(r.modes[mode].readsPerWalk, 2)} | ${r.modes[mode].faults} |`;
  };
  const md = [
    '# Walk benchmark (`nested-4k-1g`)',
    '',
    `Command: \`${json.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    `Each figure: median of ${rounds} tinybench runs (${timeMs} ms each, ${BATCH} walks per call), min and max beside it.`,
    '',
    '| reads | regime | ns/walk (median) | min | max | descriptor reads/walk | faults |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...results.flatMap((r) => MODES.map((mode) => row(r, mode))),
    '',
    `Nested walk with single-copy atomic reads (wasm \`i64.atomic.load\`): **${fmt(nested)} ns**, ` +
      `${fmt(nested / C_REFERENCE_NS, 2)}x the ${C_REFERENCE_NS} ns of a straightforward C walker with atomic loads (target: 1.5x).`,
    `Cost of atomicity inside the walk: wasm atomic ${fmt(nested)} ns vs plain (tearing) ${fmt(results.find((r) => r.variant === 'plain')!.modes.nested.nsPerWalk.median)} ns ` +
      `vs BigInt Atomics.load ${fmt(results.find((r) => r.variant === 'bigint')!.modes.nested.nsPerWalk.median)} ns.`,
    `Workload: ${atomic.pages} mapped 4 KiB pages, ${fmt(atomic.tableBytes / 2 ** 20)} MiB of tables, built in ${fmt(atomic.buildMs, 0)} ms.`,
    '',
  ].join('\n');
  publish('walk', json, md, outDir);
}

runMain('walk', main);
