/**
 * `smmu-farm bench SUITE [--quick | --tiny] [--json FILE] [--out DIR]`.
 *
 * Each implemented suite runs its compiled benchmark program
 * (`node dist/bench/PROGRAM.js [--quick|--tiny] --out DIR`, the same program
 * its npm script runs), then checks the JSON it wrote against the results
 * schema (src/bench/schema.ts) and draws DIR/NAME.svg from it
 * (src/bench/chart.ts). `papers` writes DIR/PAPERS.md (src/bench/papers.ts);
 * `all` runs every suite, then `papers`.
 *
 * Progress: on a terminal, a status line shows the suite running and its
 * program's latest progress line; elsewhere (CI, pipes) progress stays quiet,
 * and a failing program's last lines are shown with the failure. Ctrl-C stops
 * the suite in flight (its results files are left as they were: programs write
 * only at the end), keeps the suites already finished, and exits 130.
 *
 * Exit status: 0 when every suite ran and its results conform; 1 when a
 * benchmark failed or wrote results that do not conform; 2 for bad input (an
 * unknown suite, conflicting options); 130 when
 * interrupted.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { renderChart } from '../bench/chart.js';
import { buildPapers } from '../bench/papers.js';
import { validateBenchDoc, type BenchDoc, type Mode } from '../bench/schema.js';
import { SUITES } from '../bench/suites.js';
import { INTERRUPTED_STATUS, withInterrupt } from './interrupt.js';

export { SUITES, type SuiteDef } from '../bench/suites.js';

export function suitesHelp(): string {
  const w = Math.max(...SUITES.map((s) => s.name.length), 3) + 2;
  return [
    '',
    'Suites:',
    ...SUITES.map((s) => `  ${s.name.padEnd(w)}${s.description}`),
    `  ${'all'.padEnd(w)}every suite above, in that order (--quick: under a minute in all)`,
    '',
    'Each suite writes DIR/NAME.json (schema smmu-farm-bench/1), DIR/NAME.md and DIR/NAME.svg',
    '(atomics: atomic-read.*; papers: PAPERS.md, papers.json, papers.svg). DIR defaults to results.',
  ].join('\n');
}

export interface BenchOptions {
  quick?: boolean;
  tiny?: boolean;
  /** Also write the JSON document(s) to this file ('-': stdout). */
  json?: string;
  out?: string;
}

export interface BenchIo {
  out: (text: string) => void;
  err: (text: string) => void;
  /** A status line that rewrites itself (a terminal), or null: progress stays quiet (CI, pipes). */
  status: ((text: string) => void) | null;
}

const stdio: BenchIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  status: process.stderr.isTTY === true ? (t) => process.stderr.write(`\r\x1b[2K${t.slice(0, (process.stderr.columns ?? 100) - 1)}`) : null,
};

/** The compiled benchmark program, whether this module runs from dist/ or from the sources. */
function programPath(program: string): string {
  const root = new URL('../../', import.meta.url);
  const built = fileURLToPath(new URL(`bench/${program}.js`, root));
  return existsSync(built) || root.pathname.endsWith('/dist/') ? built : fileURLToPath(new URL(`dist/bench/${program}.js`, root));
}

/**
 * Runs one benchmark program. Its Markdown (stdout) goes to `forward`; its progress lines
 * (stderr) to `progress` (a terminal's status line) and are kept, so that a failure can
 * show how the program ended. Aborting `signal` sends it SIGINT.
 */
function runProgram(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  forward: (t: string) => void,
  progress: ((line: string) => void) | null,
  signal: AbortSignal | undefined,
): Promise<{ status: number; stderrTail: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => forward(chunk));
    let tail = '';
    child.stderr.on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-4000);
      if (progress !== null) {
        const lines = chunk.split('\n').filter((l) => l.trim() !== '');
        if (lines.length > 0) progress(lines[lines.length - 1]!);
      }
    });
    const onAbort = (): void => {
      child.kill('SIGINT');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.once('error', reject);
    child.once('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      resolve({ status: code ?? (sig !== null ? 128 + (sig === 'SIGINT' ? 2 : 9) : 1), stderrTail: tail });
    });
  });
}

/** Runs `bench SUITE`; returns the exit status. */
export async function runBench(suite: string | undefined, opts: BenchOptions, io: BenchIo = stdio, signal?: AbortSignal): Promise<number> {
  const known = [...SUITES.map((s) => s.name), 'all'];
  if (suite === undefined || suite === '') {
    io.err(`bench: give a SUITE: one of ${known.join(', ')} (see smmu-farm bench --help)\n`);
    return 2;
  }
  if (!known.includes(suite)) {
    io.err(`bench: unknown suite "${suite}"; suites: ${known.join(', ')}\n`);
    return 2;
  }
  if (opts.quick === true && opts.tiny === true) {
    io.err('bench: --quick and --tiny exclude each other\n');
    return 2;
  }
  if (opts.json !== undefined && opts.json.trim() === '') {
    io.err('bench: --json needs a FILE (or - for standard output)\n');
    return 2;
  }
  const mode: Mode = opts.tiny === true ? 'tiny' : opts.quick === true ? 'quick' : 'full';
  const out = opts.out ?? 'results';
  try {
    mkdirSync(out, { recursive: true });
  } catch (e) {
    io.err(`bench: cannot create the output folder ${out}: ${(e as Error).message}\n`);
    return 2;
  }
  const modeFlag = mode === 'full' ? [] : [`--${mode}`];
  const outFlag = out === 'results' ? [] : ['--out', out];
  // Benchmark programs print their Markdown; keep stdout clean when the JSON goes there.
  const forward = opts.json === '-' ? io.err : io.out;

  const list = suite === 'all' ? SUITES : SUITES.filter((s) => s.name === suite);
  const docs: Record<string, BenchDoc> = {};
  const failures: string[] = [];
  const t0 = performance.now();
  const aborted = (): boolean => signal?.aborted === true;
  const done: string[] = [];
  let interruptedIn: string | null = null;
  for (const [index, s] of list.entries()) {
    if (aborted()) {
      interruptedIn ??= s.name;
      break;
    }
    const started = performance.now();
    const command = ['smmu-farm bench', s.name, ...modeFlag, ...outFlag].join(' ');
    let doc: BenchDoc;
    const written: string[] = [];
    if (s.program !== undefined) {
      const file = programPath(s.program);
      if (!existsSync(file)) {
        failures.push(`${s.name}: ${file} is missing (build first: npm run build)`);
        continue;
      }
      io.err(`bench ${s.name}: node ${file} ${[...modeFlag, '--out', out].join(' ')}\n`);
      const show = io.status;
      const progress = show === null ? null : (line: string): void => show(`[${index + 1}/${list.length} ${s.name} ${((performance.now() - started) / 1000).toFixed(0)} s] ${line}`);
      const r = await runProgram(file, [...modeFlag, '--out', out], { ...process.env, SMMU_BENCH_COMMAND: command }, forward, progress, signal);
      if (show !== null) show('');
      if (aborted()) {
        interruptedIn = s.name;
        break;
      }
      if (r.status !== 0) {
        failures.push(`${s.name}: the benchmark program exited with status ${r.status}; it ended with:\n${r.stderrTail.trimEnd().split('\n').slice(-15).map((l) => `    ${l}`).join('\n')}`);
        continue;
      }
      const jsonFile = join(out, `${s.result}.json`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(jsonFile, 'utf8'));
      } catch (e) {
        failures.push(`${s.name}: cannot read ${jsonFile}: ${(e as Error).message}`);
        continue;
      }
      const errs = validateBenchDoc(parsed);
      if (errs.length > 0) {
        failures.push(`${s.name}: ${jsonFile} does not conform to the results schema:\n    ${errs.slice(0, 10).join('\n    ')}${errs.length > 10 ? `\n    ... and ${errs.length - 10} more` : ''}`);
        continue;
      }
      doc = parsed as BenchDoc;
      written.push(jsonFile, join(out, `${s.result}.md`));
    } else {
      io.err(`bench ${s.name}: computing ...\n`);
      let md: string;
      try {
        const p = buildPapers({ mode, dir: out, command });
        doc = p.doc;
        md = p.markdown;
      } catch (e) {
        failures.push(`${s.name}: ${(e as Error).message}`);
        continue;
      }
      const errs = validateBenchDoc(doc);
      if (errs.length > 0) {
        failures.push(`${s.name}: its document does not conform to the results schema: ${errs.join('; ')}`);
        continue;
      }
      writeFileSync(join(out, 'papers.json'), JSON.stringify(doc, null, 2) + '\n');
      writeFileSync(join(out, 'PAPERS.md'), md);
      written.push(join(out, 'papers.json'), join(out, 'PAPERS.md'));
      forward(md);
    }
    const svg = join(out, `${s.result}.svg`);
    writeFileSync(svg, renderChart(doc));
    written.push(svg);
    for (const c of doc.charts ?? []) {
      const file = join(out, `${s.result}-${c.name}.svg`);
      writeFileSync(file, renderChart(doc, { chart: c }));
      written.push(file);
    }
    docs[s.name] = doc;
    done.push(s.name);
    io.err(`bench ${s.name}: wrote ${written.join(', ')} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
  }
  if (suite === 'all') io.err(`bench all (${mode}): ${list.length - failures.length} of ${list.length} suites in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  if (opts.json !== undefined && Object.keys(docs).length > 0) {
    const value = suite === 'all' ? { suites: docs } : docs[suite];
    const text = JSON.stringify(value, null, 2) + '\n';
    if (opts.json === '-') io.out(text);
    else {
      try {
        writeFileSync(opts.json, text);
      } catch (e) {
        failures.push(`--json: cannot write ${opts.json}: ${(e as Error).message}`);
      }
    }
  }
  for (const f of failures) io.err(`bench: ${f}\n`);
  if (interruptedIn !== null) {
    io.err(
      `bench: interrupted during ${interruptedIn}: its results files were left as they were` +
        (done.length > 0 ? `; kept the results of ${done.join(', ')}` : '; no suite had finished') +
        '\n',
    );
    return INTERRUPTED_STATUS;
  }
  return failures.length > 0 ? 1 : 0;
}

/** Registers `bench` on a program. */
export function benchCommand(): Command {
  return new Command('bench')
    .description('Run a benchmark suite: writes DIR/SUITE.json (configuration, machine, every figure with median, min and max), DIR/SUITE.md and DIR/SUITE.svg.')
    .argument('[suite]', 'the suite (below)')
    .option('--quick', 'the short configuration (all of them together: under a minute)')
    .option('--tiny', 'the smallest configuration, for tests: it checks the machinery; its figures mean little')
    .option('--json <file>', 'also write the results document to FILE (- for standard output); for `all`, {"suites": {NAME: document}}')
    .option('--out <dir>', 'the output folder', 'results')
    .addHelpText('after', suitesHelp())
    .action(async (suite: string | undefined, opts: BenchOptions) => {
      process.exitCode = await withInterrupt('bench', (signal) => runBench(suite, opts, stdio, signal));
    });
}
