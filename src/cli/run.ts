/**
 * `smmu-farm run [--workload PRESET|FILE.json | --trace FILE] [--topology PRESET|FILE]
 * [--smmu NAME] [--caches PRESET] [--units N] [--distribution affinity|dynamic]
 * [--seconds S | --count N] [--seed N] [--invalidate-every N] [--json]`: a DMA
 * workload through the translation farm over a topology (src/run/run.ts says how
 * a run is put together).
 *
 * Output: a readable report on stdout, or with --json one JSON object (the
 * RunReport). A progress line goes to stderr only when stderr is a terminal and
 * --json is not given.
 *
 * Exit status: 0 after a run; 1 when an input is malformed or unusable (a trace,
 * a topology or workload file, an attach that fails) or when a translation
 * returned a page that had been unmapped and invalidated (a stale translation);
 * 2 for a usage problem (a bad option value, an unknown preset, conflicting
 * options); 130 when Ctrl-C stopped the run early (the report covers what was
 * translated until then).
 */

import { Command } from 'commander';
import { presetNames } from '../cache/presets.js';
import { RUN_DEFAULTS, RunError, runWorkload, type RunOptions, type RunProgress, type RunReport } from '../run/run.js';
import { PRESET_NAMES as TOPOLOGY_PRESET_NAMES } from '../topology/presets.js';
import { workloadPresetNames } from '../workload/index.js';
import { bytes, hex, int, pct, progressBar, rate, table } from './format.js';
import { INTERRUPTED_STATUS, withInterrupt } from './interrupt.js';

export interface RunCliOptions {
  workload?: string;
  trace?: string;
  topology?: string;
  smmu?: string;
  caches?: string;
  units?: string;
  distribution?: string;
  seconds?: string;
  count?: string;
  seed?: string;
  invalidateEvery?: string;
  layers?: string | boolean;
  json?: boolean;
}

export interface RunIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Progress text (a line that rewrites itself), or null for none. */
  progress: ((text: string) => void) | null;
}

function defaultIo(json: boolean): RunIo {
  const tty = process.stderr.isTTY === true && !json;
  return {
    out: (l) => process.stdout.write(l + '\n'),
    err: (l) => process.stderr.write(l + '\n'),
    progress: tty ? (t) => process.stderr.write(`\r\x1b[2K${t}`) : null,
  };
}

function parseInteger(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new RunError(`${flag}: expected an integer from ${min} to ${max}, got "${v}"`, 2);
  return n;
}

function parseSeconds(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = /^(\d+(\.\d*)?|\.\d+)$/.test(v) ? Number(v) : NaN;
  if (!(n > 0 && n <= 86400)) throw new RunError(`--seconds: expected a number of seconds in (0, 86400], got "${v}"`, 2);
  return n;
}

/** Command-line options to library options (RunError for bad values). */
export function toRunOptions(o: RunCliOptions): RunOptions {
  if (o.distribution !== undefined && o.distribution !== 'affinity' && o.distribution !== 'dynamic') {
    throw new RunError(`--distribution: expected affinity or dynamic, got "${o.distribution}"`, 2);
  }
  if (o.seconds !== undefined && o.count !== undefined) throw new RunError('give --seconds or --count, not both', 2);
  if (o.workload !== undefined && o.trace !== undefined) throw new RunError('give --workload or --trace, not both', 2);
  const r: RunOptions = {};
  if (o.workload !== undefined) r.workload = o.workload;
  if (o.trace !== undefined) r.trace = o.trace;
  if (o.topology !== undefined) r.topology = o.topology;
  if (o.smmu !== undefined) r.smmu = o.smmu;
  if (o.caches !== undefined) r.caches = o.caches;
  if (o.distribution !== undefined) r.distribution = o.distribution;
  const units = parseInteger('--units', o.units, 1, 64);
  if (units !== undefined) r.units = units;
  const seconds = parseSeconds(o.seconds);
  if (seconds !== undefined) r.seconds = seconds;
  const count = parseInteger('--count', o.count, 1, Number.MAX_SAFE_INTEGER);
  if (count !== undefined) r.count = count;
  const seed = parseInteger('--seed', o.seed, 0, 0xffffffff);
  if (seed !== undefined) r.seed = seed;
  const every = parseInteger('--invalidate-every', o.invalidateEvery, 1, Number.MAX_SAFE_INTEGER);
  if (every !== undefined) r.invalidateEvery = every;
  if (o.layers !== undefined && o.layers !== false) {
    r.layers = o.layers === true ? LAYERS_DEFAULT : parseInteger('--layers', o.layers, 1000, 1 << 24)!;
  }
  return r;
}

/** Requests timed by a bare --layers. */
export const LAYERS_DEFAULT = 1 << 18;

/** The readable report. */
export function formatReport(r: RunReport): string[] {
  const out: string[] = [];
  const lim = r.limit.kind === 'count' ? `${int(r.limit.value!)} translations` : r.limit.kind === 'seconds' ? `${r.limit.value} s` : 'the whole trace';
  out.push(
    `smmu-farm run: ${r.workload.source.startsWith('trace:') ? `trace ${r.workload.name} (tables seed ${r.workload.seed})` : `workload ${r.workload.name} (seed ${r.workload.seed})`} on ${r.topology.smmu} of topology ${r.topology.name}, caches ${r.caches}, ` +
      `${r.units} unit${r.units === 1 ? '' : 's'} (${r.distribution}), ${lim}`,
  );
  const shown = r.topology.streams.slice(0, 8);
  for (const a of shown) out.push(`  workload stream ${hex(a.workloadSid)} -> ${a.device}, stream ID ${hex(a.sid)} (group ${a.group})`);
  if (r.topology.streams.length > shown.length) out.push(`  ... and ${r.topology.streams.length - shown.length} more streams`);
  out.push(
    `  nested tables: ${int(r.tables.pages)} pages of 4 KiB (${bytes(r.tables.pages * 4096)}) in ${r.tables.regions} region${r.tables.regions === 1 ? '' : 's'}, ` +
      `built in ${r.tables.buildMs.toFixed(0)} ms; farm started in ${r.farmStartMs.toFixed(0)} ms`,
  );
  out.push('');
  const rows = r.perUnit.map((u) => [
    String(u.unit),
    int(u.translations),
    u.translations - u.aborts > 0 ? pct(u.hitRate) : '-',
    u.walksPerTranslation.toFixed(3),
    u.descriptorReadsPerTranslation.toFixed(2),
    int(u.faults),
    int(u.aborts),
    int(u.invalidationsApplied),
    `${u.busyMs.toFixed(0)} ms`,
  ]);
  rows.push([
    'all',
    int(r.translations),
    pct(r.hitRate),
    r.walksPerTranslation.toFixed(3),
    r.descriptorReadsPerTranslation.toFixed(2),
    int(r.faults),
    int(r.aborts),
    int(r.invalidations.applied),
    `${r.perUnit.reduce((a, u) => a + u.busyMs, 0).toFixed(0)} ms`,
  ]);
  out.push(...table(['unit', 'translations', 'hit rate', 'walks/tr', 'reads/tr', 'faults', 'aborts', 'inv. applied', 'busy'], rows));
  out.push('');
  out.push(`throughput:        ${rate(r.translationsPerSecond)} translations/s (${int(r.translations)} in ${r.seconds.toFixed(2)} s)`);
  out.push(`hit rate:          ${pct(r.hitRate)} of translations answered without a walk`);
  out.push(`descriptor reads:  ${r.descriptorReadsPerTranslation.toFixed(2)} per translation (${r.walksPerTranslation.toFixed(3)} walks per translation)`);
  const kinds = Object.entries(r.faultsByKind).filter(([, n]) => n > 0);
  out.push(`faults:            ${int(r.faults)}${kinds.length > 0 ? ` (${kinds.map(([k, n]) => `${k} ${int(n)}`).join(', ')})` : ''}; aborts: ${int(r.aborts)}`);
  const inv = r.invalidations;
  out.push(
    `invalidations:     ${int(inv.issued)} TLBIs published, ${int(inv.syncs)} syncs, ${int(inv.applied)} applied by units` +
      (inv.events > 0 ? `; ${int(inv.events)} unmap/remap events, ${int(inv.unmappedAccesses)} accesses to unmapped pages, ${int(inv.staleTranslations)} stale` : ''),
  );
  const idle = r.perUnit.filter((u) => u.translations === 0).length;
  if (idle > 0 && r.distribution === 'affinity') {
    out.push(`note: affinity sends stream ID s to unit s mod ${r.units}; ${idle} of ${r.units} units got no requests (--distribution dynamic spreads them)`);
  }
  if (r.layers !== null) {
    const L = r.layers;
    out.push('');
    out.push(
      `time per layer of the SMMU model (--layers): ${int(L.transactions)} requests through smmu.dma() on one thread, caches ${r.caches}, after as many to warm them; ` +
        `clock reads (${L.clockNs.toFixed(0)} ns each) taken off`,
    );
    out.push(
      ...table(
        ['layer', 'transactions', 'ns each', 'ns per transaction', 'share'],
        L.rows.map((x) => [x.layer, int(x.count), x.count > 0 ? x.nsEach.toFixed(1) : '-', x.nsPerTransaction.toFixed(1), pct(x.share)]),
      ),
    );
  }
  return out;
}

/** Runs `smmu-farm run`; returns the exit status. */
export async function runCommand(o: RunCliOptions, io: RunIo = defaultIo(o.json === true), signal?: AbortSignal): Promise<number> {
  let report: RunReport;
  try {
    const opts = toRunOptions(o);
    if (signal !== undefined) opts.signal = signal;
    if (io.progress !== null) {
      const show = io.progress;
      let last = 0;
      opts.onProgress = (p: RunProgress): void => {
        const now = performance.now();
        if (now - last < 100 && p.fraction !== 1) return;
        last = now;
        show(`${progressBar(p.fraction ?? 0)}  ${int(p.translations)} translations, ${rate(p.translations / Math.max(p.elapsedMs / 1000, 1e-9))}/s`);
      };
    }
    try {
      report = await runWorkload(opts);
    } finally {
      if (io.progress !== null) io.progress('');
    }
  } catch (e) {
    if (e instanceof RunError) {
      io.err(`error: ${e.message}`);
      return e.status;
    }
    throw e;
  }
  if (o.json === true) io.out(JSON.stringify(report));
  else for (const l of formatReport(report)) io.out(l);
  if (report.invalidations.staleTranslations > 0) {
    io.err(`error: ${report.invalidations.staleTranslations} translations of unmapped, invalidated pages returned the old translation`);
    return 1;
  }
  if (report.interrupted) {
    io.err(`interrupted after ${report.translations} translations (${report.seconds.toFixed(2)} s): the figures above cover them`);
    return INTERRUPTED_STATUS;
  }
  return 0;
}

/** The `run` command. */
export function runCommandSpec(): Command {
  return new Command('run')
    .description(
      'Run a DMA workload (a preset, a JSON configuration or a trace) over a topology with a caching strategy through the translation farm, ' +
        'for a time or a count. Prints throughput, hit rates, descriptor reads per translation, faults, aborts and invalidations ' +
        '(--json: one object). Exit 0 after a run, 1 for a bad input file or a stale translation, 2 for bad options.',
    )
    .option('--workload <preset|file>', `a workload preset (${workloadPresetNames().join(', ')}) or a JSON configuration file (default ${RUN_DEFAULTS.workload})`)
    .option('--trace <file>', 'a trace (.smtr or .jsonl) instead of a workload')
    .option('--topology <preset|file>', `a topology preset (${TOPOLOGY_PRESET_NAMES.join(', ')}) or an smmu-topology/1 file (default ${RUN_DEFAULTS.topology})`)
    .option('--smmu <name>', "the topology's SMMU to run on (default: the first with an attachable device)")
    .option('--caches <preset>', `the caching configuration of every unit: ${presetNames().join(', ')} (default ${RUN_DEFAULTS.caches})`)
    .option('--units <n>', 'translation units (worker threads), 1..64 (default: the available cores)')
    .option('--distribution <policy>', `affinity (stream s to unit s mod N, like TBUs) or dynamic (default ${RUN_DEFAULTS.distribution})`)
    .option('--seconds <s>', `run for this long (default ${RUN_DEFAULTS.seconds}; a trace stops at its end)`)
    .option('--count <n>', 'translate this many requests')
    .option('--seed <n>', `seed of the workload and of the table layout (default ${RUN_DEFAULTS.seed})`)
    .option('--invalidate-every <n>', 'every N batches, unmap a page for one batch (TLBI + sync), then map it again')
    .option('--layers [n]', `after the run, time each layer of the SMMU model (stream match, cache hit, walk, fault handling) over the first n requests (default ${LAYERS_DEFAULT}) on one thread`)
    .option('--json', 'print one JSON object instead of the report')
    .exitOverride((e) => {
      // Commander's own usage errors (unknown option, missing value) exit 2 like ours; help and version exit 0.
      process.exit(e.exitCode === 0 ? 0 : 2);
    })
    .action(async (o: RunCliOptions) => {
      process.exitCode = await withInterrupt('run', (signal) => runCommand(o, undefined, signal));
    });
}
