/**
 * The `invalidation` suite (bench/invalidation.ts): runs the compiled program in its --tiny form
 * into a temporary folder, validates the document, and checks the figures that follow from the
 * policies, KVM's rule and the driver's TLB maintenance. Also shows that the stage-2 check
 * catches a stale combined entry when KVM's rule is skipped.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { S2_STRATEGIES, S2_UNSAFE, measureStage2Rates } from '../src/bench/invalidation.js';
import { figure, figuresOf, validateBenchDoc, type BenchDoc } from '../src/bench/schema.js';

const PROGRAM = fileURLToPath(new URL('../dist/bench/invalidation.js', import.meta.url));

describe('bench invalidation --tiny', () => {
  let doc: BenchDoc;
  let md: string;
  beforeAll(() => {
    const out = mkdtempSync(join(tmpdir(), 'bench-invalidation-'));
    const r = spawnSync(process.execPath, [PROGRAM, '--tiny', '--out', out], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`bench/invalidation.js exited ${r.status}: ${r.stderr}`);
    doc = JSON.parse(readFileSync(join(out, 'invalidation.json'), 'utf8')) as BenchDoc;
    md = readFileSync(join(out, 'invalidation.md'), 'utf8');
    expect(r.stdout).toBe(md);
  });

  it('conforms to the results schema, with the policy chart as headline', () => {
    expect(validateBenchDoc(doc)).toEqual([]);
    expect(doc.suite).toBe('invalidation');
    expect(doc.headline.metric).toBe('throughput relative to no invalidation');
    expect(figure(doc, 'throughput relative to no invalidation', { policy: 'none' }).median).toBe(100);
    expect(figure(doc, 'throughput relative to no invalidation', { policy: 'strict' }).reference?.value).toBe(43);
  });

  it('TLBIs and syncs per op are what each policy issues', () => {
    const ops = doc.config.opsPerPolicyPerRound as number;
    const batch = doc.config.batchedUnmapsPerSync as number;
    const fq = doc.config.flushQueueEntries as number;
    const v = (metric: string, policy: string): number => figure(doc, metric, { policy }).median;
    expect([v('TLBIs per op', 'none'), v('syncs per op', 'none')]).toEqual([0, 0]);
    expect([v('TLBIs per op', 'strict'), v('syncs per op', 'strict')]).toEqual([1, 1]);
    expect([v('TLBIs per op', 'batched'), v('syncs per op', 'batched')]).toEqual([1, Math.ceil(ops / batch) / ops]);
    expect([v('TLBIs per op', 'deferred'), v('syncs per op', 'deferred')]).toEqual([Math.ceil(ops / fq) / ops, Math.ceil(ops / fq) / ops]);
    for (const f of figuresOf(doc, 'TLBIs per op')) expect(f.exact).toBe(true);
  });

  it('no unmapped IOVA is reachable after strict unmap + sync or after any policy\'s sync; without invalidation they are, and DMA goes stale', () => {
    const w = (metric: string, policy: string): { median: number; params: Record<string, string | number> } => figure(doc, metric, { policy });
    const before = (p: string): number => w('unmapped IOVAs reachable before the sync', p).median;
    const after = (p: string): number => w('unmapped IOVAs reachable after the sync', p).median;
    const m = w('unmapped IOVAs reachable before the sync', 'strict').params.unmapped as number;
    expect(m).toBeGreaterThan(0);
    expect(before('strict')).toBe(0);
    for (const p of ['strict', 'batched', 'deferred']) expect(after(p)).toBe(0);
    expect(before('deferred')).toBe(m); // the flush queue's window
    expect(before('none')).toBe(m);
    expect(after('none')).toBe(m);
    expect(figure(doc, 'DMA translations to a stale PA', { policy: 'none' }).median).toBeGreaterThan(0);
    for (const p of ['strict', 'batched', 'deferred']) expect(figure(doc, 'DMA translations to a stale PA', { policy: p }).median).toBe(0);
  });

  it("KVM's rule costs combined entries hit rate at stage-2 changes; split entries under TLBIIPAS2 alone keep theirs", () => {
    const rate = 'translations per stage-2 change';
    const hr = (strategy: string, every: string): number => figure(doc, 'TLB hit rate under stage-2 changes', { strategy, [rate]: every }).median;
    const rates = doc.config.stage2Rates as string[];
    expect(hr('combined + KVM rule', 'never')).toBe(hr('split, TLBIIPAS2 alone', 'never'));
    for (const e of rates.filter((x) => x !== 'never')) {
      expect(hr('split, TLBIIPAS2 alone', e)).toBeGreaterThan(hr('combined + KVM rule', e));
      expect(hr('combined-conservative, TLBIIPAS2 alone', e)).toBeGreaterThan(hr('combined + KVM rule', e));
      // The rule flushes split caches just as hard (KVM cannot tell what the SMMU caches).
      expect(hr('split + KVM rule', e)).toBe(hr('combined + KVM rule', e));
      expect(figure(doc, 'TLBIs per stage-2 change', { strategy: 'combined + KVM rule', [rate]: e }).median).toBe(2);
      expect(figure(doc, 'TLBIs per stage-2 change', { strategy: 'split, TLBIIPAS2 alone', [rate]: e }).median).toBe(1);
    }
    // More frequent changes, fewer hits under the rule (rates run from rare to frequent).
    const ruled = rates.map((e) => hr('combined + KVM rule', e));
    for (let i = 1; i < ruled.length; i++) expect(ruled[i]!).toBeLessThan(ruled[i - 1]!);
  });

  it('fan-out: one TLBIIPAS2 + TLBIVMID pair and two syncs per SMMU that may hold entries', () => {
    for (const f of figuresOf(doc, 'TLBIs per CPU-side change')) {
      const d = f.params.devices as number;
      const smmus = f.params.arrangement === 'one SMMU per device' ? d : 1;
      expect(f.median).toBe(2 * smmus);
      expect(figure(doc, 'syncs per CPU-side change', f.params).median).toBe(2 * smmus);
    }
    expect(md).toContain('vIOMMU');
  });
});

describe('the stage-2 check can fail', () => {
  it('combined entries under TLBIIPAS2 alone (no KVM rule) give a stale translation, and the measurement throws', () => {
    expect(() => measureStage2Rates({ rounds: 1, translations: 2048, rates: [64], footprint: 64, strategies: [S2_UNSAFE] })).toThrow(/stale entry/);
    expect(() => measureStage2Rates({ rounds: 1, translations: 2048, rates: [64], footprint: 64, strategies: S2_STRATEGIES })).not.toThrow();
  });
});
