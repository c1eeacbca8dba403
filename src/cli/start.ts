/**
 * `smmu-farm start` (what `npm start` runs; issue F item 5): the default job.
 *
 * A representative benchmark on an embedded default: nested translation (a
 * guest's stage 1 over KVM's stage 2, 4 KiB pages) of a mixed DMA workload
 * (NIC receive rings with page-pool recycling, storage, an accelerator with a
 * Zipf hot set) from devices of the `server` topology's first SMMU, through
 * the translation farm with the MMU-600-like cache preset on every core, for
 * about a minute, while the host driver unmaps and remaps a page (TLBIVA +
 * TLBSYNC) every few batches. Two short baselines in the same run put the
 * figure in context: the same farm with no caches (what the caches buy) and
 * the same caches on one unit (what the cores buy).
 *
 * Prints a compact table and what it means; writes DIR/default.json (schema
 * smmu-farm-bench/1), DIR/default.md and DIR/default.svg. A progress bar goes
 * to stderr on a terminal only. Ctrl-C stops the phase in flight, skips the
 * rest and still reports and writes what was measured (exit status 130).
 *
 * Exit status: 0; 1 when a translation of an unmapped, invalidated page
 * returned the old translation or the results cannot be written; 2 for bad
 * options; 130 when interrupted.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { renderChart } from '../bench/chart.js';
import { machine } from '../bench/machine.js';
import { BENCH_SCHEMA, validateBenchDoc, type BenchDoc, type Figure } from '../bench/schema.js';
import { RunError, runWorkload, type RunReport } from '../run/run.js';
import { presetConfig, type RingConfig, type StorageConfig, type WorkloadConfig, type ZipfConfig } from '../workload/index.js';
import { int, pct, progressBar, rate, table } from './format.js';
import { INTERRUPTED_STATUS, withInterrupt } from './interrupt.js';

export const START_DEFAULTS = { seconds: 60, topology: 'server', caches: 'mmu600', invalidateEvery: 16, seed: 1 };

/**
 * The mixed workload: four NIC queues (the `ring-pagepool` preset), two storage
 * streams and two accelerator streams, interleaved in runs of 8 with weights
 * 4:2:1 per kind. Reads and writes only: the tables map data pages, without
 * execute permission.
 */
export function defaultWorkload(): WorkloadConfig {
  const nic = presetConfig('ring-pagepool') as RingConfig;
  const storage = presetConfig('storage-mix') as StorageConfig;
  const zipf = presetConfig('zipf-0.99') as ZipfConfig;
  const base = Number(nic.base);
  // Each NIC queue has its own buffers (16 MiB apart); storage and accelerators share the 1 GiB above them.
  const streams: WorkloadConfig[] = [
    ...[0, 1, 2, 3].map((q) => ({ ...nic, base: base + q * 16 * 2 ** 20, sid: 0x100 + q, weight: 4 })),
    ...[0, 1].map((q) => ({ ...storage, sid: 0x200 + q, weight: 2 })),
    ...[0, 1].map((q) => ({ ...zipf, pages: 65536, sid: 0x300 + q, weight: 1 })),
  ];
  return { kind: 'interleave', order: 'weighted', run: 8, streams };
}

export interface StartOptions {
  seconds?: string;
  units?: string;
  out?: string;
  write?: boolean;
}

interface Phase {
  key: 'default' | 'no-caches' | 'one-unit';
  label: string;
  caches: string;
  units: number;
  share: number;
}

export async function startCommand(o: StartOptions, signal?: AbortSignal): Promise<number> {
  const err = (l: string): boolean => process.stderr.write(l + '\n');
  const out = (l: string): boolean => process.stdout.write(l + '\n');
  const seconds = o.seconds === undefined ? START_DEFAULTS.seconds : Number(o.seconds);
  if (!(Number.isFinite(seconds) && seconds >= 1 && seconds <= 3600)) {
    err(`start: --seconds: expected a number of seconds from 1 to 3600, got "${o.seconds}"`);
    return 2;
  }
  const cores = availableParallelism();
  const units = o.units === undefined ? Math.min(cores, 64) : Number(o.units);
  if (!(Number.isInteger(units) && units >= 1 && units <= 64)) {
    err(`start: --units: expected an integer from 1 to 64, got "${o.units}"`);
    return 2;
  }
  const dir = o.out ?? 'results';
  const phases: Phase[] = [
    { key: 'default', label: `MMU-600-like caches, ${units} unit${units === 1 ? '' : 's'}`, caches: START_DEFAULTS.caches, units, share: units > 1 ? 0.7 : 0.85 },
    { key: 'no-caches', label: `baseline: no caches, ${units} unit${units === 1 ? '' : 's'}`, caches: 'none', units, share: 0.15 },
  ];
  if (units > 1) phases.push({ key: 'one-unit', label: 'baseline: MMU-600-like caches, 1 unit', caches: START_DEFAULTS.caches, units: 1, share: 0.15 });

  const tty = process.stderr.isTTY === true;
  out(`smmu-farm default job: nested translation (a guest's stage 1 over KVM's stage 2, 4 KiB pages at both stages) of a mixed DMA`);
  out(`workload (4 NIC queues with page-pool rings, 2 storage streams, 2 accelerators with a Zipf hot set) from devices behind the first`);
  out(`SMMU of the \`${START_DEFAULTS.topology}\` topology, translated by ${units} translation unit${units === 1 ? '' : 's'} (worker threads; this machine has ${cores} cores), while the`);
  out(`driver unmaps and remaps a page (TLBIVA + TLBSYNC) every ${START_DEFAULTS.invalidateEvery} batches. About ${seconds} s in all; two short baselines follow.`);
  out('');

  const reports: Array<{ phase: Phase; report: RunReport }> = [];
  const t0 = performance.now();
  let doneShare = 0;
  let lastDraw = 0;
  for (const [i, phase] of phases.entries()) {
    if (signal?.aborted === true) break;
    const phaseSeconds = Math.max(0.5, seconds * phase.share);
    let report: RunReport;
    try {
      report = await runWorkload({
        workload: defaultWorkload(),
        topology: START_DEFAULTS.topology,
        caches: phase.caches,
        units: phase.units,
        distribution: 'affinity',
        seconds: phaseSeconds,
        seed: START_DEFAULTS.seed,
        invalidateEvery: START_DEFAULTS.invalidateEvery,
        ...(signal !== undefined ? { signal } : {}),
        onProgress: tty
          ? (p): void => {
              const now = performance.now();
              if (now - lastDraw < 100) return;
              lastDraw = now;
              const f = doneShare + phase.share * (p.fraction ?? 0);
              process.stderr.write(`\r\x1b[2K${progressBar(f)}  ${i + 1}/${phases.length} ${phase.label}: ${rate(p.translations / Math.max(p.elapsedMs / 1000, 1e-9))} translations/s`);
            }
          : undefined,
      });
    } catch (e) {
      if (tty) process.stderr.write('\r\x1b[2K');
      if (e instanceof RunError) {
        err(`start: ${e.message}`);
        return e.status;
      }
      throw e;
    }
    doneShare += phase.share;
    reports.push({ phase, report });
    if (!tty) err(`start: ${i + 1}/${phases.length} ${phase.label}: ${rate(report.translationsPerSecond)} translations/s`);
  }
  if (tty) process.stderr.write('\r\x1b[2K');
  const interrupted = signal?.aborted === true;
  const wallS = (performance.now() - t0) / 1000;

  const first = reports[0]?.report;
  if (first === undefined) {
    err('start: interrupted before anything was measured; nothing written');
    return INTERRUPTED_STATUS;
  }
  const base = first.translationsPerSecond;
  // Time the units spent translating over the time they had: the rest they waited for the main thread.
  const busy = (r: RunReport): number => r.perUnit.reduce((a, u) => a + u.busyMs, 0) / Math.max(1e-9, r.units * r.seconds * 1000);
  const rows = reports.map(({ phase, report: r }) => [
    phase.label,
    rate(r.translationsPerSecond),
    phase.key === 'default' ? '1.00x' : `${(base / Math.max(r.translationsPerSecond, 1e-9)).toFixed(2)}x`,
    r.caches === 'none' ? '-' : pct(r.hitRate),
    r.descriptorReadsPerTranslation.toFixed(2),
    int(r.faults),
    `${int(r.invalidations.issued)} / ${int(r.invalidations.syncs)}`,
    int(r.invalidations.staleTranslations),
    pct(busy(r)),
  ]);
  const head = ['run', 'translations/s', 'default is', 'hit rate', 'reads/translation', 'faults', 'TLBIs / syncs', 'stale', 'units busy'];
  const lines = table(head, rows);
  const devices = new Set(first.topology.streams.map((s) => s.device));
  const meaning: string[] = [];
  meaning.push(
    `- ${rate(first.translationsPerSecond)} translations/s: ${int(first.translations)} DMA accesses from ${first.topology.streams.length} streams (${devices.size} devices on ${first.topology.smmu}) translated in ${first.seconds.toFixed(1)} s; ` +
      `tables of ${int(first.tables.pages)} pages of 4 KiB (${(first.tables.pages / 256).toFixed(0)} MiB mapped).`,
  );
  meaning.push(
    `- Caches: ${pct(first.hitRate)} of translations needed no walk, and ${first.descriptorReadsPerTranslation.toFixed(2)} descriptor reads per translation remained (a nested walk without caches reads up to 24).`,
  );
  const nc = reports.find((r) => r.phase.key === 'no-caches')?.report;
  if (nc !== undefined) {
    const x = base / nc.translationsPerSecond;
    // Unit time per translation: what a translation costs inside a unit, hand-over excluded.
    const ns = (r: RunReport): number => (r.perUnit.reduce((a, u) => a + u.busyMs, 0) * 1e6) / Math.max(1, r.translations);
    meaning.push(
      `- Without caches every translation walks: ${nc.descriptorReadsPerTranslation.toFixed(2)} reads per translation; with them the default runs ${x.toFixed(2)}x as fast. ` +
        `Inside the units a translation took ${ns(first).toFixed(0)} ns with the caches and ${ns(nc).toFixed(0)} ns walking every time: ` +
        `${ns(first) < 0.8 * ns(nc) ? 'the caches pay off' : 'in this model a miss pays for the cache lookups, a walk through the walk caches and the fills, which on this workload cancels what the hits save'}.`,
    );
  }
  if (busy(first) < 0.8) {
    meaning.push(
      `- The units were busy ${pct(busy(first))} of the time; the rest they waited between batches, while the main thread generated the next batch, handed it over and collected the results. ` +
        'This end-to-end figure is bounded by that hand-over as much as by translation; results/farm.md measures the units alone.',
    );
  }
  const one = reports.find((r) => r.phase.key === 'one-unit')?.report;
  if (one !== undefined) meaning.push(`- Cores: ${units} units translate ${(base / one.translationsPerSecond).toFixed(2)}x as much as one (streams go to units by stream ID, like TBUs).`);
  meaning.push(
    `- Invalidation: ${int(first.invalidations.events)} unmap/remap events, ${int(first.invalidations.unmappedAccesses)} accesses to a page while it was unmapped, all of which faulted ` +
      `(${int(first.invalidations.staleTranslations)} stale translations); these are the faults counted above.`,
  );
  out(lines.join('\n'));
  out('');
  for (const m of meaning) out(m);
  if (interrupted) out(`\n(interrupted after ${wallS.toFixed(1)} s: ${reports.length} of ${phases.length} runs measured, the last one cut short)`);

  const stale = reports.reduce((a, r) => a + r.report.invalidations.staleTranslations, 0);
  if (o.write !== false) {
    const figures: Figure[] = reports.flatMap(({ phase, report: r }) => {
      const params = { run: phase.label, caches: r.caches, units: r.units };
      const one1 = (metric: string, unit: string, v: number): Figure => ({ metric, unit, params, median: v, min: v, max: v, runs: 1 });
      return [
        one1('translations/s', 'translations/s', r.translationsPerSecond),
        one1('hit rate', '%', 100 * r.hitRate),
        one1('descriptor reads per translation', 'reads', r.descriptorReadsPerTranslation),
        one1('faults', 'faults', r.faults),
        one1('stale translations', 'translations', r.invalidations.staleTranslations),
      ];
    });
    const m = machine();
    const doc: BenchDoc = {
      schema: BENCH_SCHEMA,
      suite: 'default',
      command: `npm start${o.seconds !== undefined ? ` -- --seconds ${o.seconds}` : ''}`,
      config: {
        mode: 'full',
        seconds,
        topology: START_DEFAULTS.topology,
        smmu: first.topology.smmu,
        caches: START_DEFAULTS.caches,
        units,
        distribution: 'affinity',
        workload: 'mixed: 4 NIC page-pool rings, 2 storage, 2 Zipf accelerators (interleave, runs of 8, weights 4:2:1)',
        invalidateEvery: START_DEFAULTS.invalidateEvery,
        seed: START_DEFAULTS.seed,
        interrupted,
      },
      machine: m,
      figures,
      headline: { title: `Default job: translations/s of a mixed DMA workload on the ${START_DEFAULTS.topology} topology, and two baselines`, metric: 'translations/s', x: 'run' },
      runs: reports.map(({ phase, report }) => ({ key: phase.key, label: phase.label, report })),
    };
    const problems = validateBenchDoc(doc);
    if (problems.length > 0) {
      err(`start: internal error, the results document does not conform: ${problems.join('; ')}`);
      return 1;
    }
    const md = [
      '# Default job (`npm start`)',
      '',
      `Command: \`${doc.command}\`. Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}. One run of each row, ${wallS.toFixed(0)} s in all.`,
      '',
      ...lines,
      '',
      ...meaning,
      '',
    ].join('\n');
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'default.json'), JSON.stringify(doc, null, 2) + '\n');
      writeFileSync(join(dir, 'default.md'), md);
      writeFileSync(join(dir, 'default.svg'), renderChart(doc));
    } catch (e) {
      err(`start: cannot write the results to ${dir}: ${(e as Error).message}`);
      return 1;
    }
    out(`\nWrote ${join(dir, 'default.json')}, ${join(dir, 'default.md')} and ${join(dir, 'default.svg')}.`);
  }
  if (stale > 0) {
    err(`start: ${stale} translations of unmapped, invalidated pages returned the old translation`);
    return 1;
  }
  return interrupted ? INTERRUPTED_STATUS : 0;
}

export function startCommandSpec(): Command {
  return new Command('start')
    .description(
      'The default job (npm start): a mixed DMA workload through the farm on the server topology with MMU-600-like caches on every core, ' +
        'about a minute, then two short baselines (no caches; one unit). Writes DIR/default.json, .md and .svg. Ctrl-C stops early and keeps what was measured.',
    )
    .option('--seconds <s>', `about how long, all runs together (default ${START_DEFAULTS.seconds})`)
    .option('--units <n>', 'translation units (default: the available cores)')
    .option('--out <dir>', 'where the results go', 'results')
    .option('--no-write', 'print only; write no results files')
    .action(async (o: StartOptions) => {
      process.exitCode = await withInterrupt('start', (signal) => startCommand(o, signal));
    });
}
