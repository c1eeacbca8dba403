/**
 * `smmu-farm trace convert IN OUT`, `trace gen PRESET|CONFIG.json --count N
 * --seed S -o FILE`, `trace info FILE [--json]` and `trace presets [--json]`:
 * DMA traces (src/workload). Formats come from the extensions: .smtr (binary)
 * and .jsonl (JSON lines).
 *
 * Exit status: 0 on success; 1 when an input trace or config file is
 * malformed or unreadable (the message names the file and the record, line or
 * JSON path); 2 for a usage problem (an unknown preset or file extension).
 */

import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  TraceError,
  UnknownWorkloadError,
  WORKLOAD_PRESETS,
  WorkloadConfigError,
  buildGenerator,
  convertTrace,
  formatVa,
  presetConfig,
  recordTrace,
  resolveConfig,
  traceFormatOf,
  traceInfo,
  workloadPresetNames,
  type ResolvedConfig,
} from '../workload/index.js';

export interface TraceIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: TraceIo = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

/** `trace convert`: returns the exit status. */
export function traceConvert(input: string, output: string, io: TraceIo = stdio): number {
  try {
    traceFormatOf(output);
  } catch (e) {
    io.err(`error: ${(e as Error).message}`);
    return 2;
  }
  try {
    const n = convertTrace(input, output);
    io.out(`${input} -> ${output}: ${n} records`);
    return 0;
  } catch (e) {
    if (e instanceof TraceError) {
      io.err(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

export interface GenOptions {
  count: number;
  seed?: number;
  out: string;
  sizes: boolean;
}

/** `trace gen`: records a preset (or a JSON config file) into a trace; returns the exit status. */
export function traceGen(what: string, opts: GenOptions, io: TraceIo = stdio): number {
  try {
    traceFormatOf(opts.out);
  } catch (e) {
    io.err(`error: ${(e as Error).message}`);
    return 2;
  }
  let resolved: ResolvedConfig;
  const seed = opts.seed === undefined ? {} : { seed: opts.seed };
  if (what.toLowerCase().endsWith('.json')) {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(what, 'utf8'));
    } catch (e) {
      io.err(`error: ${what}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
      return 1;
    }
    try {
      resolved = resolveConfig(doc, seed);
    } catch (e) {
      if (e instanceof WorkloadConfigError) {
        io.err(`error: ${what}: ${e.message}`);
        return 1;
      }
      throw e;
    }
  } else {
    try {
      resolved = resolveConfig(presetConfig(what), seed);
    } catch (e) {
      if (e instanceof UnknownWorkloadError || e instanceof WorkloadConfigError) {
        io.err(`error: ${e.message}`);
        return 2;
      }
      throw e;
    }
  }
  const meta = { generator: 'smmu-farm trace gen', source: what, seed: resolved.seed, config: resolved };
  try {
    const n = recordTrace(buildGenerator(resolved), opts.out, { count: opts.count, sizes: opts.sizes, meta });
    io.out(`${opts.out}: ${n} records of ${what} (seed ${resolved.seed})`);
    return 0;
  } catch (e) {
    if (e instanceof TraceError) {
      io.err(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

function pct(n: number, of: number): string {
  return of === 0 ? '0.0%' : `${((100 * n) / of).toFixed(1)}%`;
}

function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** `trace info`: returns the exit status. */
export function traceInfoCommand(file: string, opts: { json?: boolean }, io: TraceIo = stdio): number {
  let info;
  try {
    info = traceInfo(file);
  } catch (e) {
    if (e instanceof TraceError) {
      io.err(`error: ${e.message}`);
      return e.where === null && /unknown trace format/.test(e.problem) ? 2 : 1;
    }
    throw e;
  }
  if (opts.json) {
    io.out(
      JSON.stringify({
        ...info,
        streams: info.streams.map((s) => ({ ...s, vaMin: formatVa(s.vaMin), vaMax: formatVa(s.vaMax) })),
      }),
    );
    return 0;
  }
  const n = info.count;
  io.out(`${file}: ${info.format === 'binary' ? 'binary' : 'JSON lines'} smmu-trace/1, ${n} records, ${info.sizes ? 'with' : 'without'} sizes`);
  if (info.meta !== null) {
    const m = JSON.stringify(info.meta);
    io.out(`meta: ${m.length > 200 ? m.slice(0, 197) + '...' : m}`);
  }
  io.out(`mix: r ${info.r} (${pct(info.r, n)}), w ${info.w} (${pct(info.w, n)}), x ${info.x} (${pct(info.x, n)})`);
  io.out(`footprint: ${info.footprintPages} pages of 4 KiB (${bytes(info.footprintPages * 4096)})${info.sizes ? `; ${bytes(info.bytes)} transferred` : ''}`);
  io.out(`streams: ${info.streams.length}`);
  for (const s of info.streams) {
    io.out(
      `  sid 0x${s.sid.toString(16)}: ${s.count} records (${pct(s.count, n)}), r ${pct(s.r, s.count)} w ${pct(s.w, s.count)} x ${pct(s.x, s.count)}, ` +
        `${s.pages} pages, va ${formatVa(s.vaMin)}..${formatVa(s.vaMax)}`,
    );
  }
  return 0;
}

/** `trace presets`. */
export function tracePresets(opts: { json?: boolean }, io: TraceIo = stdio): number {
  for (const name of workloadPresetNames()) {
    const p = WORKLOAD_PRESETS[name]!;
    io.out(opts.json ? JSON.stringify({ name, description: p.description, config: p.config }) : `${name}: ${p.description}`);
  }
  return 0;
}

const count = (v: string): number => {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
};

const seed = (v: string): number => {
  const n = /^0x[0-9a-f]{1,8}$/i.test(v) ? parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n > 0xffffffff) throw new InvalidArgumentError('expected an integer from 0 to 4294967295.');
  return n;
};

/** The `trace` command with its subcommands. */
export function traceCommand(): Command {
  const trace = new Command('trace').description(
    'DMA traces: generate them from workload presets, convert between binary (.smtr) and JSON lines (.jsonl), and summarize them.',
  );
  trace
    .command('convert')
    .description('Convert a trace between binary (.smtr) and JSON lines (.jsonl); formats come from the extensions. Streams: traces of any size.')
    .argument('<in>', 'input trace (.smtr or .jsonl)')
    .argument('<out>', 'output trace (.smtr or .jsonl); deleted again if the input turns out malformed')
    .action((input: string, output: string) => {
      process.exitCode = traceConvert(input, output);
    });
  trace
    .command('gen')
    .description(
      `Record COUNT transactions of a workload into a trace. WORKLOAD is a preset (${workloadPresetNames().join(', ')}; see \`trace presets\`) ` +
        'or a JSON workload configuration file (*.json).',
    )
    .argument('<workload>', 'a preset name or a .json configuration file')
    .addOption(new Option('--count <n>', 'transactions to record').default(100000).argParser(count))
    .addOption(new Option('--seed <s>', "PRNG seed, 0..2^32-1 (default: the configuration's, 1 for presets)").argParser(seed))
    .requiredOption('-o, --out <file>', 'output trace (.smtr or .jsonl)')
    .option('--no-sizes', 'leave transaction sizes out of the records')
    .action((what: string, opts: GenOptions) => {
      process.exitCode = traceGen(what, opts);
    });
  trace
    .command('info')
    .description('Summarize a trace: records, streams (stream IDs), read/write/exec mix, footprint in 4 KiB pages, VA range per stream.')
    .argument('<file>', 'a trace (.smtr or .jsonl)')
    .option('--json', 'print one JSON object instead')
    .action((file: string, opts: { json?: boolean }) => {
      process.exitCode = traceInfoCommand(file, opts);
    });
  trace
    .command('presets')
    .description('List the workload presets (with --json, their configurations).')
    .option('--json', 'one {"name", "description", "config"} object per line')
    .action((opts: { json?: boolean }) => {
      process.exitCode = tracePresets(opts);
    });
  return trace;
}
