/**
 * `smmu-farm stress [--seconds S] [--workers N] [--mutators M] [--inject BUG]
 * [--json] [--seed N] [--caches PRESET] [--distribution affinity|dynamic] [--batch N]
 * [--topology T [--smmu NAME]]`: the stress tester
 * (src/farm/stress.ts). Mutator threads change live tables at both stages
 * while the farm's units translate with caches on, and every translation is
 * checked against the history of the tables.
 *
 * Exit status: 0 when no violation was found; 1 when one was (with --inject,
 * that is the expected outcome: the deliberately broken variant was caught);
 * 2 for a usage problem.
 */

import { availableParallelism } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { INJECT_MODES, isInjectMode } from '../farm/inject.js';
import { StressError, VIOLATION_KINDS, runStress, type StressOptions, type StressReport } from '../farm/stress.js';
import { int as num } from './format.js';

export interface StressCliOptions {
  seconds: number;
  workers?: number;
  mutators: number;
  inject?: string;
  json?: boolean;
  seed: number;
  caches: string;
  distribution?: 'affinity' | 'dynamic';
  batch: number;
  stopOnViolation?: boolean;
  topology?: string;
  smmu?: string;
}

export interface StressIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: StressIo = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

const int = (what: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${what} must be an integer, got "${v}"`);
  return n;
};

const us = (n: number): string => `${n.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 })} µs`;

/** The report as text lines. */
export function renderStress(r: StressReport): string[] {
  const ops = Object.entries(r.operations)
    .map(([k, v]) => `${k} ${num(v)}`)
    .join(', ');
  const kinds = VIOLATION_KINDS.map((k) => `${k} ${num(r.violationsByKind[k])}`).join(', ');
  const lines = [
    `smmu-farm stress: ${r.seconds.toFixed(2)} s, ${r.workers} translation unit${r.workers === 1 ? '' : 's'} (caches ${r.caches}, ${r.distribution}), ${r.mutators} mutator${r.mutators === 1 ? '' : 's'}, seed ${r.seed}${r.inject === null ? '' : `, injected bug: ${r.inject}`}`,
    `translations   ${num(r.translations).padStart(13)}  (${num(r.translationsPerSecond)}/s, ${(r.hitRate * 100).toFixed(1)}% cache hits, ${num(r.faults)} faults)`,
    `table changes  ${num(r.changes).padStart(13)}  (${ops})`,
    `invalidations  ${num(r.invalidations).padStart(13)}`,
    `syncs          ${num(r.syncs).padStart(13)}  (latency p50 ${us(r.syncLatencyUs.p50)}, p99 ${us(r.syncLatencyUs.p99)}, max ${us(r.syncLatencyUs.max)})`,
    `violations     ${num(r.violations).padStart(13)}  (${kinds})`,
  ];
  if (r.topology !== null) {
    const t = r.topology;
    const shown = t.devices.slice(0, 8).map((d) => `${d.device} (sid 0x${d.sid.toString(16)})`).join(', ');
    const more = (t.devices.length > 8 ? `, and ${t.devices.length - 8} more` : '') + (t.unattached > 0 ? ` (${t.unattached} more left unattached: SMRs exhausted)` : '');
    lines.splice(1, 0, `topology       ${t.name} (${t.source}), ${t.smmu}: ${t.devices.length} DMA device${t.devices.length === 1 ? '' : 's'}: ${shown}${more}`);
  }
  if (r.firstViolationSeconds !== null) lines.push(`first violation after ${r.firstViolationSeconds.toFixed(2)} s; examples:`);
  for (const e of r.examples) {
    lines.push(
      `  ${e.kind}: stream ${e.sid} ${e.access} ${e.va} stamped [${e.start}, ${e.end}] -> ${e.status === 0 ? `pa ${e.pa}` : `fault ${e.status} (${e.detail})`}`,
    );
  }
  return lines;
}

/** Runs `stress`; returns the exit status. */
export async function stressCommand(o: StressCliOptions, io: StressIo = stdio): Promise<number> {
  if (o.inject !== undefined && !isInjectMode(o.inject)) {
    io.err(`stress: --inject must be one of ${INJECT_MODES.join(', ')}, got "${o.inject}"`);
    return 2;
  }
  if (!(o.seconds > 0 && o.seconds <= 3600)) {
    io.err(`stress: --seconds must be in (0, 3600], got ${o.seconds}`);
    return 2;
  }
  const opts: StressOptions = {
    seconds: o.seconds,
    workers: o.workers ?? Math.max(1, availableParallelism() - 1),
    mutators: o.mutators,
    inject: o.inject !== undefined && isInjectMode(o.inject) ? o.inject : null,
    seed: o.seed,
    caches: o.caches,
    ...(o.distribution !== undefined ? { distribution: o.distribution } : {}),
    batch: o.batch,
    stopOnViolation: o.stopOnViolation === true,
    ...(o.topology !== undefined ? { topology: o.topology } : {}),
    ...(o.smmu !== undefined ? { smmu: o.smmu } : {}),
  };
  let r: StressReport;
  try {
    r = await runStress(opts);
  } catch (e) {
    if (e instanceof StressError) {
      io.err(`stress: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (o.json === true) io.out(JSON.stringify(r));
  else for (const l of renderStress(r)) io.out(l);
  return r.violations > 0 ? 1 : 0;
}

export function stressCommandSpec(): Command {
  return new Command('stress')
    .description(
      'Stress-test invalidation under concurrency: mutator threads map, unmap, remap and change permissions at both stages of a nested configuration (each change followed by its TLBIs and a sync) while the farm translates with caches on; every translation is checked against the history of the tables. Exit 1 if any violation is found.',
    )
    .addOption(new Option('--seconds <s>', 'how long to translate').default(5).argParser(Number))
    .addOption(new Option('--workers <n>', 'translation units (default: CPU cores - 1, at least 1)').argParser(int('--workers')))
    .addOption(new Option('--mutators <n>', 'mutator threads').default(1).argParser(int('--mutators')))
    .addOption(new Option('--inject <bug>', `run a deliberately broken variant: ${INJECT_MODES.join(', ')}`))
    .addOption(new Option('--seed <n>', 'seed of the tables, the changes and the requests').default(1).argParser(int('--seed')))
    .addOption(new Option('--caches <preset>', 'cache preset of every unit (one that caches)').default('mmu600'))
    .addOption(new Option('--distribution <d>', 'how requests go to units: affinity (stream s to unit s mod units, like TBUs) or dynamic (units take chunks of one queue)').choices(['affinity', 'dynamic']))
    .addOption(new Option('--batch <n>', 'translations per batch').default(2048).argParser(int('--batch')))
    .option('--stop-on-violation', 'stop at the first violation')
    .option('--topology <t>', "a topology preset or file: its SMMU's DMA devices carry the traffic, all attached to one nested domain (default: one built-in SMMU, stream IDs 0-7)")
    .option('--smmu <name>', 'with --topology, the SMMU to use (default: the first with an attachable DMA device)')
    .option('--json', 'print one JSON object: translations, changes, invalidations, syncs, violations, violationsByKind, syncLatencyUs {p50, p99, max}, workers, seconds, and more')
    .action(async (opts: StressCliOptions) => {
      process.exitCode = await stressCommand(opts);
    });
}
