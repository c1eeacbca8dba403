/**
 * `npm run profile -- SUITE [--tool flame|doctor|cpu|all] [--tiny | --full] [--dest DIR]`
 * (issue F item 4): runs one benchmark suite's program under a profiler,
 * unattended, and says where the reports went.
 *
 * - `flame`: clinic flame (a flame graph of the main thread's stacks),
 *   HTML under results/profiles/SUITE/.
 * - `doctor`: clinic doctor (event-loop delay, CPU, memory, handles over
 *   time); the default adds it for `farm`, whose main thread waits on workers.
 * - `cpu`: V8's own sampling profiler (`node --cpu-prof`), one .cpuprofile
 *   per thread, the farm's worker threads included (clinic flame sees only
 *   the main thread). They open in Chrome DevTools (Performance, "Load
 *   profile"); this program also prints the functions with the most self time
 *   in each thread, so the hot path can be read without a browser.
 *
 * The default is `flame` and `cpu` (and `doctor` for farm), on the suite's
 * --quick configuration. clinic runs with NO_INSIGHT=1 and --open=false: it
 * asks nothing and opens nothing. The suite writes its figures under
 * results/profiles/SUITE/results/, never over results/: a profiled run's
 * timings are distorted by the profiler. results/profiles/ is ignored by git;
 * --dest DIR writes to DIR/SUITE/ instead.
 *
 * Exit status: 0 when every requested profile was written, 1 when one failed,
 * 2 for bad usage.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SUITES, suiteNamed } from '../src/bench/suites.js';

type Tool = 'flame' | 'doctor' | 'cpu';

/** Self time that is a thread waiting, not working. */
const WAITING = new Set(['(idle)', 'spawnSync', 'execFileSync', '(program)']);
const TOOLS: readonly Tool[] = ['flame', 'doctor', 'cpu'];

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A path as the user should read it: relative inside the project, absolute outside. */
function shown(p: string): string {
  const r = relative(ROOT, p);
  return r.startsWith('..') ? p : r;
}

function usage(msg: string): never {
  const names = SUITES.filter((s) => s.program !== undefined).map((s) => s.name);
  process.stderr.write(`profile: ${msg}\nusage: npm run profile -- SUITE [--tool flame|doctor|cpu|all] [--tiny | --full] [--dest DIR]\n  SUITE: ${names.join(', ')}\n`);
  process.exit(2);
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ status: number; output: string }> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const take = (c: Buffer): void => {
      output += c.toString('utf8');
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.once('error', rej);
    child.once('close', (code, signal) => res({ status: code ?? (signal !== null ? 128 : 1), output }));
  });
}

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: CpuNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

export interface HotFunction {
  name: string;
  where: string;
  selfMs: number;
  share: number;
}

/** Self time per function of one .cpuprofile, most first (idle time left out). */
export function hotFunctions(profile: CpuProfile, root = ROOT): { totalMs: number; functions: HotFunction[] } {
  const totalHits = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0);
  const totalMs = (profile.endTime - profile.startTime) / 1000;
  const byKey = new Map<string, HotFunction>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (hits === 0 || n.callFrame.functionName === '(idle)') continue;
    const url = n.callFrame.url;
    const file = url.startsWith('file://') ? relative(root, fileURLToPath(url)) : url;
    const name = n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName;
    const where = file === '' ? '' : `${file}:${n.callFrame.lineNumber + 1}`;
    const key = `${name}@${where}`;
    const ms = totalHits > 0 ? (hits / totalHits) * totalMs : 0;
    const f = byKey.get(key);
    if (f === undefined) byKey.set(key, { name, where, selfMs: ms, share: 0 });
    else f.selfMs += ms;
  }
  const functions = [...byKey.values()].sort((a, b) => b.selfMs - a.selfMs);
  for (const f of functions) f.share = totalMs > 0 ? f.selfMs / totalMs : 0;
  return { totalMs, functions };
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const suiteName = argv.find((a, i) => !a.startsWith('--') && argv[i - 1] !== '--tool' && argv[i - 1] !== '--dest');
  if (suiteName === undefined) usage('give a SUITE');
  const suite = suiteNamed(suiteName);
  if (suite === undefined || suite.program === undefined) usage(`no benchmark program for suite "${suiteName}"`);
  const ti = argv.indexOf('--tool');
  const toolArg = ti >= 0 ? argv[ti + 1] : undefined;
  if (ti >= 0 && (toolArg === undefined || ![...TOOLS, 'all'].includes(toolArg))) usage(`--tool takes flame, doctor, cpu or all, got ${JSON.stringify(toolArg)}`);
  const tools: Tool[] = toolArg === 'all' ? [...TOOLS] : toolArg !== undefined ? [toolArg as Tool] : suite.name === 'farm' ? ['flame', 'doctor', 'cpu'] : ['flame', 'cpu'];
  if (argv.includes('--tiny') && argv.includes('--full')) usage('--tiny and --full exclude each other');
  const mode = argv.includes('--tiny') ? '--tiny' : argv.includes('--full') ? null : '--quick';

  const program = join(ROOT, 'dist', 'bench', `${suite.program}.js`);
  if (!existsSync(program)) {
    process.stderr.write(`profile: ${program} is missing: run npm run build first\n`);
    return 1;
  }
  const clinic = join(ROOT, 'node_modules', '.bin', 'clinic');
  const di = argv.indexOf('--dest');
  if (di >= 0 && (argv[di + 1] === undefined || argv[di + 1]!.startsWith('--'))) usage('--dest needs a folder');
  const dir = di >= 0 ? resolve(argv[di + 1]!, suite.name) : resolve(ROOT, 'results', 'profiles', suite.name);
  mkdirSync(dir, { recursive: true });
  const progArgs = [program, ...(suite.profileArgs ?? []), ...(mode === null ? [] : [mode]), '--out', join(dir, 'results')];
  const env: NodeJS.ProcessEnv = { ...process.env, NO_INSIGHT: '1', SMMU_BENCH_COMMAND: `npm run profile -- ${suite.name}` };
  const written: string[] = [];
  let failed = 0;

  for (const tool of tools) {
    process.stderr.write(`profile ${suite.name}: ${tool} ...\n`);
    if (tool === 'cpu') {
      const cpuDir = join(dir, 'cpuprofile');
      rmSync(cpuDir, { recursive: true, force: true });
      // Worker threads get their own files (child processes would not: see SuiteDef.profileArgs).
      const r = await run(process.execPath, ['--cpu-prof', '--cpu-prof-dir', cpuDir, ...progArgs], env, ROOT);
      const files = existsSync(cpuDir) ? readdirSync(cpuDir).filter((f) => f.endsWith('.cpuprofile')).sort() : [];
      if (r.status !== 0 || files.length === 0) {
        process.stderr.write(`profile ${suite.name}: node --cpu-prof failed (status ${r.status}):\n${r.output.slice(-2000)}\n`);
        failed++;
        continue;
      }
      const lines = [`Hot functions (self time) of \`${suite.name}\`, ${mode ?? 'full'} configuration, node --cpu-prof; one section per thread, busiest first.`, ''];
      const threads = files.map((f) => ({ f, ...hotFunctions(JSON.parse(readFileSync(join(cpuDir, f), 'utf8')) as CpuProfile) }));
      // A thread's own work: its time not idle and not blocked waiting on a child process.
      const own = (t: (typeof threads)[number]): number => t.functions.filter((x) => !WAITING.has(x.name)).reduce((a, x) => a + x.selfMs, 0);
      threads.sort((a, b) => own(b) - own(a));
      for (const t of threads) {
        lines.push(`${t.f}: ${t.totalMs.toFixed(0)} ms profiled, ${own(t).toFixed(0)} ms working`);
        for (const h of t.functions.slice(0, own(t) < 50 ? 3 : 12)) lines.push(`  ${(100 * h.share).toFixed(1).padStart(5)}%  ${h.selfMs.toFixed(0).padStart(6)} ms  ${h.name}  ${h.where}`);
        lines.push('');
      }
      const hot = join(dir, 'hot-functions.txt');
      writeFileSync(hot, lines.join('\n'));
      process.stdout.write(lines.join('\n'));
      written.push(`${shown(cpuDir)}/ (${files.length} .cpuprofile files: open in Chrome DevTools > Performance > Load profile)`, shown(hot));
      continue;
    }
    for (const f of readdirSync(dir)) if (f.includes(`.clinic-${tool}`)) rmSync(join(dir, f), { recursive: true, force: true });
    const r = await run(clinic, [tool, '--open=false', '--dest', dir, '--', process.execPath, ...progArgs], env, ROOT);
    const m = /Generated HTML file is (file:\/\/\S+|\S+\.html)/.exec(r.output);
    if (r.status !== 0 || m === null) {
      process.stderr.write(`profile ${suite.name}: clinic ${tool} failed (status ${r.status}):\n${r.output.slice(-2000)}\n`);
      failed++;
      continue;
    }
    const html = m[1]!.startsWith('file://') ? fileURLToPath(m[1]!) : resolve(ROOT, m[1]!);
    written.push(`${shown(html)} (clinic ${tool}: open in a browser)`);
  }
  process.stderr.write(`profile ${suite.name}: wrote\n${written.map((w) => `  ${w}\n`).join('')}the suite's own figures (distorted by the profiler) are under ${shown(join(dir, 'results'))}/\n`);
  return failed > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (status) => process.exit(status),
    (e: unknown) => {
      process.stderr.write(`profile failed: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
