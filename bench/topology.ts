/**
 * `smmu-farm bench topology` (issue F): from the smallest topology to the
 * largest (the `soc` preset, generated sizes, `server`, generated sizes,
 * `hyperscale`), what setting the system up costs, the memory its model state
 * holds, the throughput of a fixed workload over many or few stream IDs, and
 * how each grows with size.
 *
 * For every topology of the ladder (src/bench/topology.ts):
 *
 * - set-up time, in four phases: validating the topology document (spec),
 *   resolving it (RIDs, DMA aliases, RID->SID, IOMMU groups), building and
 *   bringing up every SMMU (TopologyMachine: probe and reset through the
 *   driver), and attaching every DMA device's IOMMU group to its own default
 *   domain (a context bank and SMRs each), Linux's probe-time behaviour;
 * - memory: the V8 heap and ArrayBuffer memory each phase leaves retained,
 *   measured after full garbage collections;
 * - the exact counts: SMMUs, PCI functions, DMA devices, groups, stream IDs,
 *   context banks and SMRs in use, and the DMA devices left unattached (no free
 *   context bank, no free SMRs, or not attachable at all);
 * - throughput: `runWorkload` (the library behind `smmu-farm run`) with a fixed
 *   count of translations of a fixed workload (uniform 64-byte reads over the
 *   same 2 MiB for every stream, streams taken round-robin) spread over as many
 *   DMA devices of the default SMMU as one domain's SMRs can take, with the
 *   `mmu600` caches, on 1 and 2 translation units. Every run must translate its
 *   whole count without a fault or an abort, on the stream IDs planned.
 *
 * Growth: per stream ID, and largest / smallest (per round, median over rounds),
 * with the exponent ln(growth) / ln(stream-ID growth): 1 is linear in stream IDs.
 *
 * Full: all seven, 5 rounds of timings (3 of memory), 1,048,576 translations
 * per throughput run. --quick: soc, server and hyperscale, 3 rounds (2 of
 * memory), 32,768 translations; --tiny (for tests): the smallest three, 1
 * round, 16,384 translations.
 * results/topology.json follows the smmu-farm-bench/1 schema (src/bench/schema.ts).
 */

import { runWorkload } from '../src/run/run.js';
import { BENCH_SCHEMA, exact, measured, type BenchDoc, type Figure } from '../src/bench/schema.js';
import {
  PHASES,
  STREAM_FOOTPRINT,
  checkSetup,
  ladder,
  copiesFor,
  planThroughput,
  setupWorld,
  throughputWorkload,
  timeSetup,
  weighSetup,
  type MemorySample,
  type Phase,
  type Rung,
  type ThroughputPlan,
  type TopologyCounts,
} from '../src/bench/topology.js';
import type { TopologySpec } from '../src/topology/model.js';
import { arg, benchMode, commandLine, fmt, machine, spread, publish, runMain } from './lib.js';

const CACHES = 'mmu600';
const UNITS = [1, 2];

/** One round of a topology's set-up timing: phase times, mean over the copies. */
interface SetupSample {
  ms: Record<Phase, number>;
  totalMs: number;
}

interface RungResult {
  rung: Rung;
  counts: TopologyCounts;
  copies: number;
  samples: SetupSample[];
  /** Memory per copy, one per memory round. */
  mems: MemorySample[];
  spec: TopologySpec;
  plan: ThroughputPlan;
  /** translations/s per units, one per round. */
  tps: Map<number, number[]>;
  hitRate: Map<number, number[]>;
  farmStartMs: number[];
}

const med = (v: number[]): number => spread(v).median;
const kib = (b: number): string => fmt(b / 1024, 1);

async function main(): Promise<void> {
  const mode = benchMode();
  const outDir = arg('--out', 'results');
  const rounds = Number(arg('--rounds', mode === 'tiny' ? '1' : mode === 'quick' ? '3' : '5'));
  // Memory readings vary far less than timings (a few KiB): fewer rounds of them.
  const memRounds = Math.min(rounds, mode === 'full' ? 3 : 2);
  const count = Number(arg('--count', String(mode === 'tiny' ? 1 << 14 : mode === 'quick' ? 1 << 15 : 1 << 20)));
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new Error(`--rounds: expected an integer >= 1, got ${arg('--rounds', '')}`);
  if (!(Number.isInteger(count) && count >= 1)) throw new Error(`--count: expected an integer >= 1, got ${arg('--count', '')}`);
  const rungs = ladder(mode);
  const world = setupWorld();
  const results: RungResult[] = [];

  // ---- Set-up: time, memory, counts.
  for (const rung of rungs) {
    const doc = rung.doc();
    const file = `${rung.kind}:${rung.name}`;
    const first = timeSetup(doc, file, world, 1); // warm-up (JIT), not counted
    const copies = copiesFor(first.counts.streamIds);
    const problems = checkSetup(first);
    if (problems.length > 0) throw new Error(`${rung.name}: the stream-match state after set-up is wrong:\n  ${problems.slice(0, 10).join('\n  ')}`);
    const counts = first.counts;
    const spec = first.spec;
    const plan = planThroughput(first.resolved, world);
    const samples: SetupSample[] = [];
    for (let r = 0; r < rounds; r++) {
      const s = timeSetup(doc, file, world, copies);
      if (JSON.stringify(s.counts) !== JSON.stringify(counts)) {
        throw new Error(`${rung.name}: set-up round ${r + 1} gave other counts than the first set-up (${JSON.stringify(s.counts)} vs ${JSON.stringify(counts)})`);
      }
      samples.push({ ms: s.ms, totalMs: s.totalMs });
    }
    const mems: MemorySample[] = [];
    for (let r = 0; r < memRounds; r++) mems.push(weighSetup(doc, file, world, copies));
    const total = med(samples.map((x) => x.totalMs));
    process.stderr.write(
      `bench:topology: ${rung.name}: ${counts.streamIds} stream IDs, set-up ${fmt(total, 2)} ms, heap ${kib(med(mems.map((x) => x.heapTotal)))} KiB, ` +
        `${counts.contextBanksInUse} banks, ${counts.smrsUsed} SMRs, ${counts.unattached.all} unattached\n`,
    );
    results.push({ rung, counts, copies, samples, mems, spec, plan, tps: new Map(UNITS.map((u) => [u, []])), hitRate: new Map(UNITS.map((u) => [u, []])), farmStartMs: [] });
  }

  // ---- Throughput: rounds outermost, so that drift in the machine's load spreads over every topology.
  for (let r = 0; r < rounds; r++) {
    for (const x of results) {
      for (const units of UNITS) {
        const rep = await runWorkload({ workload: throughputWorkload(x.plan.streams), topology: x.spec, smmu: x.plan.smmu, units, count, caches: CACHES, seed: 1 });
        const sids = new Set(rep.topology.streams.map((s) => s.sid)).size;
        if (rep.translations !== count || rep.faults !== 0 || rep.aborts !== 0 || sids !== x.plan.streamIds || rep.topology.smmu !== x.plan.smmu) {
          throw new Error(
            `${x.rung.name}, ${units} unit(s): expected ${count} translations on ${x.plan.streamIds} stream IDs of ${x.plan.smmu} without faults or aborts; ` +
              `got ${rep.translations} translations, ${rep.faults} faults, ${rep.aborts} aborts, ${sids} stream IDs on ${rep.topology.smmu}`,
          );
        }
        x.tps.get(units)!.push(rep.translationsPerSecond);
        x.hitRate.get(units)!.push(rep.hitRate);
        x.farmStartMs.push(rep.farmStartMs);
        if (r === 0) process.stderr.write(`bench:topology: ${x.rung.name}, ${units} unit(s), ${x.plan.streams} streams: ${fmt(rep.translationsPerSecond / 1e6, 2)} M translations/s\n`);
      }
    }
  }

  // ---- Figures.
  const small = results[0]!;
  const large = results[results.length - 1]!;
  const figures: Figure[] = [];
  for (const x of results) {
    const t = { topology: x.rung.name };
    const c = x.counts;
    figures.push(
      exact('SMMUs', 'SMMUs', t, c.smmus),
      exact('PCI functions', 'functions', t, c.pciFunctions),
      exact('platform devices', 'devices', t, c.platformDevices),
      exact('DMA devices', 'devices', t, c.dmaDevices),
      exact('IOMMU groups', 'groups', t, c.groups),
      exact('stream IDs', 'stream IDs', t, c.streamIds),
      exact('groups attached', 'groups', t, c.attachedGroups),
      exact('context banks in use', 'context banks', t, c.contextBanksInUse),
      exact('SMRs used', 'SMRs', t, c.smrsUsed),
      exact('stream IDs attached', 'stream IDs', t, c.attachedStreamIds),
      exact('unattached DMA devices', 'devices', { ...t, reason: 'all' }, c.unattached.all),
      exact('unattached DMA devices', 'devices', { ...t, reason: 'no context bank' }, c.unattached.noContextBank),
      exact('unattached DMA devices', 'devices', { ...t, reason: 'no SMR' }, c.unattached.noSmr),
      exact('unattached DMA devices', 'devices', { ...t, reason: 'not attachable' }, c.unattached.notAttachable),
      exact('throughput workload streams', 'devices', { ...t, smmu: x.plan.smmu }, x.plan.streams),
      exact('throughput workload stream IDs', 'stream IDs', { ...t, smmu: x.plan.smmu }, x.plan.streamIds),
    );
    for (const p of PHASES) figures.push(measured('set-up time', 'ms', { ...t, phase: p }, x.samples.map((s) => s.ms[p])));
    figures.push(measured('set-up time', 'ms', { ...t, phase: 'total' }, x.samples.map((s) => s.totalMs)));
    figures.push(measured('set-up time per stream ID', 'us', t, x.samples.map((s) => (1000 * s.totalMs) / c.streamIds)));
    for (const p of PHASES) figures.push(measured('retained heap', 'bytes', { ...t, phase: p }, x.mems.map((s) => s.heap[p])));
    figures.push(measured('retained heap', 'bytes', { ...t, phase: 'total' }, x.mems.map((s) => s.heapTotal)));
    figures.push(measured('retained heap per stream ID', 'bytes', t, x.mems.map((s) => s.heapTotal / c.streamIds)));
    figures.push(measured('ArrayBuffer bytes', 'bytes', t, x.mems.map((s) => s.buffers)));
    const hits = x.hitRate.get(1)!;
    if (hits.some((h) => h !== hits[0])) throw new Error(`${x.rung.name}: the hit rate with 1 unit differs between rounds (${hits.join(', ')}); it should be deterministic`);
    figures.push(exact('hit rate, 1 unit', '%', t, 100 * hits[0]!));
    for (const u of UNITS) {
      figures.push(measured('translations per second', 'translations/s', { ...t, units: u }, x.tps.get(u)!));
      const base = small.tps.get(u)!;
      figures.push(measured('throughput relative to the smallest topology', 'x', { ...t, units: u }, x.tps.get(u)!.map((v, i) => v / base[i]!)));
    }
  }
  // Growth, largest / smallest: per round, then the spread over rounds.
  const sidGrowth = large.counts.streamIds / small.counts.streamIds;
  const growth: Array<{ quantity: string; ratios: number[] }> = [];
  for (const p of [...PHASES, 'total'] as Array<Phase | 'total'>) {
    const v = (x: RungResult): number[] => x.samples.map((s) => (p === 'total' ? s.totalMs : s.ms[p]));
    growth.push({ quantity: `set-up time (${p})`, ratios: v(large).map((a, i) => a / v(small)[i]!) });
  }
  growth.push({ quantity: 'retained heap (total)', ratios: large.mems.map((s, i) => s.heapTotal / small.mems[i]!.heapTotal) });
  for (const u of UNITS) growth.push({ quantity: `translations per second (${u} unit${u === 1 ? '' : 's'})`, ratios: large.tps.get(u)!.map((a, i) => a / small.tps.get(u)![i]!) });
  const pair = { from: small.rung.name, to: large.rung.name };
  for (const [what, a, b] of [
    ['stream IDs', small.counts.streamIds, large.counts.streamIds],
    ['DMA devices', small.counts.dmaDevices, large.counts.dmaDevices],
    ['SMMUs', small.counts.smmus, large.counts.smmus],
    ['context banks in use', small.counts.contextBanksInUse, large.counts.contextBanksInUse],
    ['throughput workload stream IDs', small.plan.streamIds, large.plan.streamIds],
  ] as const) {
    figures.push(exact('size growth, largest / smallest', 'x', { ...pair, quantity: what }, b / a));
  }
  for (const g of growth) {
    figures.push(measured('growth, largest / smallest', 'x', { ...pair, quantity: g.quantity }, g.ratios));
    if (sidGrowth > 1 && g.ratios.every((r) => r > 0)) {
      figures.push(measured('growth exponent against stream IDs', 'exponent', { ...pair, quantity: g.quantity }, g.ratios.map((r) => Math.log(r) / Math.log(sidGrowth))));
    }
  }

  const m = machine();
  const json: BenchDoc & Record<string, unknown> = {
    schema: BENCH_SCHEMA,
    suite: 'topology',
    benchmark: 'topology',
    command: commandLine('bench:topology', mode),
    config: {
      mode,
      topologies: rungs.map((r) => r.name),
      rounds,
      memoryRounds: memRounds,
      translationsPerRun: count,
      caches: CACHES,
      units: UNITS,
      distribution: 'affinity',
      streamFootprintBytes: STREAM_FOOTPRINT,
      attach: 'one default stage-1 domain (context bank) per IOMMU group, masked SMRs',
      memory: 'V8 heap in use less code spaces (v8.getHeapSpaceStatistics) and memoryUsage().arrayBuffers growth per phase, after full GCs, objects retained, per copy',
      setupCopies: results.map((x) => x.copies),
    },
    headline: {
      title: `Set-up time by topology, ${small.rung.name} (${small.counts.streamIds} stream IDs) to ${large.rung.name} (${large.counts.streamIds}): validate, resolve, bring up every SMMU, attach every DMA device (ms, median of ${rounds})`,
      metric: 'set-up time',
      x: 'topology',
      series: 'phase',
    },
    charts: [
      {
        name: 'throughput',
        title: `Translations per second by topology, ${small.rung.name} to ${large.rung.name} (the same workload over the stream IDs of one SMMU, mmu600 caches; median of ${rounds})`,
        metric: 'translations per second',
        x: 'topology',
        series: 'units',
      },
    ],
    figures,
    machine: m,
    rows: results.map((x) => ({
      topology: x.rung.name,
      description: x.rung.description,
      counts: x.counts,
      throughputPlan: x.plan,
      setupMs: Object.fromEntries([...PHASES, 'total'].map((p) => [p, spread(x.samples.map((s) => (p === 'total' ? s.totalMs : s.ms[p as Phase])))])),
      heapBytes: Object.fromEntries([...PHASES, 'total'].map((p) => [p, med(x.mems.map((s) => (p === 'total' ? s.heapTotal : s.heap[p as Phase])))])),
      arrayBufferBytes: med(x.mems.map((s) => s.buffers)),
      translationsPerSecond: Object.fromEntries(UNITS.map((u) => [u, spread(x.tps.get(u)!)])),
      hitRate: Object.fromEntries(UNITS.map((u) => [u, med(x.hitRate.get(u)!)])),
      farmStartMs: med(x.farmStartMs),
    })),
  };

  const g = (q: string): number => med(growth.find((x) => x.quantity === q)!.ratios);
  const expo = (q: string): string => (sidGrowth > 1 ? fmt(Math.log(g(q)) / Math.log(sidGrowth), 2) : 'n/a');
  const sm = (x: RungResult, p: Phase | 'total'): number => med(x.samples.map((s) => (p === 'total' ? s.totalMs : s.ms[p])));
  const hp = (x: RungResult, p: Phase | 'total'): number => med(x.mems.map((s) => (p === 'total' ? s.heapTotal : s.heap[p])));
  const c = (x: RungResult): TopologyCounts => x.counts;
  const md = [
    '# Topology benchmark: set-up, memory and throughput from the smallest topology to the largest',
    '',
    `Command: \`${json.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    `Timings are medians of ${rounds} round${rounds === 1 ? '' : 's'} (min-max beside the totals), memory of ${memRounds}; counts are exact.`,
    '',
    '## The ladder',
    '',
    '| topology | what | SMMUs | PCI functions | platform devices | DMA devices | IOMMU groups | stream IDs |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...results.map((x) => `| ${x.rung.name} | ${x.rung.description} | ${c(x).smmus} | ${c(x).pciFunctions} | ${c(x).platformDevices} | ${c(x).dmaDevices} | ${c(x).groups} | ${c(x).streamIds} |`),
    '',
    '## Attaching every DMA device',
    '',
    'Each DMA device\'s IOMMU group is attached, in topology order, to its own default stage-1 domain on its SMMU (one context bank each; SMRs masked where an aligned block allows), as Linux does at probe time.',
    'A group that finds no free context bank or too few free SMRs stays unattached; the stream-match registers are checked afterwards (every attached stream ID matches exactly one SMR routed to its group\'s bank, and no other).',
    '',
    '| topology | DMA groups | attached | context banks in use / implemented | SMRs used / implemented | stream IDs attached | unattached devices: all | no context bank | no SMR | not attachable |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map(
      (x) =>
        `| ${x.rung.name} | ${c(x).dmaGroups} | ${c(x).attachedGroups} | ${c(x).contextBanksInUse} / ${c(x).contextBanks} | ${c(x).smrsUsed} / ${c(x).smrs} | ${c(x).attachedStreamIds} | ${c(x).unattached.all} | ${c(x).unattached.noContextBank} | ${c(x).unattached.noSmr} | ${c(x).unattached.notAttachable} |`,
    ),
    '',
    '## Set-up time (ms)',
    '',
    'spec: validating the topology document; resolve: RIDs, DMA aliases, RID→SID, IOMMU groups; bring-up: one SMMU model per SMMU, probed and reset by its driver; attach: as above.',
    'Each round sets up `copies` copies one after the other (after a full garbage collection) and takes the mean per copy.',
    '',
    '| topology | copies | spec | resolve | bring-up | attach | total | min-max | µs per stream ID |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((x) => {
      const tot = spread(x.samples.map((s) => s.totalMs));
      return `| ${x.rung.name} | ${x.copies} | ${PHASES.map((p) => fmt(sm(x, p), 2)).join(' | ')} | ${fmt(tot.median, 2)} | ${fmt(tot.min, 2)}-${fmt(tot.max, 2)} | ${fmt((1000 * tot.median) / c(x).streamIds, 2)} |`;
    }),
    '',
    '## Memory (KiB retained)',
    '',
    'Growth of the V8 heap in use (all spaces but the code spaces: compiled code is the JIT\'s, not the model\'s) over each phase, and of ArrayBuffer/SharedArrayBuffer memory (`memoryUsage().arrayBuffers`) over the whole set-up,',
    'each measured after a full garbage collection with what the phase built still referenced, per copy (copies built phase by phase; see the set-up table).',
    '',
    '| topology | spec | resolve | bring-up | attach | heap total | bytes per stream ID | ArrayBuffers |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map(
      (x) =>
        `| ${x.rung.name} | ${PHASES.map((p) => kib(hp(x, p))).join(' | ')} | ${kib(hp(x, 'total'))} | ${fmt(hp(x, 'total') / c(x).streamIds, 0)} | ${kib(med(x.mems.map((s) => s.buffers)))} |`,
    ),
    '',
    '## Throughput',
    '',
    `\`runWorkload\` with ${count} translations per run: uniform 64-byte reads, every stream over the same ${STREAM_FOOTPRINT >> 20} MiB of VA, streams taken round-robin, \`${CACHES}\` caches, affinity distribution.`,
    'The streams go onto the DMA devices of the default SMMU (the first with an attachable device), as many as one domain\'s SMRs can take (runWorkload attaches every group in use to one nested domain), so the tables and the footprint are the same for every topology and only the stream IDs in use differ.',
    'Every run translated its whole count without a fault or an abort.',
    '',
    `| topology | SMMU | streams (of its DMA devices) | stream IDs | ${UNITS.map((u) => `${u} unit${u === 1 ? '' : 's'}: M translations/s (min-max)`).join(' | ')} | ${UNITS.map((u) => `${u}u vs ${small.rung.name}`).join(' | ')} | hit rate (1 unit) |`,
    `|---|---|---:|---:|${UNITS.map(() => '---:').join('|')}|${UNITS.map(() => '---:').join('|')}|---:|`,
    ...results.map((x) => {
      const cells = UNITS.map((u) => {
        const s = spread(x.tps.get(u)!);
        return `${fmt(s.median / 1e6, 2)} (${fmt(s.min / 1e6, 2)}-${fmt(s.max / 1e6, 2)})`;
      });
      const rel = UNITS.map((u) => `${fmt(med(x.tps.get(u)!.map((v, i) => v / small.tps.get(u)![i]!)), 2)}x`);
      return `| ${x.rung.name} | ${x.plan.smmu} | ${x.plan.streams} (of ${x.plan.devices}) | ${x.plan.streamIds} | ${cells.join(' | ')} | ${rel.join(' | ')} | ${fmt(100 * med(x.hitRate.get(1)!), 2)}% |`;
    }),
    '',
    '## How each grows with size',
    '',
    `From ${small.rung.name} to ${large.rung.name}, stream IDs grow ${fmt(sidGrowth, 1)}x (${small.counts.streamIds} to ${large.counts.streamIds}), DMA devices ${fmt(large.counts.dmaDevices / small.counts.dmaDevices, 1)}x and SMMUs ${fmt(large.counts.smmus / small.counts.smmus, 1)}x. ` +
      'Growth is the ratio largest / smallest, per round, median over rounds; the exponent is ln(growth) / ln(stream-ID growth) (1: linear in stream IDs, 0: flat).',
    '',
    '| quantity | growth | exponent against stream IDs |',
    '|---|---:|---:|',
    ...growth.map((x) => `| ${x.quantity} | ${fmt(g(x.quantity), 2)}x | ${expo(x.quantity)} |`),
    '',
    `Set-up costs ${fmt((1000 * sm(small, 'total')) / small.counts.streamIds, 2)} µs per stream ID on ${small.rung.name} and ${fmt((1000 * sm(large, 'total')) / large.counts.streamIds, 2)} µs on ${large.rung.name}; ` +
      `the model state retains ${fmt(hp(small, 'total') / small.counts.streamIds, 0)} and ${fmt(hp(large, 'total') / large.counts.streamIds, 0)} heap bytes per stream ID. ` +
      `The throughput workload runs on ${small.plan.streamIds} stream IDs on ${small.rung.name} and ${large.plan.streamIds} on ${large.rung.name}; with 1 unit its throughput there is ${fmt(g('translations per second (1 unit)'), 2)}x the smallest's.`,
    '',
  ].join('\n');
  publish('topology', json, md, outDir);
}

runMain('topology', main);
