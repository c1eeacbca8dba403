/**
 * The `topology` benchmark: its --tiny run (the compiled program, after the build) writes a
 * conforming smmu-farm-bench/1 document whose counts follow from the topologies, whose set-up
 * phases add up, and whose throughput runs share one TLB over every stream; and the library's
 * set-up and its register check, on the largest preset, where context banks run out.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { figure, figuresOf, validateBenchDoc, type BenchDoc } from '../src/bench/schema.js';
import { LADDER, STREAM_FOOTPRINT, checkSetup, ladder, planThroughput, setUpTopology, setupWorld, weighSetup } from '../src/bench/topology.js';
import * as R from '../src/smmu/regs.js';
import { presetDoc } from '../src/topology/presets.js';

const PROGRAM = fileURLToPath(new URL('../dist/bench/topology.js', import.meta.url));

describe('bench/topology.ts --tiny', () => {
  let dir: string;
  let doc: BenchDoc;
  let md: string;
  let stdout: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bench-topology-'));
    const r = spawnSync(process.execPath, [PROGRAM, '--tiny', '--out', dir], { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`bench/topology.js exited ${r.status}: ${r.stderr}`);
    stdout = r.stdout;
    doc = JSON.parse(readFileSync(join(dir, 'topology.json'), 'utf8')) as BenchDoc;
    md = readFileSync(join(dir, 'topology.md'), 'utf8');
  }, 30_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a conforming document, and prints its Markdown', () => {
    expect(validateBenchDoc(doc)).toEqual([]);
    expect(doc.suite).toBe('topology');
    expect(doc.config.mode).toBe('tiny');
    expect(doc.headline).toMatchObject({ metric: 'set-up time', x: 'topology', series: 'phase' });
    expect(doc.config.topologies).toEqual(ladder('tiny').map((r) => r.name));
    expect(stdout).toBe(md);
    expect(md).toContain('## How each grows with size');
  });

  it('counts the soc preset exactly', () => {
    const c = (metric: string, extra: Record<string, string> = {}): number => figure(doc, metric, { topology: 'soc', ...extra }).median;
    expect(c('SMMUs')).toBe(1);
    expect(c('PCI functions')).toBe(7);
    expect(c('platform devices')).toBe(6);
    // nvme0, wifi, bt, xhci1 and the six platform devices.
    expect(c('DMA devices')).toBe(10);
    // Platform: gpu 2, display 2 (mask 0x1), usb0 1, emmc 1, crypto 2, dma0 16 (mask 0xf); PCI: 7 functions, 7 RIDs.
    expect(c('stream IDs')).toBe(31);
    // wifi and bt share a group (no ACS below a Root Port without ACS): 9 groups, a bank each.
    expect(c('groups attached')).toBe(9);
    expect(c('context banks in use')).toBe(9);
    // Every stream ID but the two ACS Root Ports' (not DMA devices, in groups of their own).
    expect(c('stream IDs attached')).toBe(29);
    expect(c('unattached DMA devices', { reason: 'all' })).toBe(0);
    expect(c('throughput workload streams')).toBe(10);
  });

  it('keeps the invariants of attaching on every topology', () => {
    for (const name of doc.config.topologies as string[]) {
      const c = (metric: string, extra: Record<string, string> = {}): number => figure(doc, metric, { topology: name, ...extra }).median;
      expect(c('context banks in use')).toBe(c('groups attached'));
      // A group takes at least one SMR, and masks never make one SMR cover two groups.
      expect(c('SMRs used')).toBeGreaterThanOrEqual(c('groups attached'));
      expect(c('SMRs used')).toBeLessThanOrEqual(c('stream IDs attached'));
      expect(c('stream IDs attached')).toBeLessThanOrEqual(c('stream IDs'));
      const reasons = ['no context bank', 'no SMR', 'not attachable'].map((reason) => c('unattached DMA devices', { reason }));
      expect(reasons.reduce((a, b) => a + b, 0)).toBe(c('unattached DMA devices', { reason: 'all' }));
      expect(c('throughput workload streams')).toBeGreaterThan(0);
    }
    // The ladder grows.
    const sids = (doc.config.topologies as string[]).map((t) => figure(doc, 'stream IDs', { topology: t }).median);
    expect([...sids].sort((a, b) => a - b)).toEqual(sids);
    expect(figure(doc, 'size growth, largest / smallest', { quantity: 'stream IDs' }).median).toBeCloseTo(sids[sids.length - 1]! / sids[0]!, 12);
  });

  it('times each phase, and the total is their sum', () => {
    for (const name of doc.config.topologies as string[]) {
      const phases = ['spec', 'resolve', 'bring-up', 'attach'].map((phase) => figure(doc, 'set-up time', { topology: name, phase }));
      const total = figure(doc, 'set-up time', { topology: name, phase: 'total' });
      for (const p of phases) expect(p.median).toBeGreaterThan(0);
      // One round in --tiny: the total is the sum of the phases of that round.
      expect(total.runs).toBe(1);
      expect(total.median).toBeCloseTo(phases.reduce((a, p) => a + p.median, 0), 9);
      expect(figure(doc, 'retained heap', { topology: name, phase: 'total' }).median).toBeGreaterThan(0);
    }
  });

  it('translates the same workload on every topology: one domain, so one TLB miss per page whatever the streams', () => {
    const count = doc.config.translationsPerRun as number;
    const pages = STREAM_FOOTPRINT / 4096;
    for (const name of doc.config.topologies as string[]) {
      expect(figure(doc, 'hit rate, 1 unit', { topology: name }).median).toBeCloseTo(100 * (1 - pages / count), 9);
      for (const units of [1, 2]) expect(figure(doc, 'translations per second', { topology: name, units }).median).toBeGreaterThan(0);
    }
    expect(figuresOf(doc, 'throughput relative to the smallest topology').filter((f) => f.params.topology === 'soc').map((f) => f.median)).toEqual([1, 1]);
  });
});

describe('setting up the hyperscale preset', () => {
  const world = setupWorld();
  const hyperscale = LADDER.find((r) => r.name === 'hyperscale')!;
  const s = setUpTopology(hyperscale.doc(), 'preset:hyperscale', world);

  it('runs out of stage-1 context banks (96 of 128 per SMMU), never of SMRs, and programs what it attached exactly', () => {
    const c = s.counts;
    expect(c.smmus).toBe(16);
    expect(c.streamIds).toBe(4800);
    // NUMCB 128, NUMS2CB 32: 96 banks for stage-1 domains on each SMMU.
    expect(c.contextBanksInUse).toBeLessThanOrEqual(16 * 96);
    expect(c.unattached.noContextBank).toBeGreaterThan(0);
    expect(c.unattached.noSmr).toBe(0);
    const perSmmu = s.spec.smmus.map((spec) => {
      const driver = s.machine.unit(spec.name).driver;
      return [...s.domains.values()].filter((d) => driver.domainOf(d.cbndx) === d).length;
    });
    expect(perSmmu.reduce((a, b) => a + b, 0)).toBe(c.contextBanksInUse);
    for (const banks of perSmmu) expect(banks).toBeLessThanOrEqual(96);
    // Where groups went unattached for want of a bank, some SMMU has every stage-1 bank taken.
    expect(perSmmu).toContain(96);
    expect(checkSetup(s)).toEqual([]);
  });

  it('the register check can fail: an S2CR routed to another bank is reported', () => {
    const [gid, domain] = [...s.domains.entries()][0]!;
    const group = s.resolved.groups[gid]!;
    const smmu = group.smmus[0]!;
    const sme = s.machine.smrs(smmu).find((e) => ((group.streams[0]!.sid ^ e.id) & ~e.mask) === 0)!;
    const unit = s.machine.unit(smmu);
    const old = unit.smmu.read32(R.GR0_S2CR + 4 * sme.index);
    unit.smmu.write32(R.GR0_S2CR + 4 * sme.index, (old & ~R.S2CR_CBNDX_MASK) | ((domain.cbndx + 1) & R.S2CR_CBNDX_MASK));
    try {
      expect(checkSetup(s).join('\n')).toMatch(/expected translation to bank/);
    } finally {
      unit.smmu.write32(R.GR0_S2CR + 4 * sme.index, old);
    }
    expect(checkSetup(s)).toEqual([]);
  });

  it('spreads the throughput workload over as many devices of smmu0 as one domain\'s SMRs take', () => {
    const plan = planThroughput(s.resolved, world);
    expect(plan.smmu).toBe('smmu0');
    expect(plan.streams).toBeGreaterThan(0);
    expect(plan.streams).toBeLessThanOrEqual(plan.devices);
    expect(plan.streamIds).toBeLessThanOrEqual(plan.streams);
  });

  it('weighs a set-up per copy, and more copies of soc do not change the bytes per copy much (compiled code left out)', () => {
    const soc = presetDoc('soc');
    weighSetup(soc, 'preset:soc', world, 4); // the first allocates V8's feedback for the code it runs
    const one = weighSetup(soc, 'preset:soc', world, 4);
    const many = weighSetup(soc, 'preset:soc', world, 16);
    expect(one.heapTotal).toBeGreaterThan(0);
    expect(many.heapTotal).toBeGreaterThan(0.5 * one.heapTotal);
    expect(many.heapTotal).toBeLessThan(2 * one.heapTotal);
  });
});
