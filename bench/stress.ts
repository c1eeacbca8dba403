/**
 * `npm run bench:stress -- [--seconds S] [--workers N] [--caches PRESET] [--name NAME] [--out DIR]`:
 * one run of the stress tester (src/farm/stress.ts) recorded as DIR/NAME.json (the report of
 * `smmu-farm stress --json`, with the command line and the machine) and DIR/NAME.md (a table).
 * Defaults: 180 s, units = cores - 1 (at least 1), mmu600, name `stress`, DIR `results`.
 * Exits 1 if the run found a violation (the files are written first).
 */

import { cpus } from 'node:os';
import { runStress } from '../src/farm/stress.js';
import { arg, machine, publish, runMain } from './lib.js';

const int = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const seconds = Number(arg('--seconds', '180'));
  const workers = Number(arg('--workers', String(Math.max(1, cpus().length - 1))));
  const caches = arg('--caches', 'mmu600');
  const name = arg('--name', 'stress');
  const outDir = arg('--out', 'results');
  if (!(seconds > 0)) throw new Error(`--seconds must be a positive number, got ${arg('--seconds', '')}`);
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be a positive integer, got ${arg('--workers', '')}`);
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`--name must be letters, digits and dashes, got "${name}"`);
  const given = process.argv.slice(2).join(' ');
  const command = `npm run bench:stress${given === '' ? '' : ` -- ${given}`}`;
  process.stderr.write(`bench:stress: ${seconds} s, ${workers} unit(s), caches ${caches} ...\n`);
  const r = await runStress({ seconds, workers, caches });
  const m = machine();
  const ops = r.operations;
  const md = [
    '# Stress run',
    '',
    `Command: \`${command}\` (the same run as \`npx smmu-farm stress --seconds ${seconds} --workers ${workers} --caches ${caches} --json\`). Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date}.`,
    '',
    '| | |',
    '|---|---:|',
    `| seconds | ${r.seconds} |`,
    `| translation units / mutators | ${r.workers} / ${r.mutators} |`,
    `| caches | ${r.caches} |`,
    `| translations | ${int(r.translations)} (${int(r.translationsPerSecond)}/s, ${(100 * r.hitRate).toFixed(1)}% cache hits) |`,
    `| table changes | ${int(r.changes)} (map ${int(ops.map)}, unmap ${int(ops.unmap)}, remap ${int(ops.remap)}, protect ${int(ops.protect)}, table ${int(ops.table)}) |`,
    `| invalidations | ${int(r.invalidations)} |`,
    `| syncs | ${int(r.syncs)} |`,
    `| sync latency | p50 ${r.syncLatencyUs.p50.toFixed(1)} µs, p99 ${r.syncLatencyUs.p99.toFixed(1)} µs, max ${r.syncLatencyUs.max.toFixed(1)} µs |`,
    `| violations | **${r.violations}** (stale ${r.violationsByKind.stale}, future ${r.violationsByKind.future}, torn ${r.violationsByKind.torn}) |`,
    '',
    'Every translation was checked against the history of the tables it walked (see src/farm/stress.ts). About half of the requests deliberately target pages that are being unmapped, broken or made read-only, so faults are expected; a fault is a violation only if no table state the translation may have seen explains it.',
    '',
  ].join('\n');
  publish(name, { benchmark: 'stress', command, machine: m, ...r }, md, outDir);
  if (r.violations > 0) process.exitCode = 1;
}

runMain('stress', main);
