/**
 * `npm run bench:farm`: the translation farm of issue E.
 *
 * For 1..N units (default: 1 and the number of cores), on a hit-dominated
 * workload (a hot set of 64 pages, MMU-600-like caches) and a walk-dominated
 * one (nested-4k-1g in random order, no caches): aggregate translations/s,
 * the speedup over one unit, and farm efficiency = time the units spent
 * translating / (wall time x units). Each unit is handed --batch translations
 * per batch (default 16384, the farm's default queue capacity) in shared
 * buffers, so a batch of the whole farm is --batch x units translations. Each
 * farm runs one untimed round first (JIT warm-up), then the timed rounds.
 *
 * Also: a bare worker_threads ALU loop on 1 and N threads, measured in the same
 * run, so that the farm's scaling can be read against what the machine gives
 * any two threads at that moment.
 *
 * --quick: 2 rounds of 6 batches on 1/16 of nested-4k-1g; --tiny (for tests):
 * 1 round of 2 batches of 4096 on 1/64 of it.
 * results/farm.json follows the smmu-farm-bench/1 schema (src/bench/schema.ts).
 */

import { cpus } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CACHE_PRESETS } from '../src/cache/presets.js';
import { ArmSmmuDriver } from '../src/driver/arm-smmu.js';
import { DEFAULT_POLL_EVERY, Farm } from '../src/farm/farm.js';
import { encodeIds } from '../src/smmu/id.js';
import { Smmu } from '../src/smmu/smmu.js';
import { buildNested4k1g } from '../src/workloads/nested-4k-1g.js';
import { BENCH_SCHEMA, fromSpread, measured, type BenchDoc } from '../src/bench/schema.js';
import { arg, benchMode, commandLine, fmt, machine, spread, publish, runMain, type Spread } from './lib.js';

/** Iterations/s of a pure ALU loop on `threads` threads at once (aggregate). */
async function bareLoop(threads: number, iterations: number): Promise<number> {
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    let s = 0; const t0 = performance.now();
    for (let i = 0; i < workerData; i++) s = (s * 31 + i) | 0;
    parentPort.postMessage([performance.now() - t0, s]);`;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: threads }, () => new Promise((res, rej) => {
      const w = new Worker(code, { eval: true, workerData: iterations });
      w.once('message', res);
      w.once('error', rej);
    })),
  );
  return (threads * iterations) / ((performance.now() - t0) / 1000);
}

/** One batch's request buffers (stream IDs, addresses, access codes) and result buffers, for Farm.translate. */
function requestBuffers(n: number): { s: Int32Array; vas: Float64Array; accs: Uint8Array; pa: Float64Array; st: Int8Array } {
  return { s: new Int32Array(n), vas: new Float64Array(n), accs: new Uint8Array(n), pa: new Float64Array(n), st: new Int8Array(n) };
}

/** One way of feeding a farm: `step` fills and submits a batch, `drain` waits for what is in flight, `failed` counts unsuccessful translations in the last batch. */
interface Feeder {
  step: () => void;
  drain: () => void;
  failed: () => number;
}

/**
 * Through `translate()`: each batch is `batch` x units requests of streams i & 15 at
 * addresses addrAt(cursor + i), scattered to the units and gathered back by the farm.
 */
function translateFeeder(farm: Farm, batch: number, addrAt: (k: number) => number): Feeder {
  const n = batch * farm.units; // the whole farm's batch: `batch` per unit
  const { s, vas, accs, pa, st } = requestBuffers(n);
  let cursor = 0;
  return {
    step: () => {
      for (let i = 0; i < n; i++) {
        s[i] = i & 15;
        vas[i] = addrAt(cursor + i);
      }
      cursor += n;
      farm.translate(s, vas, accs, n, pa, st);
    },
    drain: () => {},
    failed: () => st.filter((x) => x !== 0).length,
  };
}

/**
 * Written in place and pipelined: unit u's requests of each batch are unitSid[u] and a
 * `batch`-long slice of unitVa[u] starting at (batch number x batch) mod period, copied into
 * its queue (TypedArray.set) while the units translate the previous batch (submitQueued, then
 * waitQueued of the one before). `resident`: each slot is written once (the first batches,
 * one per slot), then resubmitted as is, so the caller only rings doorbells.
 */
function inPlaceFeeder(farm: Farm, unitSid: Int32Array[], unitVa: Float64Array[], period: number, batch: number, resident: boolean): Feeder {
  const units = farm.units;
  const counts = new Int32Array(units).fill(batch);
  let queues = Array.from({ length: units }, (_, u) => farm.queue(u));
  let b = 0;
  let inFlight = 0;
  return {
    step: () => {
      queues = queues.map((_, u) => farm.queue(u));
      const off = (b * batch) % period;
      for (let u = 0; u < units && !(resident && b >= farm.shared.slots); u++) {
        const q = queues[u]!;
        q.sid.set(unitSid[u]!);
        q.va.set(unitVa[u]!.subarray(off, off + batch));
        q.acc.fill(0, 0, batch);
      }
      b++;
      const d = farm.submitQueued(counts);
      if (inFlight > 0) farm.waitQueued(inFlight);
      inFlight = d;
    },
    drain: () => {
      if (inFlight > 0) farm.waitQueued(inFlight);
      inFlight = 0;
    },
    failed: () => queues.reduce((a, q) => a + q.status.subarray(0, batch).filter((x) => x !== 0).length, 0),
  };
}

interface Rounds {
  /** Per timed round: translations/s, farm efficiency (busy / (wall x units)), walks per translation. */
  tps: number[];
  efficiency: number[];
  walks: number[];
}

/**
 * `warmup` untimed batches (JIT), checked: every translation of the last must succeed (the
 * farm's answers are checked, not just timed). Then `rounds` rounds of `batches` batches.
 */
function timedRounds(label: string, farm: Farm, feed: Feeder, batch: number, warmup: number, rounds: number, batches: number): Rounds {
  for (let k = 0; k < warmup; k++) feed.step();
  feed.drain();
  const bad = feed.failed();
  if (bad > 0) throw new Error(`${label}: ${bad} translations of the last warm-up batch did not succeed`);
  const total = (k: 'walks' | 'translations' | 'busyMs'): number => farm.unitStats().reduce((a, x) => a + x[k], 0);
  const out: Rounds = { tps: [], efficiency: [], walks: [] };
  for (let r = 0; r < rounds; r++) {
    const w0 = total('walks');
    const n0 = total('translations');
    const b0 = total('busyMs');
    const t0 = performance.now();
    for (let k = 0; k < batches; k++) feed.step();
    feed.drain();
    const wall = performance.now() - t0;
    out.tps.push((batches * batch * farm.units) / (wall / 1000));
    out.efficiency.push((total('busyMs') - b0) / (wall * farm.units));
    out.walks.push((total('walks') - w0) / (total('translations') - n0));
  }
  return out;
}

interface Row {
  workload: string;
  units: number;
  translationsPerSec: Spread;
  speedup: number;
  efficiency: Spread;
}

async function main(): Promise<void> {
  const mode = benchMode();
  const quick = mode !== 'full';
  const tiny = mode === 'tiny';
  const rounds = Number(arg('--rounds', tiny ? '1' : quick ? '2' : '5'));
  const batches = Number(arg('--batches', tiny ? '2' : quick ? '6' : '60'));
  const batch = Number(arg('--batch', tiny ? '4096' : '16384'));
  const maxUnits = Number(arg('--units', String(Math.max(2, cpus().length))));
  const outDir = arg('--out', 'results');
  const fraction = tiny ? 1 / 64 : quick ? 1 / 16 : 1;
  const w = buildNested4k1g({ seed: 1, fraction, queries: tiny ? 1 << 14 : 1 << 18 });
  const smmu = new Smmu(encodeIds({ smrs: 16, contextBanks: 8, s2OnlyBanks: 2 }), w.mem);
  const drv = new ArmSmmuDriver(smmu);
  drv.probe();
  drv.reset();
  drv.attach(drv.createDomain('nested', w.stage1, drv.createDomain('s2', w.stage2)), [{ id: 0, mask: 15 }]);
  const sids = Array.from({ length: 16 }, (_, i) => i);

  // Each workload twice: through translate() (the farm scatters the batch to the units' queues
  // by stream and gathers the results), and written in place (the caller writes each unit's
  // requests straight into its queue and reads the results there: Farm.queue / translateQueued).
  // Hit-dominated work is also run with its requests resident: both slots of each queue are
  // written once and resubmitted, so the caller only rings doorbells and waits. That is the
  // farm's own hand-over cost, without a caller's copy competing for the cores.
  const workloads = [
    { name: 'hit-dominated (64 hot pages, mmu600)', cache: CACHE_PRESETS.mmu600!, hot: 64, inPlace: false, resident: false },
    { name: 'hit-dominated, written in place', cache: CACHE_PRESETS.mmu600!, hot: 64, inPlace: true, resident: false },
    { name: 'hit-dominated, requests resident', cache: CACHE_PRESETS.mmu600!, hot: 64, inPlace: true, resident: true },
    { name: 'walk-dominated (nested-4k-1g, no caches)', cache: null, hot: 0, inPlace: false, resident: false },
    { name: 'walk-dominated, written in place', cache: null, hot: 0, inPlace: true, resident: false },
  ];
  const unitCounts = [...new Set([1, maxUnits])];
  const rows: Row[] = [];
  for (const wl of workloads) {
    let base = 0;
    for (const units of unitCounts) {
      const farm = await Farm.start({ mem: w.mem, units, cache: wl.cache, distribution: 'affinity', capacity: batch });
      farm.loadConfig(smmu, sids);
      const addrAt = (k: number): number => (wl.hot > 0 ? w.vas[k % wl.hot]! : w.vas[k % w.vas.length]!);
      let feed: Feeder;
      if (wl.inPlace) {
        // Unit u gets the requests of streams s with s mod units = u (what affinity would give
        // it), laid out once: its j-th request is address addrAt(j * units + u) of stream
        // mine[j mod mine.length]. Addresses repeat every `period` requests, so each batch is a
        // slice of these arrays.
        const period = wl.hot > 0 ? wl.hot : w.vas.length;
        const unitVa = Array.from({ length: units }, (_, u) => Float64Array.from({ length: period + batch }, (_, j) => addrAt(j * units + u)));
        const unitSid = Array.from({ length: units }, (_, u) => sids.filter((x) => x % units === u)).map((mine) => Int32Array.from({ length: batch }, (_, i) => mine[i % mine.length]!));
        feed = inPlaceFeeder(farm, unitSid, unitVa, period, batch, wl.resident);
      } else feed = translateFeeder(farm, batch, addrAt);
      const { tps, efficiency: eff } = timedRounds(`${wl.name}, ${units} unit(s)`, farm, feed, batch, tiny ? 1 : batches, rounds, batches);
      await farm.close();
      const t = spread(tps);
      if (units === 1) base = t.median;
      rows.push({ workload: wl.name, units, translationsPerSec: t, speedup: t.median / base, efficiency: spread(eff) });
      process.stderr.write(`bench:farm: ${wl.name}, ${units} unit(s): ${fmt(t.median / 1e6, 2)} M/s, efficiency ${fmt(100 * spread(eff).median, 1)}%\n`);
    }
  }
  // ---- TLBI + sync round trip while every unit is busy (units = cores - 1), per waiting strategy.
  const syncUnits = Math.max(1, cpus().length - 1);
  const probeCount = tiny ? 200 : quick ? 1000 : 4000;
  const pct = (sorted: Float64Array, q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const syncRows: Array<{ strategy: string; p50: number; p99: number; max: number; count: number }> = [];
  // Atomics.waitAsync is measured only where it settles (checked here, with the event loop held
  // open by a timer: a pending waitAsync alone does not keep Node's event loop alive).
  const waitAsyncSettles = await new Promise<boolean>((res) => {
    const a = new Int32Array(new SharedArrayBuffer(4));
    const r = (Atomics as unknown as { waitAsync(t: Int32Array, i: number, v: number, ms: number): { async: boolean; value: Promise<string> | string } }).waitAsync(a, 0, 0, 5);
    const timer = setTimeout(() => res(false), 500);
    if (!r.async) {
      clearTimeout(timer);
      res(true);
    } else
      void (r.value as Promise<string>).then(() => {
        clearTimeout(timer);
        res(true);
      });
  });
  const strategies = waitAsyncSettles ? (['spin', 'wait', 'waitAsync'] as const) : (['spin', 'wait'] as const);
  for (const strategy of strategies) {
    const farm = await Farm.start({ mem: w.mem, units: syncUnits, cache: null, distribution: 'affinity', capacity: batch });
    farm.loadConfig(smmu, sids);
    const n = batch;
    const { s, vas, accs, pa, st } = requestBuffers(n);
    for (let i = 0; i < n; i++) {
      s[i] = i & 15;
      vas[i] = w.vas[i % w.vas.length]!;
    }
    const done = new SharedArrayBuffer(4);
    const doneFlag = new Int32Array(done);
    const probe = new Worker(new URL('../workers/sync-probe.js', import.meta.url), { workerData: { shared: farm.shared, strategy, count: probeCount, done } });
    const result = new Promise<Float64Array>((res, rej) => {
      probe.once('message', res);
      probe.once('error', rej);
    });
    // Keep every unit translating until the probe has made all its round trips. Yield to the
    // event loop between batches (the worker's start-up and messages need it) and give up after 2 minutes.
    const deadline = performance.now() + 120_000;
    while (Atomics.load(doneFlag, 0) === 0) {
      if (performance.now() > deadline) throw new Error(`the sync probe (${strategy}) did not finish within 2 minutes`);
      farm.translate(s, vas, accs, n, pa, st);
      await new Promise((r) => setImmediate(r));
    }
    const lat = (await result).slice().sort();
    await probe.terminate();
    await farm.close();
    syncRows.push({ strategy, p50: pct(lat, 0.5), p99: pct(lat, 0.99), max: lat[lat.length - 1]!, count: lat.length });
    process.stderr.write(`bench:farm: sync (${strategy}) p50 ${fmt(pct(lat, 0.5))} us\n`);
  }

  // ---- What watching for invalidations costs: hit-dominated, 1 unit, polling every
  // DEFAULT_POLL_EVERY translations vs never within a batch. Two farms side by side, their
  // rounds alternated (3x as many as elsewhere), so that the machine's drift hits both alike.
  const watchRounds = 3 * rounds;
  const watch: Record<'poll' | 'never', number[]> = { poll: [], never: [] };
  const watchFarms: Array<['poll' | 'never', Farm]> = [];
  for (const [label, pollEvery] of [['poll', DEFAULT_POLL_EVERY], ['never', 1e9]] as const) {
    const farm = await Farm.start({ mem: w.mem, units: 1, cache: CACHE_PRESETS.mmu600!, distribution: 'affinity', capacity: batch, pollEvery });
    farm.loadConfig(smmu, sids);
    watchFarms.push([label, farm]);
  }
  {
    const n = batch;
    const { s, vas, accs, pa, st } = requestBuffers(n);
    for (let i = 0; i < n; i++) {
      s[i] = i & 15;
      vas[i] = w.vas[i % 64]!;
    }
    for (const [, farm] of watchFarms) farm.translate(s, vas, accs, n, pa, st);
    for (let r = 0; r < watchRounds; r++) {
      for (const [label, farm] of r % 2 === 0 ? watchFarms : [...watchFarms].reverse()) {
        const b0 = farm.unitStats()[0]!;
        for (let b = 0; b < batches; b++) farm.translate(s, vas, accs, n, pa, st);
        const b1 = farm.unitStats()[0]!;
        // Throughput inside the unit (translations per busy second): what polling slows down.
        watch[label].push((b1.translations - b0.translations) / ((b1.busyMs - b0.busyMs) / 1000));
      }
    }
    for (const [, farm] of watchFarms) await farm.close();
  }
  const watchCost = 1 - spread(watch.poll).median / spread(watch.never).median;

  // ---- A shared TLB (mmu600-shared: one 2048-entry main TLB in shared memory for all units)
  // against private main TLBs (mmu600), maxUnits units, requests written in place. Unit u
  // translates stream u. Two workloads: the 64-page hot set (what a shared lookup costs when
  // the micro-TLBs miss), and a working set that moves: every batch, each unit translates
  // `batch` requests over the same window of `win` pages, each unit in its own random order,
  // and the next batch moves to the next window (16 windows in turn, far more pages than
  // the TLBs hold). With private TLBs every unit walks every page of a window; with a shared
  // one, mostly only the first unit to touch it.
  const sharedRows: Array<{ workload: string; preset: string; translationsPerSec: Spread; walksPerTranslation: Spread }> = [];
  const win = Math.min(1024, w.vas.length >> 4);
  for (const sw of [
    { name: 'hot set (64 pages)', moving: false },
    { name: `working set of ${win} pages, moving every batch`, moving: true },
  ]) {
    const period = sw.moving ? 16 * batch : 64;
    // Unit u's k-th request: window floor(k / batch), page (k x a_u + u) mod win in it (a_u odd, so each unit has its own order).
    const at = (u: number, k: number): number =>
      sw.moving ? w.vas[((Math.floor(k / batch) % 16) * win + ((k * (2 * u + 769) + u * 97) % win)) % w.vas.length]! : w.vas[k % 64]!;
    const unitVa = Array.from({ length: maxUnits }, (_, u) => Float64Array.from({ length: period + batch }, (_, k) => at(u, k % period)));
    const unitSid = Array.from({ length: maxUnits }, (_, u) => new Int32Array(batch).fill(u));
    for (const preset of ['mmu600', 'mmu600-shared']) {
      const farm = await Farm.start({ mem: w.mem, units: maxUnits, cache: CACHE_PRESETS[preset]!, distribution: 'affinity', capacity: batch });
      farm.loadConfig(smmu, sids);
      const r = timedRounds(`shared TLB rows, ${sw.name}, ${preset}`, farm, inPlaceFeeder(farm, unitSid, unitVa, period, batch, false), batch, batches, rounds, batches);
      await farm.close();
      const t = spread(r.tps);
      sharedRows.push({ workload: sw.name, preset, translationsPerSec: t, walksPerTranslation: spread(r.walks) });
      process.stderr.write(`bench:farm: ${sw.name}, ${preset}, ${maxUnits} units: ${fmt(t.median / 1e6, 2)} M/s, ${fmt(spread(r.walks).median, 3)} walks per translation\n`);
    }
  }

  const loopIter = tiny ? 1e7 : quick ? 5e7 : 2e8;
  const bare1 = await bareLoop(1, loopIter);
  const bareN = await bareLoop(maxUnits, loopIter);
  const m = machine();
  const figures = rows.flatMap((r) => [
    fromSpread('translations per second', 'translations/s', { workload: r.workload, units: r.units }, r.translationsPerSec),
    fromSpread('farm efficiency', '%', { workload: r.workload, units: r.units }, {
      median: 100 * r.efficiency.median,
      min: 100 * r.efficiency.min,
      max: 100 * r.efficiency.max,
      runs: r.efficiency.runs,
    }),
  ]);
  figures.push(measured('bare worker_threads loop speedup', 'x', { threads: maxUnits }, [bareN / bare1]));
  for (const r of syncRows) {
    figures.push(measured('TLBI + sync round trip p50', 'us', { strategy: r.strategy, units: syncUnits }, [r.p50]));
    figures.push(measured('TLBI + sync round trip p99', 'us', { strategy: r.strategy, units: syncUnits }, [r.p99]));
  }
  figures.push(measured('cost of watching for invalidations', '%', { pollEvery: DEFAULT_POLL_EVERY }, [100 * watchCost]));
  for (const r of sharedRows) {
    figures.push(fromSpread('shared TLB: translations per second', 'translations/s', { workload: r.workload, preset: r.preset, units: maxUnits }, r.translationsPerSec));
    figures.push(fromSpread('shared TLB: walks per translation', 'walks', { workload: r.workload, preset: r.preset, units: maxUnits }, r.walksPerTranslation));
  }
  const json: BenchDoc = {
    schema: BENCH_SCHEMA,
    suite: 'farm',
    benchmark: 'farm',
    command: commandLine('bench:farm', mode),
    config: { mode, workload: 'nested-4k-1g', fraction, rounds, batchesPerRound: batches, batch, units: unitCounts, distribution: 'affinity' },
    headline: { title: 'Farm throughput: translations per second, by number of translation units', metric: 'translations per second', x: 'units', series: 'workload' },
    figures,
    machine: m,
    rounds,
    batchesPerRound: batches,
    batch,
    rows,
    bareLoopSpeedup: { threads: maxUnits, speedup: bareN / bare1 },
    syncRoundTripUs: syncRows,
    waitAsyncSettles,
    watchCost,
    sharedTlb: sharedRows,
  };
  const md = [
    '# Farm benchmark',
    '',
    `Command: \`${json.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    `Medians of ${rounds} rounds of ${batches} batches of ${batch} translations per unit (affinity distribution), after one untimed warm-up round; min-max beside them.`,
    '',
    '| workload | units | translations/s | min-max | speedup over 1 unit | farm efficiency |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.workload} | ${r.units} | ${fmt(r.translationsPerSec.median / 1e6, 2)} M | ${fmt(r.translationsPerSec.min / 1e6, 2)}-${fmt(r.translationsPerSec.max / 1e6, 2)} M | ${fmt(r.speedup, 2)}x | ${fmt(100 * r.efficiency.median, 1)}% |`,
    ),
    '',
    '"Written in place": the caller writes each unit\'s requests straight into that unit\'s queue in shared memory and reads the results there, filling the next batch while the units translate this one (`Farm.queue`, `submitQueued`, `waitQueued`: two slots per queue); ' +
      'through `translate()`, the farm copies each batch into the units\' queues by stream ID and copies the results back, on the calling thread. ' +
      '"Requests resident": the same queues, written once and resubmitted, so the caller only rings doorbells and waits: the farm\'s own hand-over cost.',
    '',
    `In the same run, a bare worker_threads ALU loop on ${maxUnits} threads reached ${fmt(bareN / bare1, 2)}x one thread: what this machine gave any ${maxUnits} threads at the time.`,
    '',
    `## TLBI + sync round trip, every unit busy (${syncUnits} unit(s) translating; a probe thread publishes a leaf TLBI and syncs, ${probeCount} times per strategy)`,
    '',
    '| waiting strategy | p50 (us) | p99 (us) | max (us) |',
    '|---|---:|---:|---:|',
    ...syncRows.map((r) => `| ${r.strategy} | ${fmt(r.p50, 1)} | ${fmt(r.p99, 1)} | ${fmt(r.max, 1)} |`),
    '',
    waitAsyncSettles
      ? ''
      : `Atomics.waitAsync: its promise did not settle within 500 ms on Node ${process.version}, so it was not measured.`,
    '',
    `Cost of watching for invalidations (a busy unit polls every ${DEFAULT_POLL_EVERY} translations) on the hit path: ${fmt(100 * watchCost, 1)}% of throughput inside the unit (median of ${watchRounds} rounds, alternated with a farm that never polls within a batch).`,
    '',
    `## A shared TLB against private ones (${maxUnits} units, requests written in place; unit u translates stream u)`,
    '',
    '`mmu600`: each unit has its own 2048-entry main TLB. `mmu600-shared`: one 2048-entry main TLB in shared memory for all units (micro-TLBs and walk caches stay private).',
    '',
    '| workload | caches | translations/s | min-max | walks per translation |',
    '|---|---|---:|---:|---:|',
    ...sharedRows.map((r) => `| ${r.workload} | ${r.preset} | ${fmt(r.translationsPerSec.median / 1e6, 2)} M | ${fmt(r.translationsPerSec.min / 1e6, 2)}-${fmt(r.translationsPerSec.max / 1e6, 2)} M | ${fmt(r.walksPerTranslation.median, 3)} |`),
    '',
  ].join('\n');
  publish('farm', json, md, outDir);
}

runMain('farm', main);
