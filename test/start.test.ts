/**
 * The default job (`npm start` = `smmu-farm start`, issue F item 5) and Ctrl-C
 * (item 6): a short default job reports and writes conforming results; SIGINT
 * stops `start` and `run` cleanly with status 130 and keeps what was measured.
 */

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { figure, validateBenchDoc, type BenchDoc } from '../src/bench/schema.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));

/** Runs the CLI, sends SIGINT after `afterMs`, and resolves with its status and output. */
function interrupted(args: string[], afterMs: number): Promise<{ status: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), afterMs);
    child.once('error', reject);
    child.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

describe('smmu-farm start (the default job)', () => {
  it('runs the default and both baselines, explains them, and writes conforming results', () => {
    const out = mkdtempSync(join(tmpdir(), 'smmu-start-'));
    const r = spawnSync(process.execPath, [CLI, 'start', '--seconds', '4', '--units', '2', '--out', out], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/server/);
    const rows = r.stdout.split('\n').filter((l) => /^\| (MMU-600|baseline)/.test(l));
    expect(rows).toHaveLength(3);
    const doc = JSON.parse(readFileSync(join(out, 'default.json'), 'utf8')) as BenchDoc;
    expect(validateBenchDoc(doc)).toEqual([]);
    expect(doc.config.interrupted).toBe(false);
    const runs = ['MMU-600-like caches, 2 units', 'baseline: no caches, 2 units', 'baseline: MMU-600-like caches, 1 unit'];
    for (const run of runs) {
      expect(figure(doc, 'translations/s', { run }).median).toBeGreaterThan(0);
      expect(figure(doc, 'stale translations', { run }).median).toBe(0);
    }
    // Without caches every translation is a full nested walk (24 reads; a fault on an unmapped page reads fewer).
    const none = figure(doc, 'descriptor reads per translation', { run: runs[1]! }).median;
    expect(none).toBeGreaterThan(23.5);
    expect(none).toBeLessThanOrEqual(24);
    // With the mmu600 caches, far fewer.
    expect(figure(doc, 'descriptor reads per translation', { run: runs[0]! }).median).toBeLessThan(8);
    expect(readFileSync(join(out, 'default.svg'), 'utf8')).toMatch(/^<svg/);
    expect(readFileSync(join(out, 'default.md'), 'utf8')).toContain('| baseline: no caches, 2 units');
  }, 90_000);

  it('rejects bad options with status 2', () => {
    const r = spawnSync(process.execPath, [CLI, 'start', '--seconds', '0', '--no-write'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--seconds: expected a number of seconds from 1 to 3600, got "0"/);
  });

  it('Ctrl-C stops it cleanly: status 130, the phase measured so far reported and written', async () => {
    const out = mkdtempSync(join(tmpdir(), 'smmu-start-int-'));
    const r = await interrupted(['start', '--seconds', '120', '--units', '2', '--out', out], 4000);
    expect(r.status, r.stderr).toBe(130);
    expect(r.ms).toBeLessThan(30_000);
    expect(r.stderr).toMatch(/interrupted; stopping cleanly/);
    expect(r.stdout).toMatch(/interrupted after/);
    const doc = JSON.parse(readFileSync(join(out, 'default.json'), 'utf8')) as BenchDoc;
    expect(validateBenchDoc(doc)).toEqual([]);
    expect(doc.config.interrupted).toBe(true);
    expect(figure(doc, 'translations/s', { run: 'MMU-600-like caches, 2 units' }).median).toBeGreaterThan(0);
  }, 60_000);
});

describe('smmu-farm run: Ctrl-C', () => {
  it('stops after the batch in flight, prints the report of what ran, and exits 130', async () => {
    const r = await interrupted(['run', '--seconds', '120', '--units', '1'], 3000);
    expect(r.status, r.stderr).toBe(130);
    expect(r.stdout).toMatch(/throughput: +[\d.]+ [kM]? ?translations\/s/);
    expect(r.stderr).toMatch(/interrupted after [\d,]+ translations/);
  }, 60_000);
});

describe('smmu-farm bench: Ctrl-C', () => {
  it('stops the suite in flight, keeps the suites already finished, leaves the interrupted one unwritten, and exits 130', async () => {
    const out = mkdtempSync(join(tmpdir(), 'smmu-bench-int-'));
    const r = await interrupted(['bench', 'all', '--tiny', '--out', out], 3000);
    expect(r.status, r.stderr).toBe(130);
    const m = /bench: interrupted during (\w+): its results files were left as they were(?:; kept the results of ([\w, ]+)|; no suite had finished)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const kept = m![2] === undefined ? [] : m![2].split(', ');
    const files = readdirSync(out);
    for (const s of kept) expect(files.some((f) => f.endsWith('.svg') && (f.startsWith(s) || (s === 'atomics' && f.startsWith('atomic-read')))), s).toBe(true);
    expect(files.filter((f) => f.endsWith('.svg'))).toHaveLength(kept.length);
    expect(files).not.toContain(`${m![1]}.svg`);
  }, 60_000);
});
