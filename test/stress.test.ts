/**
 * The stress tester: short runs are clean (no violation, and real work on
 * both sides: translations, table changes of every kind, invalidations,
 * syncs), and every deliberately broken variant (--inject) is caught, with the
 * kind of violation it must produce. Seeds fix the tables, the mutators'
 * choices and the requests; the interleaving is the machine's, so an inject
 * run goes until the first violation or 20 s, and the test asserts it was
 * caught.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { INJECT_MODES, type InjectMode } from '../src/farm/inject.js';
import { runStress } from '../src/farm/stress.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const RECORD = fileURLToPath(new URL('../dist/bench/stress.js', import.meta.url));

describe('stress: the correct protocol is clean', () => {
  it('2 units, affinity, mmu600: no violation, and every kind of change happened', async () => {
    // Table operations are made more frequent than the default so that a slow machine still sees some.
    const r = await runStress({ seconds: 3, workers: 2, mutators: 1, seed: 11, caches: 'mmu600', mix: { table: 0.05 } });
    expect(r.violations).toBe(0);
    expect(r.violationsByKind).toEqual({ stale: 0, future: 0, torn: 0 });
    expect(r.examples).toEqual([]);
    expect(r.translations).toBeGreaterThan(50_000);
    expect(r.changes).toBeGreaterThan(300);
    expect(r.syncs).toBeGreaterThan(100);
    expect(r.invalidations).toBeGreaterThan(r.syncs); // stage-2 changes publish TLBIIPAS2 + TLBIVMID
    for (const op of ['map', 'unmap', 'remap', 'protect', 'table'] as const) expect(r.operations[op]).toBeGreaterThan(0);
    expect(r.faults).toBeGreaterThan(0); // unmapped pages, broken tables and read-only pages were translated too
    expect(r.hitRate).toBeGreaterThan(0); // with caches on
    expect(r.syncLatencyUs.p50).toBeLessThanOrEqual(r.syncLatencyUs.p99);
    expect(r.syncLatencyUs.p99).toBeLessThanOrEqual(r.syncLatencyUs.max);
  });

  it('2 mutators, dynamic distribution, split caches (mmu500): no violation', async () => {
    const r = await runStress({ seconds: 2, workers: 2, mutators: 2, seed: 12, caches: 'mmu500', distribution: 'dynamic' });
    expect(r.violations).toBe(0);
    expect(r.changes).toBeGreaterThan(200);
    expect(r.translations).toBeGreaterThan(50_000);
  });

  it('2 units sharing one TLB in shared memory (mmu600-shared): no violation', async () => {
    const r = await runStress({ seconds: 2, workers: 2, mutators: 1, seed: 13, caches: 'mmu600-shared' });
    expect(r.violations).toBe(0);
    expect(r.changes).toBeGreaterThan(200);
    expect(r.translations).toBeGreaterThan(50_000);
    expect(r.hitRate).toBeGreaterThan(0);
  });
});

describe('stress: every injected bug is caught', () => {
  // What each broken variant must be caught as: a translation that began after a sync
  // reflecting what the sync's invalidations removed (stale), or a descriptor that was never
  // written (torn).
  const expected: Record<InjectMode, 'stale' | 'torn'> = { 'skip-ack': 'stale', 'early-sync': 'stale', 'late-fill': 'stale', 'torn-read': 'torn' };
  for (const inject of INJECT_MODES) {
    it(`--inject ${inject}`, async () => {
      const r = await runStress({ seconds: 20, workers: 1, seed: 21, inject, stopOnViolation: true });
      expect(r.inject).toBe(inject);
      expect(r.violations).toBeGreaterThan(0);
      expect(r.violationsByKind[expected[inject]]).toBeGreaterThan(0);
      expect(r.firstViolationSeconds).not.toBeNull();
      expect(r.examples[0]!.kind).toBe(expected[inject]);
    });
  }

  it('--inject late-fill with 2 units on a shared TLB (mmu600-shared)', async () => {
    const r = await runStress({ seconds: 20, workers: 2, seed: 22, caches: 'mmu600-shared', inject: 'late-fill', stopOnViolation: true });
    expect(r.violationsByKind.stale).toBeGreaterThan(0);
  });
});

describe('smmu-farm stress (CLI)', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'stress', ...args], { encoding: 'utf8' });

  it('--json prints one object with the documented fields, and exits 0 when clean', () => {
    const r = run('--seconds', '1', '--workers', '1', '--seed', '3', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.length > 0);
    expect(lines).toHaveLength(1);
    const o = JSON.parse(lines[0]!) as Record<string, unknown>;
    for (const k of ['translations', 'changes', 'invalidations', 'syncs', 'violations', 'workers', 'seconds']) expect(typeof o[k], k).toBe('number');
    expect(o.violations).toBe(0);
    expect(o.workers).toBe(1);
    expect(o.translations as number).toBeGreaterThan(0);
    expect(o.violationsByKind).toEqual({ stale: 0, future: 0, torn: 0 });
    const lat = o.syncLatencyUs as Record<string, unknown>;
    expect(Object.keys(lat).sort()).toEqual(['max', 'p50', 'p99']);
    for (const k of ['p50', 'p99', 'max']) expect(typeof lat[k]).toBe('number');
    expect(o.distribution).toBe('affinity');
  });

  it('--distribution dynamic with a shared TLB: named in the report and clean; an unknown distribution is refused', () => {
    const r = run('--seconds', '1', '--workers', '2', '--distribution', 'dynamic', '--caches', 'mmu600-shared');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/2 translation units \(caches mmu600-shared, dynamic\)/);
    expect(r.stdout).toMatch(/violations +0 +\(stale 0, future 0, torn 0\)/);
    const bad = run('--seconds', '1', '--distribution', 'round-robin');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("argument 'round-robin' is invalid. Allowed choices are affinity, dynamic.");
  });

  it('exits 1 with the violations when an injected bug is caught; 2 for an unknown bug', () => {
    const r = run('--seconds', '20', '--workers', '1', '--inject', 'skip-ack', '--stop-on-violation');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^violations +[1-9][\d,]* +\(stale [1-9]/m);
    expect(r.stdout).toContain('injected bug: skip-ack');
    const bad = run('--inject', 'nonsense');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--inject must be one of skip-ack, early-sync, late-fill, torn-read');
  });
});

describe('stress --topology: the traffic comes from a topology\'s DMA devices', () => {
  it('soc: clean, with every DMA device of the chosen SMMU attached and its stream IDs in use', async () => {
    const r = await runStress({ seconds: 1.5, workers: 1, seed: 5, topology: 'soc' });
    expect(r.violations).toBe(0);
    expect(r.translations).toBeGreaterThan(20_000);
    expect(r.topology).not.toBeNull();
    const t = r.topology!;
    expect(t.name).toBe('soc');
    expect(t.source).toBe('preset:soc');
    expect(t.unattached).toBe(0);
    expect(t.devices.length).toBeGreaterThan(1);
    // The built-in SMMU's streams are 0..7; the topology's devices have their own.
    expect(t.devices.some((d) => d.sid > 7)).toBe(true);
  });

  it('hyperscale, skip-ack injected: caught, on the stream IDs of attached devices; devices beyond the SMRs are reported', async () => {
    const r = await runStress({ seconds: 20, workers: 1, seed: 21, topology: 'hyperscale', inject: 'skip-ack', stopOnViolation: true });
    expect(r.violationsByKind.stale).toBeGreaterThan(0);
    const t = r.topology!;
    expect(t.unattached).toBeGreaterThan(0); // smmu0 has more groups than stream-map entries
    const sids = new Set(t.devices.map((d) => d.sid));
    for (const e of r.examples) expect(sids.has(e.sid), `stream 0x${e.sid.toString(16)}`).toBe(true);
  });

  it('bad input: an unknown topology, an unknown SMMU, --smmu without --topology (CLI exit 2)', async () => {
    await expect(runStress({ seconds: 1, topology: 'no-such-topology' })).rejects.toThrow(/unknown topology "no-such-topology": not a preset \(presets: soc, server, hyperscale\)/);
    await expect(runStress({ seconds: 1, topology: 'server', smmu: 'smmu9' })).rejects.toThrow(/no SMMU named "smmu9" in topology server \(SMMUs: smmu0/);
    await expect(runStress({ seconds: 1, smmu: 'smmu0' })).rejects.toThrow('--smmu needs --topology');
    const r = spawnSync(process.execPath, [CLI, 'stress', '--seconds', '1', '--topology', 'no-such-topology'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('stress: unknown topology "no-such-topology"');
  });

  it('CLI text output names the topology, the SMMU and the devices', () => {
    const r = spawnSync(process.execPath, [CLI, 'stress', '--seconds', '1', '--workers', '1', '--topology', 'server'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^topology +server \(preset:server\), smmu0: \d+ DMA devices: /m);
    expect(r.stdout).toMatch(/^violations +0 /m);
  });
});

describe('npm run bench:stress (a recorded stress run)', () => {
  it('writes NAME.json (the stress report, the command, the machine) and NAME.md, and refuses a bad name', () => {
    const out = mkdtempSync(join(tmpdir(), 'stress-record-'));
    const r = spawnSync(process.execPath, [RECORD, '--seconds', '1', '--workers', '1', '--name', 'short', '--out', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(join(out, 'short.json'), 'utf8')) as Record<string, unknown>;
    expect(doc.command).toBe(`npm run bench:stress -- --seconds 1 --workers 1 --name short --out ${out}`);
    expect(doc).toMatchObject({ benchmark: 'stress', violations: 0, workers: 1, seconds: 1, caches: 'mmu600' });
    expect(doc.translations as number).toBeGreaterThan(0);
    expect(typeof (doc.machine as { cpu: string }).cpu).toBe('string');
    const md = readFileSync(join(out, 'short.md'), 'utf8');
    expect(md).toContain(`| translations | ${(doc.translations as number).toLocaleString('en-US')} (`);
    expect(md).toContain('| violations | **0** (stale 0, future 0, torn 0) |');
    const bad = spawnSync(process.execPath, [RECORD, '--seconds', '1', '--name', '../x'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('--name must be letters, digits and dashes, got "../x"');
  });
});
