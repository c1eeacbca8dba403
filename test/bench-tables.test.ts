/**
 * `bench tables`: the compiled program's --tiny run conforms to the results schema, and its
 * figures say what the architecture and the owners' rules dictate: private tables double the
 * descriptor writes and table memory, invalidations are the same except KVM's write-protect,
 * and every timing was measured. The library's counts are checked directly too.
 *
 * Runs the built program (dist/), like test/bench.test.ts: `npm test` builds first.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { figure, figuresOf, validateBenchDoc, type BenchDoc } from '../src/bench/schema.js';
import { CHANGES, changeCosts, tableMemory } from '../src/bench/tables.js';

const PROGRAM = fileURLToPath(new URL('../dist/bench/tables.js', import.meta.url));

describe('bench tables (--tiny)', () => {
  let dir = '';
  let doc: BenchDoc;
  let md = '';
  let stdout = '';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bench-tables-'));
    const r = spawnSync(process.execPath, [PROGRAM, '--tiny', '--out', dir], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`bench tables exited ${r.status}:\n${r.stderr}`);
    stdout = r.stdout;
    doc = JSON.parse(readFileSync(join(dir, 'tables.json'), 'utf8')) as BenchDoc;
    md = readFileSync(join(dir, 'tables.md'), 'utf8');
  }, 30_000);

  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('writes a conforming document and prints its Markdown', () => {
    expect(validateBenchDoc(doc)).toEqual([]);
    expect(doc.suite).toBe('tables');
    expect(doc.config.mode).toBe('tiny');
    expect(doc.headline.metric).toBe('descriptor writes per change');
    expect(stdout).toBe(md);
    expect(md).toContain('shared');
  });

  const writes = (change: string, ownership: string): number => figure(doc, 'descriptor writes per change', { change, ownership }).median;
  const tlbi = (change: string, ownership: string): number => figure(doc, 'TLBIs per change', { change, ownership }).median;
  const syncs = (change: string, ownership: string): number => figure(doc, 'syncs per change', { change, ownership }).median;

  it('counts what a change costs: private doubles the writes, the invalidations stay (exact)', () => {
    expect(figuresOf(doc, 'descriptor writes per change').every((f) => f.exact === true)).toBe(true);
    // A fresh region: a new table at levels 1, 2 and 3, then 64 leaves.
    expect(writes('mmap 64 pages', 'shared')).toBe(67);
    expect(tlbi('mmap 64 pages', 'shared')).toBe(0);
    // TLBIVA (munmap) / TLBIVAL (mprotect) per 4 KiB page, one TLBSYNC.
    for (const ch of ['munmap 16 pages', 'mprotect 16 pages']) {
      for (const o of ['shared', 'private']) {
        expect(tlbi(ch, o)).toBe(16);
        expect(syncs(ch, o)).toBe(1);
      }
    }
    // Stage 2: TLBIIPAS2 for the page or block, then TLBIVMID (KVM's rule); a sync after each.
    for (const ch of ['S2 unmap 1 page', 'S2 reclaim 2 MiB block', 'S2 split 2 MiB block']) {
      for (const o of ['shared', 'private']) {
        expect(tlbi(ch, o)).toBe(2);
        expect(syncs(ch, o)).toBe(2);
      }
    }
    expect(writes('S2 reclaim 2 MiB block', 'shared')).toBe(1);
    // The split: clear the block, then a table descriptor and 512 pages.
    expect(writes('S2 split 2 MiB block', 'shared')).toBe(1 + 1 + 512);
    for (const c of CHANGES) {
      if (c.key === 'S2 write-protect 16 pages') continue;
      expect(writes(c.key, 'private')).toBe(2 * writes(c.key, 'shared'));
      expect(tlbi(c.key, 'private')).toBe(tlbi(c.key, 'shared'));
    }
    // Write-protect for dirty logging touches KVM's tables only: the SMMU hears of it only when it walks them.
    expect(writes('S2 write-protect 16 pages', 'private')).toBe(writes('S2 write-protect 16 pages', 'shared'));
    expect(tlbi('S2 write-protect 16 pages', 'shared')).toBe(16 + 1);
    expect(tlbi('S2 write-protect 16 pages', 'private')).toBe(0);
  });

  it('private tables take twice the table memory, and more with the footprint', () => {
    const tm = figuresOf(doc, 'table memory');
    expect(tm.length).toBeGreaterThan(0);
    for (const f of tm.filter((x) => x.params.ownership === 'shared')) {
      const p = figure(doc, 'table memory', { ...f.params, ownership: 'private' });
      expect(p.median).toBe(2 * f.median);
    }
    const s1 = (mib: number): number => figure(doc, 'table memory', { stage: 'stage 1', 'footprint MiB': mib, ownership: 'shared' }).median;
    expect(s1(16)).toBeGreaterThan(s1(2));
    // Mapped from 4 KiB past a 2 MiB boundary, 2 MiB spans 2 leaf tables and 16 MiB spans 9: 7 more pages.
    expect(s1(16) - s1(2)).toBe(7 * 4);
  });

  it('measures throughput as a ratio and times every change on every path', () => {
    for (const caches of ['none', 'mmu600']) {
      const r = figure(doc, 'throughput ratio shared / private', { caches });
      expect(r.median).toBeGreaterThan(0);
      expect(Number.isFinite(r.median)).toBe(true);
    }
    const times = figuresOf(doc, 'time until every device sees the change');
    const paths = new Set(times.map((f) => f.params.path));
    expect(paths).toEqual(new Set(['register model', 'farm, 1 unit busy']));
    expect(times).toHaveLength(paths.size * CHANGES.length * 2);
    for (const f of times) expect(f.median).toBeGreaterThan(0);
    // Write-protect with private tables sends no TLBI, so it has no invalidation phase.
    expect(figuresOf(doc, 'first TLBI to sync complete').some((f) => f.params.change === 'S2 write-protect 16 pages' && f.params.ownership === 'private')).toBe(false);
  });
});

describe('bench tables library', () => {
  it('counts the same in a second fresh world (deterministic)', () => {
    const a = changeCosts({ cache: 'none' });
    const b = changeCosts({ cache: 'mmu600' });
    expect(a).toEqual(b);
  });

  it('maps 2 MiB of stage-2 blocks with no leaf tables', () => {
    const rows = tableMemory([2]);
    const blocks = rows.find((r) => r.stage === 2 && r.leaves === '2 MiB blocks' && r.ownership === 'shared')!;
    const pages = rows.find((r) => r.stage === 2 && r.leaves === '4 KiB pages' && r.ownership === 'shared')!;
    expect(pages.tablePages - blocks.tablePages).toBe(1); // one level-3 table for 512 pages
  });
});
