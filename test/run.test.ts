/**
 * `smmu-farm run` and runWorkload: a workload over a topology through the farm.
 * The library gives checked numbers on small configurations (a nested 4 KiB
 * walk reads 24 descriptors without caches, far fewer with MMU-600-like ones;
 * unmapped pages fault after TLBI + sync, and a dropped TLBI is caught), and
 * the CLI prints one JSON object with --json and exits 2 on bad options.
 *
 * The farm's workers and the CLI run from dist/: build first (npm test does).
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { presetNames } from '../src/cache/presets.js';
import { RunError, mergeRegions, runWorkload, type RunOptions, type RunReport } from '../src/run/run.js';
import { loadPreset } from '../src/topology/presets.js';
import { resolveTopology } from '../src/topology/resolve.js';
import type { WorkloadConfig } from '../src/workload/index.js';

const CLI = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));

/** Uniform 64-byte reads over 4 MiB (1024 pages of 4 KiB) at IOVA 4 GiB. */
const SMALL: WorkloadConfig = { kind: 'uniform', base: '0x100000000', footprint: 4 << 20, accessSize: 64 };
/** 16 pages: every page is cached after the first batch. */
const TINY: WorkloadConfig = { kind: 'uniform', base: '0x100000000', footprint: 64 << 10, accessSize: 64, mix: { r: 1, w: 1 } };

function sumUnits(r: RunReport, k: 'translations' | 'faults' | 'aborts'): number {
  return r.perUnit.reduce((a, u) => a + u[k], 0);
}

async function runError(opts: RunOptions): Promise<RunError> {
  try {
    await runWorkload(opts);
  } catch (e) {
    expect(e).toBeInstanceOf(RunError);
    return e as RunError;
  }
  throw new Error('expected a RunError');
}

describe('runWorkload', () => {
  it('caches none: every translation is one nested 4 KiB walk of 24 descriptor reads', async () => {
    const r = await runWorkload({ workload: SMALL, caches: 'none', units: 2, count: 20000, batch: 4096 });
    expect(r.translations).toBe(20000);
    expect(sumUnits(r, 'translations')).toBe(20000);
    expect(r.descriptorReadsPerTranslation).toBe(24);
    expect(r.walksPerTranslation).toBe(1);
    expect(r.hitRate).toBe(0);
    expect(r.faults).toBe(0);
    expect(r.aborts).toBe(0);
    expect(r.invalidations).toEqual({ issued: 0, syncs: 0, applied: 0, events: 0, unmappedAccesses: 0, staleTranslations: 0 });
    expect(r.tables).toMatchObject({ pages: 1024, regions: 1 });
    expect(r.translationsPerSecond).toBeGreaterThan(0);
    expect(r.translationsPerSecond).toBeCloseTo(r.translations / r.seconds, 6);
    expect(r.limit).toEqual({ kind: 'count', value: 20000 });
    // The soc preset's first DMA device on smmu0 is nvme0, whose RID 0x0100 maps to stream ID 0x1c01.
    expect(r.topology).toMatchObject({ name: 'soc', smmu: 'smmu0', streams: [{ workloadSid: 0, sid: 0x1c01, device: '0000:01:00.0 (nvme0)' }] });
  });

  it('mmu600 caches: hits, and far fewer descriptor reads per translation', async () => {
    const r = await runWorkload({ workload: SMALL, caches: 'mmu600', units: 2, distribution: 'dynamic', count: 20000, batch: 4096 });
    expect(r.translations).toBe(20000);
    expect(r.hitRate).toBeGreaterThan(0.5); // 1024 pages fit the 2048-entry main TLB
    expect(r.hitRate).toBeLessThanOrEqual(1);
    expect(r.descriptorReadsPerTranslation).toBeGreaterThan(0);
    expect(r.descriptorReadsPerTranslation).toBeLessThan(12);
    expect(r.walksPerTranslation).toBeCloseTo(1 - r.hitRate, 9); // a translation either hits or walks once
    for (const u of r.perUnit) {
      expect(u.hitRate).toBeGreaterThanOrEqual(0);
      expect(u.hitRate).toBeLessThanOrEqual(1);
    }
    expect(r.perUnit.filter((u) => u.translations > 0)).toHaveLength(2); // dynamic: both units take chunks
  });

  it('--invalidate-every: the unmapped page faults in every unit after TLBI + sync through the SMMU registers', async () => {
    const r = await runWorkload({ workload: TINY, caches: 'mmu600', units: 2, count: 8 * 2048, batch: 2048, invalidateEvery: 2 });
    const inv = r.invalidations;
    expect(inv.events).toBe(4);
    expect(inv.issued).toBe(4); // one TLBIVA per unmapped 4 KiB page ...
    expect(inv.syncs).toBeGreaterThanOrEqual(4); // ... and a TLBSYNC
    expect(inv.applied).toBe(4 * 2); // both units applied each (the idle one on its next batch)
    expect(inv.unmappedAccesses).toBeGreaterThan(4 * 50); // 16 pages: ~1/16 of each batch
    expect(inv.staleTranslations).toBe(0);
    expect(r.faultsByKind.translation).toBe(inv.unmappedAccesses);
    expect(r.faults).toBe(inv.unmappedAccesses);
    expect(sumUnits(r, 'faults')).toBe(r.faults);
  });

  it('a TLBI that never reaches the units is caught as stale translations', async () => {
    const r = await runWorkload({ workload: TINY, caches: 'mmu600', units: 1, count: 8 * 2048, batch: 2048, invalidateEvery: 2, dropInvalidations: true });
    expect(r.invalidations.events).toBe(4);
    expect(r.invalidations.applied).toBe(0);
    expect(r.invalidations.staleTranslations).toBeGreaterThan(0);
    // Without caches there is nothing to be stale: the walk sees the unmapped page.
    const n = await runWorkload({ workload: TINY, caches: 'none', units: 1, count: 4 * 2048, batch: 2048, invalidateEvery: 2, dropInvalidations: true });
    expect(n.invalidations.events).toBe(2);
    expect(n.invalidations.staleTranslations).toBe(0);
    expect(n.faults).toBe(n.invalidations.unmappedAccesses);
  });

  it('maps workload streams round-robin onto the devices of one SMMU and attaches their groups', async () => {
    // 12 streams at stream IDs 100..111 over a soc with 10 DMA devices on smmu0.
    const streams = Array.from({ length: 12 }, (_, i) => ({ kind: 'sequential' as const, sid: 111 - i, base: `0x${(0x1_0000_0000 + i * 0x10000).toString(16)}`, footprint: 0x8000 }));
    const r = await runWorkload({ workload: { kind: 'interleave', order: 'round-robin', streams }, caches: 'none', units: 2, count: 12 * 200, batch: 1200 });
    expect(r.workload.streams).toEqual(Array.from({ length: 12 }, (_, i) => 100 + i));
    const a = r.topology.streams;
    expect(a.map((x) => x.workloadSid)).toEqual(r.workload.streams);
    const owners = resolveTopology(loadPreset('soc')).streamOwners.get('smmu0')!;
    for (const x of a) expect(owners.has(x.sid)).toBe(true);
    expect(new Set(a.slice(0, 10).map((x) => x.device)).size).toBe(10);
    expect(a[10]!.sid).toBe(a[0]!.sid); // the 11th stream wraps round to the first device
    expect(a[11]!.sid).toBe(a[1]!.sid);
    expect(a[1]!.group).toBe(a[2]!.group); // wifi and bt share a group: attached once
    // Every stream is attached and translated: no aborts, and 24 reads each.
    expect(r.translations).toBe(2400);
    expect(r.aborts).toBe(0);
    expect(r.faults).toBe(0);
    expect(r.descriptorReadsPerTranslation).toBe(24);
    expect(r.tables.pages).toBe(12 * 8);
  });

  it('runs on a chosen SMMU of a bigger topology', async () => {
    const r = await runWorkload({ workload: SMALL, topology: 'server', smmu: 'smmu2', caches: 'qemu', units: 1, count: 5000, batch: 5000 });
    expect(r.topology.smmu).toBe('smmu2');
    expect(resolveTopology(loadPreset('server')).streamOwners.get('smmu2')!.has(r.topology.streams[0]!.sid)).toBe(true);
    expect(r.translations).toBe(5000);
    expect(r.aborts).toBe(0);
  });

  it('runs a trace to its end, or to --count', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-run-'));
    const file = join(dir, 't.jsonl');
    const recs = ['{"sid":3,"va":"0x200000000","acc":"r"}', '{"sid":3,"va":"0x200001008","acc":"w"}', '{"sid":8,"va":"0x300000000","acc":"x"}', '{"sid":3,"va":"0x555000000","acc":"r"}'];
    writeFileSync(file, recs.join('\n') + '\n');
    const r = await runWorkload({ trace: file, caches: 'none', units: 1 });
    expect(r.limit).toEqual({ kind: 'trace', value: 4 });
    expect(r.translations).toBe(4);
    expect(r.workload.streams).toEqual([3, 8]);
    expect(r.tables).toMatchObject({ pages: 4, regions: 3 });
    // The instruction fetch (privileged, the farm's default) faults: the tables map pages read/write
    // for EL0, and a page writable at EL0 is never executable at EL1. The other three translate.
    expect(r.faults).toBe(1);
    expect(r.faultsByKind.permission).toBe(1);
    expect(r.aborts).toBe(0);
    const c = await runWorkload({ trace: file, caches: 'none', units: 1, count: 2 });
    expect(c.translations).toBe(2);
    expect(c.tables.pages).toBe(2); // only the records that run are mapped
  });

  it('runs for a time', async () => {
    const r = await runWorkload({ workload: SMALL, caches: 'mmu500', units: 1, seconds: 0.3, batch: 2048 });
    expect(r.limit).toEqual({ kind: 'seconds', value: 0.3 });
    expect(r.seconds).toBeGreaterThanOrEqual(0.3);
    expect(r.seconds).toBeLessThan(2);
    expect(r.translations).toBeGreaterThan(2048);
    expect(r.translations % 2048).toBe(0);
  });

  it('rejects bad options with the valid choices', async () => {
    const caches = await runError({ caches: 'mmu700' });
    expect(caches.status).toBe(2);
    expect(caches.message).toBe(`unknown cache preset "mmu700" (presets: ${presetNames().join(', ')})`);
    const wl = await runError({ workload: 'zipf' });
    expect(wl.status).toBe(2);
    expect(wl.message).toContain('zipf-0.99, ring-4k');
    const topo = await runError({ topology: 'laptop' });
    expect(topo.status).toBe(2);
    expect(topo.message).toContain('(presets: soc, server, hyperscale)');
    expect((await runError({ smmu: 'smmu7' })).message).toBe('no SMMU named "smmu7" in topology soc (SMMUs: smmu0)');
    expect((await runError({ seconds: 1, count: 5 })).status).toBe(2);
    expect((await runError({ units: 0 })).message).toBe('units: expected an integer from 1 to 64, got 0');
    expect((await runError({ distribution: 'random' as never })).status).toBe(2);
    const cfg = await runError({ workload: { kind: 'uniform', footprint: -1 } });
    expect(cfg.status).toBe(1);
    expect(cfg.message).toContain('$.footprint');
    const big = await runError({ workload: { kind: 'uniform', base: 0, footprint: 4 * 2 ** 30 } });
    expect(big.status).toBe(1);
    expect(big.message).toContain('run maps at most 524288');
    const upper = await runError({ workload: { kind: 'sequential', base: '-0x100000', footprint: 4096 } });
    expect(upper.message).toContain('upper (TTBR1) half');
  });

  it('merges overlapping and adjacent regions', () => {
    expect(mergeRegions([{ base: 8192, size: 100 }, { base: 0, size: 4096 }, { base: 4096, size: 10 }, { base: 40960, size: 4096 }])).toEqual([
      { base: 0, size: 12288 },
      { base: 40960, size: 4096 },
    ]);
  });
});

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'run', ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('smmu-farm run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'smmu-run-cli-'));
  const wl = join(dir, 'small.json');
  writeFileSync(wl, JSON.stringify(SMALL));

  it('--json prints one object with the report fields, and nothing on stderr when it is not a terminal', () => {
    const r = cli('--workload', wl, '--caches', 'none', '--units', '1', '--count', '10000', '--invalidate-every', '1', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.length > 0);
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!) as RunReport;
    expect(Object.keys(j).sort()).toEqual(
      [
        'workload', 'topology', 'caches', 'units', 'distribution', 'limit', 'tables', 'farmStartMs', 'translations', 'seconds', 'translationsPerSecond',
        'hitRate', 'walksPerTranslation', 'descriptorReadsPerTranslation', 'faults', 'faultsByKind', 'aborts', 'invalidations', 'perUnit', 'interrupted', 'layers',
      ].sort(),
    );
    expect(j.translations).toBe(10000);
    expect(j.caches).toBe('none');
    expect(j.interrupted).toBe(false);
    expect(j.layers).toBeNull();
    expect(j.workload.source).toBe(wl);
    expect(Object.keys(j.faultsByKind)).toEqual(['translation', 'access-flag', 'permission', 'address-size', 'external']);
    expect(j.invalidations.events).toBe(1); // one batch of 10000
    expect(j.invalidations.staleTranslations).toBe(0);
    expect(j.descriptorReadsPerTranslation).toBeLessThan(24); // faulting walks stop early
    expect(j.descriptorReadsPerTranslation).toBeGreaterThan(23.9);
    expect(j.perUnit).toHaveLength(1);
  });

  it('prints a readable report', () => {
    const r = cli('--workload', wl, '--caches', 'mmu600', '--units', '2', '--count', '5000');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^smmu-farm run: workload .*small\.json \(seed 1\) on smmu0 of topology soc, caches mmu600, 2 units \(affinity\), 5,000 translations$/m);
    expect(r.stdout).toMatch(/^\| unit \| translations \| hit rate \|/m);
    expect(r.stdout).toMatch(/^\| all  \|        5,000 \|/m);
    expect(r.stdout).toMatch(/^throughput: +[\d.]+ [kM]? ?translations\/s \(5,000 in /m);
    expect(r.stdout).toContain('note: affinity sends stream ID s to unit s mod 2; 1 of 2 units got no requests');
    expect(r.stderr).toBe('');
  });

  it('bad options exit 2 with a clear message and no output', () => {
    const cases: Array<[string[], string]> = [
      [['--caches', 'big'], `error: unknown cache preset "big" (presets: ${presetNames().join(', ')})`],
      [['--workload', 'nope'], 'error: unknown workload preset "nope" (presets: seq-stream, uniform-1g, zipf-0.99, ring-4k, ring-pagepool, sg-list, storage-mix, multi-device)'],
      [['--topology', 'nope'], 'error: unknown topology "nope": not a preset (presets: soc, server, hyperscale) and no such file'],
      [['--units', 'two'], 'error: --units: expected an integer from 1 to 64, got "two"'],
      [['--seconds', '1', '--count', '9'], 'error: give --seconds or --count, not both'],
      [['--distribution', 'round-robin'], 'error: --distribution: expected affinity or dynamic, got "round-robin"'],
      [['--frobnicate'], "error: unknown option '--frobnicate'"],
    ];
    for (const [args, msg] of cases) {
      const r = cli(...args, '--json');
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.split('\n')[0]).toBe(msg);
    }
  });

  it('a malformed workload file exits 1 naming the file and the JSON path', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ kind: 'zipf', s: 'steep' }));
    const r = cli('--workload', bad);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`error: ${bad}: $.s: expected a number, got "steep"\n`);
  });
});

describe('runWorkload: time per layer (--layers)', () => {
  it('accounts for every timed transaction: each one stream-matched, and each translation a hit, a walk or a fault', async () => {
    const r = await runWorkload({ workload: 'multi-device', count: 20_000, units: 1, layers: 4000 });
    const L = r.layers!;
    expect(L.transactions).toBe(4000);
    const row = (prefix: string) => L.rows.find((x) => x.layer.startsWith(prefix))!;
    expect(L.rows.map((x) => x.layer.split(' ')[0])).toEqual(['stream', 'cache', 'walk', 'fault', 'other']);
    expect(row('stream match').count).toBe(4000);
    // Every request reaches a translating context here (no bypass, no abort): a hit or a walk.
    expect(row('cache hit').count + row('walk').count).toBe(4000);
    expect(row('cache hit').count).toBeGreaterThan(0);
    // The accelerator's instruction fetches hit data pages mapped without execute permission: permission faults.
    expect(row('fault handling').count).toBeGreaterThan(0);
    for (const x of L.rows) {
      expect(x.nsEach).toBeGreaterThanOrEqual(0);
      expect(x.share).toBeGreaterThanOrEqual(0);
    }
    expect(L.rows.reduce((a, x) => a + x.share, 0)).toBeCloseTo(1, 6);
    expect(L.clockNs).toBeGreaterThan(0);
  }, 60_000);

  it('with no caches every translation walks; without the option there is no layer report', async () => {
    const none = await runWorkload({ workload: 'zipf-0.99', caches: 'none', count: 5000, units: 1, layers: 2000 });
    const rows = none.layers!.rows;
    expect(rows.find((x) => x.layer.startsWith('cache hit'))!.count).toBe(0);
    expect(rows.find((x) => x.layer.startsWith('walk'))!.count).toBe(2000);
    const off = await runWorkload({ workload: 'zipf-0.99', count: 5000, units: 1 });
    expect(off.layers).toBeNull();
  }, 60_000);
});

describe('smmu-farm run --layers', () => {
  it('prints the layer table after the report', () => {
    const cli = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
    const r = spawnSync(process.execPath, [cli, 'run', '--count', '20000', '--units', '1', '--layers', '2000'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/time per layer of the SMMU model \(--layers\): 2,000 requests through smmu\.dma\(\)/);
    expect(r.stdout).toMatch(/^\| stream match \(SMR, S2CR\) +\| +2,000 \|/m);
    const bad = spawnSync(process.execPath, [cli, 'run', '--count', '1000', '--layers', '5'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--layers: expected an integer from 1000 to/);
  }, 60_000);
});

describe('runWorkload: pipelined batches (affinity) answer as batch-at-a-time ones (dynamic)', () => {
  it('same translations, faults by kind, aborts and unmap checks for the same deterministic workload', async () => {
    // 24 batches: the last is not an unmap batch, so it is still in flight when the loop ends.
    const common: RunOptions = { workload: 'multi-device', count: 190_000, units: 2, batch: 8192, invalidateEvery: 5, caches: 'mmu600' };
    const a = await runWorkload({ ...common, distribution: 'affinity' });
    const d = await runWorkload({ ...common, distribution: 'dynamic' });
    expect(a.translations).toBe(190_000);
    expect(d.translations).toBe(190_000);
    expect(a.faultsByKind).toEqual(d.faultsByKind);
    expect(a.faultsByKind.permission).toBeGreaterThan(0); // the accelerators' instruction fetches
    expect(a.aborts).toBe(d.aborts);
    expect(a.invalidations.events).toBe(d.invalidations.events);
    expect(a.invalidations.unmappedAccesses).toBe(d.invalidations.unmappedAccesses);
    expect(a.invalidations.unmappedAccesses).toBeGreaterThan(0);
    expect(a.invalidations.staleTranslations).toBe(0);
    expect(d.invalidations.staleTranslations).toBe(0);
  }, 60_000);
});
