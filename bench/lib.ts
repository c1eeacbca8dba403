/** Shared bench helpers: the machine description and result files. */

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export { machine, type Machine } from '../src/bench/machine.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number;
}

export function spread(values: number[]): Spread {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, runs: v.length };
}

export function writeResults(name: string, json: unknown, markdown: string, dir = 'results'): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(json, null, 2) + '\n');
  writeFileSync(join(dir, `${name}.md`), markdown);
}

/** Writes DIR/NAME.json and DIR/NAME.md (writeResults) and prints the Markdown: how every benchmark program ends. */
export function publish(name: string, json: unknown, markdown: string, dir = 'results'): void {
  writeResults(name, json, markdown, dir);
  process.stdout.write(markdown);
}

/** Runs a benchmark program's `main`; a failure prints `bench:LABEL failed:` with its stack and exits 1. */
export function runMain(label: string, main: () => void | Promise<void>): void {
  Promise.resolve()
    .then(main)
    .catch((e: unknown) => {
      process.stderr.write(`bench:${label} failed: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    });
}

/** The value after option `name` on the command line (`--rounds 5`), or `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : dflt;
}

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}

/** full, --quick, or --tiny (the smallest configuration, for tests: its figures mean little). */
export type BenchMode = 'full' | 'quick' | 'tiny';

export function benchMode(argv: readonly string[] = process.argv): BenchMode {
  return argv.includes('--tiny') ? 'tiny' : argv.includes('--quick') ? 'quick' : 'full';
}

/** The flag that selects `mode` (for child processes), if any. */
export function modeArgs(mode: BenchMode): string[] {
  return mode === 'full' ? [] : [`--${mode}`];
}

/**
 * The command line recorded in results: `smmu-farm bench` sets SMMU_BENCH_COMMAND
 * when it runs a benchmark program; run directly, it is the npm script.
 */
export function commandLine(script: string, mode: BenchMode): string {
  const fromCli = process.env.SMMU_BENCH_COMMAND;
  if (fromCli !== undefined && fromCli !== '') return fromCli;
  return `npm run ${script}${mode === 'full' ? '' : ` -- --${mode}`}`;
}
