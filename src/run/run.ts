/**
 * `smmu-farm run`, as a library: a DMA workload (src/workload: a preset, a
 * configuration object or a trace) over a topology (src/topology) with a
 * caching strategy (src/cache presets), translated by the farm (src/farm) for
 * a duration or a count, with the figures a user asks of such a run:
 * translations/s, hit rate, walks and descriptor reads per translation,
 * faults by kind, aborts and invalidations.
 *
 * How a run is put together, in order:
 *
 * 1. **Footprint and tables.** The workload's VA regions (a generator's
 *    `regions()`, or the 4 KiB pages a trace touches, found in a first pass
 *    over it) are merged into disjoint ranges, and `buildNestedRegions` builds
 *    one guest stage 1 over them behind one KVM stage 2, 4 KiB pages at both
 *    stages (the `nested-4k-1g` construction). Every stream shares that one
 *    address space: one VM, one domain.
 * 2. **Stream IDs.** The topology's SMMUs are built and brought up
 *    (`TopologyMachine`). One SMMU is used: `smmu`, or by default the first SMMU
 *    (in the topology's order) with a device that can be attached. Its *DMA
 *    devices* are, in topology order, the PCI endpoints, RC-integrated
 *    endpoints and conventional PCI devices, then the platform devices, whose
 *    IOMMU group lies wholly on that SMMU with every requester ID mapped. The
 *    workload's distinct stream IDs, in ascending order, go round-robin onto
 *    them: workload stream i becomes device (i mod D). A device's transactions
 *    carry the stream ID its requester ID reaches the SMMU as (its own, or the
 *    alias of a bridge that takes ownership, as pci_for_each_dma_alias ends;
 *    a platform device's first `iommus` stream ID).
 * 3. **Attach.** The driver of that SMMU creates a stage-2 domain and a nested
 *    domain over it, and the IOMMU group of every device in use is attached to
 *    the nested domain (masked SMRs where they fit).
 * 4. **Farm.** One farm, for that SMMU only, with `units` translation units
 *    and the caching preset in each; the SMMU's configuration for the stream
 *    IDs in use is loaded into it. The SMMU model's TLB maintenance is wired
 *    to the farm: every TLBI the driver writes is published to the units, and
 *    reading TLBSTATUS runs the farm's sync.
 * 5. **Run.** Batches from the workload (stream IDs rewritten as in 2) are
 *    translated until the count is reached, the time is up, or the trace ends.
 *    With `invalidateEvery` N, before every Nth batch the driver unmaps the
 *    page of that batch's first request (TLBIVA + TLBSYNC through the
 *    registers) and maps it again after the batch (break-before-make); every
 *    access to it during the batch must fault, and one that translates is
 *    counted as stale (a broken invalidation).
 *
 * Hit rate = translations answered without any walk / translations that
 * reached the caches (aborted ones do not). Descriptor reads and walks are per
 * translation, aborted ones included. Caches start cold.
 */

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { TranslationCaches, type CacheConfig } from '../cache/caches.js';
import { NoCache, type InvalidationScope, type TranslationCache } from '../cache/interface.js';
import { CACHE_PRESETS, presetNames } from '../cache/presets.js';
import { DriverError, type Domain } from '../driver/arm-smmu.js';
import { Farm, FarmError, type Distribution, type UnitStats } from '../farm/farm.js';
import { REQ_UNPRIV, RES_ABORT, RES_OK } from '../farm/unit.js';
import { LayerClock, layerRows, type LayerRow } from '../smmu/layers.js';
import type { Smmu } from '../smmu/smmu.js';
import type { PhysMem } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, PageTable } from '../pgtable/builder.js';
import type { Regime } from '../pgtable/regime.js';
import { AttachError, TopologyMachine } from '../topology/attach.js';
import { pickDmaSmmu, unknownSmmu } from '../topology/devices.js';
import { TopologyError } from '../topology/file.js';
import { UnknownTopologyError, loadTopologyNamed } from '../topology/index.js';
import { masterName, type TopologySpec } from '../topology/model.js';
import { resolveTopology } from '../topology/resolve.js';
import {
  TraceError,
  UnknownWorkloadError,
  WorkloadConfigError,
  buildGenerator,
  createBatch,
  formatVa,
  openTraceReader,
  presetConfig,
  resolveConfig,
  workloadPresetNames,
  type Batch,
  type Source,
  type WorkloadConfig,
} from '../workload/index.js';
import { FAULT_NAMES, type WalkResult } from '../walk/result.js';
import { translate as walk } from '../walk/walk.js';
import { buildNestedRegions } from '../workloads/nested-4k-1g.js';

export const RUN_DEFAULTS = {
  workload: 'zipf-0.99',
  topology: 'soc',
  caches: 'mmu600',
  distribution: 'affinity' as Distribution,
  seconds: 5,
  seed: 1,
  batch: 16384,
};

/** The most 4 KiB pages a run maps (buildNestedRegions draws distinct IPA pages from a 4 GiB window, at most half of it). */
export const RUN_MAX_PAGES = (4 * 2 ** 30) / 4096 / 2;

/** The prot the nested tables are built with (buildNestedRegions), used again to remap a page. */
const TABLE_PROT = PROT_READ | PROT_WRITE | PROT_CACHE;

/** A usage problem (exit status 2: a bad option, an unknown preset) or a bad input (1: a malformed file, a failed attach). */
export class RunError extends Error {
  constructor(
    message: string,
    readonly status: 1 | 2,
  ) {
    super(message);
    this.name = 'RunError';
  }
}

export interface RunOptions {
  /**
   * A workload preset name, a workload configuration file (*.json), or a configuration object
   * (src/workload/config.ts). Default zipf-0.99; not with `trace`.
   */
  workload?: string | WorkloadConfig;
  /** A trace file (.smtr or .jsonl) instead of a generated workload. */
  trace?: string;
  /** A topology preset name, a topology file, or a validated spec. Default soc. */
  topology?: string | TopologySpec;
  /** The SMMU to run on (default: the first with an attachable device). */
  smmu?: string;
  /** A cache preset name (src/cache/presets.ts). Default mmu600. */
  caches?: string;
  /** Translation units (default: the available cores, at most 64). */
  units?: number;
  distribution?: Distribution;
  /** Run for this many seconds (default 5 for a generated workload; a trace also stops at its end). Not with `count`. */
  seconds?: number;
  /** Translate exactly this many requests (a trace stops earlier at its end). Not with `seconds`. */
  count?: number;
  /** Seed of the workload generator and of the table layout (default 1). */
  seed?: number;
  /** Requests per batch (default 16384, the farm's capacity per unit). */
  batch?: number;
  /** Unmap and remap a page (TLBI + sync) around every Nth batch (0 or absent: never). */
  invalidateEvery?: number;
  /**
   * Test hook, a deliberately broken invalidation path: the SMMU's TLBIs are counted but not
   * published to the farm. With caches, accesses to an unmapped page then translate from stale
   * entries, and `staleTranslations` shows it.
   */
  dropInvalidations?: boolean;
  /** Called after every batch. */
  onProgress?: (p: RunProgress) => void;
  /**
   * Stops the run after the batch in flight when aborted (Ctrl-C): the report covers what was
   * translated until then, with `interrupted` set.
   */
  signal?: AbortSignal;
  /**
   * After the run, time each layer of the SMMU model's transaction path (stream match, cache
   * hit, walk, fault handling) over the workload's first `layers` requests, translated on this
   * thread through the SMMU the run used with a fresh copy of its caches (0 or absent: off).
   */
  layers?: number;
}

export interface RunProgress {
  translations: number;
  elapsedMs: number;
  /** Of the count or the time (whichever limits the run), 0..1; null when unknown. */
  fraction: number | null;
}

export interface StreamAssignment {
  /** The workload's stream ID. */
  workloadSid: number;
  /** The device it became, and the stream ID its transactions carry on the SMMU. */
  device: string;
  sid: number;
  group: number;
}

export interface UnitReport {
  unit: number;
  translations: number;
  hitRate: number;
  walksPerTranslation: number;
  descriptorReadsPerTranslation: number;
  faults: number;
  aborts: number;
  invalidationsApplied: number;
  busyMs: number;
}

export interface RunReport {
  workload: { source: string; name: string; seed: number; streams: number[] };
  topology: { name: string; source: string; smmu: string; streams: StreamAssignment[] };
  caches: string;
  units: number;
  distribution: Distribution;
  /** What limited the run. */
  limit: { kind: 'count' | 'seconds' | 'trace'; value: number | null };
  /** True when `signal` stopped the run before its limit. */
  interrupted: boolean;
  tables: { pages: number; regions: number; buildMs: number };
  farmStartMs: number;
  translations: number;
  seconds: number;
  translationsPerSecond: number;
  hitRate: number;
  walksPerTranslation: number;
  descriptorReadsPerTranslation: number;
  faults: number;
  faultsByKind: Record<string, number>;
  aborts: number;
  invalidations: {
    /** TLBIs the SMMU published to the farm. */
    issued: number;
    /** Syncs the farm ran (TLBSTATUS reads). */
    syncs: number;
    /** Invalidations applied, summed over units. */
    applied: number;
    /** Unmap/remap events (invalidateEvery). */
    events: number;
    /** Requests to a page while it was unmapped: each must fault. */
    unmappedAccesses: number;
    /** Of those, ones that translated: a broken invalidation. */
    staleTranslations: number;
  };
  perUnit: UnitReport[];
  /** Time per layer (the `layers` option), or null. */
  layers: LayerReport | null;
}

export interface LayerReport {
  /** Transactions timed (after as many again to warm the caches). */
  transactions: number;
  /** The cost of one clock read, taken off every timed interval. */
  clockNs: number;
  rows: LayerRow[];
}

// ------------------------------------------------------------------ helpers

const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b);

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v === undefined) return;
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new RunError(`${name}: expected an integer from ${min} to ${max}, got ${String(v)}`, 2);
}

/** The SMMU model's TLB maintenance, routed to the farm: TLBIs are published, TLBSTATUS runs a sync. */
class FarmMaintenance implements TranslationCache {
  issued = 0;
  syncs = 0;
  constructor(
    private readonly farm: Farm,
    private readonly drop: boolean,
  ) {}
  translate(mem: PhysMem, regime: Regime, _cb: number, _sid: number, va: number, acc: number, res: WalkResult): boolean {
    return walk(mem, regime, va, acc, res);
  }
  invalidate(scope: InvalidationScope): void {
    this.issued++;
    if (!this.drop) this.farm.invalidate(scope);
  }
  syncComplete(): boolean {
    this.syncs++;
    this.farm.sync();
    return true;
  }
}

interface Region {
  base: number;
  size: number;
}

/** Disjoint, sorted 4 KiB-aligned ranges covering `regions`. */
export function mergeRegions(regions: ReadonlyArray<Region>): Region[] {
  const r = regions.map((x) => ({ base: Math.floor(x.base / 4096) * 4096, end: Math.ceil((x.base + x.size) / 4096) * 4096 })).sort((a, b) => a.base - b.base);
  const out: Array<{ base: number; end: number }> = [];
  for (const x of r) {
    const last = out[out.length - 1];
    if (last !== undefined && x.base <= last.end) last.end = Math.max(last.end, x.end);
    else out.push({ ...x });
  }
  return out.map((x) => ({ base: x.base, size: x.end - x.base }));
}

function checkFootprint(regions: Region[], what: string): number {
  let pages = 0;
  for (const r of regions) {
    if (r.base < 0) throw new RunError(`${what}: VA ${formatVa(r.base)} is in the upper (TTBR1) half; run builds its tables for the lower 48-bit half only`, 1);
    if (r.base + r.size > 2 ** 48) throw new RunError(`${what}: the region at ${formatVa(r.base)} ends beyond the 48-bit VA space`, 1);
    pages += r.size / 4096;
  }
  if (pages > RUN_MAX_PAGES) {
    throw new RunError(`${what}: the footprint is ${pages} pages of 4 KiB (${(pages / 262144).toFixed(2)} GiB); run maps at most ${RUN_MAX_PAGES} (2 GiB)`, 1);
  }
  return pages;
}

interface WorkloadPlan {
  source: string;
  name: string;
  seed: number;
  streams: number[];
  regions: Region[];
  open: () => Source & { close?: () => void };
  /** Records in the trace (null for a generator: endless). */
  records: number | null;
}

function planGenerator(w: string | WorkloadConfig, seed: number): WorkloadPlan {
  let config: unknown;
  let source: string;
  let name: string;
  if (typeof w === 'string' && w.toLowerCase().endsWith('.json')) {
    config = readWorkloadFile(w);
    source = w;
    name = w;
  } else if (typeof w === 'string') {
    try {
      config = presetConfig(w);
    } catch (e) {
      if (e instanceof UnknownWorkloadError) throw new RunError(`unknown workload preset "${w}" (presets: ${workloadPresetNames().join(', ')})`, 2);
      throw e;
    }
    source = `preset:${w}`;
    name = w;
  } else {
    config = w;
    source = 'config';
    name = typeof w === 'object' && w !== null && 'kind' in w ? String(w.kind) : 'config';
  }
  let resolved;
  try {
    resolved = resolveConfig(config, { seed });
  } catch (e) {
    if (e instanceof WorkloadConfigError) throw new RunError(`${source === 'config' ? 'workload' : name}: ${e.message}`, 1);
    throw e;
  }
  const probe = buildGenerator(resolved);
  const raw = probe.regions();
  const streams = [...new Set(raw.map((r) => r.sid))].sort((a, b) => a - b);
  return { source, name, seed, streams, regions: mergeRegions(raw), open: () => buildGenerator(resolved), records: null };
}

/** One pass over a trace (up to `limit` records): its stream IDs and the 4 KiB pages it touches. */
function planTrace(file: string, limit: number | undefined, seed: number): WorkloadPlan {
  const pages = new Set<number>();
  const sids = new Set<number>();
  let records = 0;
  try {
    const r = openTraceReader(file);
    const b = createBatch(4096);
    try {
      while (limit === undefined || records < limit) {
        const n = r.fill(b);
        if (n === 0) break;
        const m = limit === undefined ? n : Math.min(n, limit - records);
        for (let i = 0; i < m; i++) {
          const va = b.va[i]!;
          if (va < 0) throw new RunError(`${file}: record ${records + i}: VA ${formatVa(va)} is in the upper (TTBR1) half; run builds its tables for the lower 48-bit half only`, 1);
          sids.add(b.sid[i]!);
          const last = b.size[i]! > 0 ? va + b.size[i]! - 1 : va;
          if (last >= 2 ** 48) throw new RunError(`${file}: record ${records + i}: VA ${formatVa(va)} is beyond the 48-bit VA space`, 1);
          for (let p = Math.floor(va / 4096); p <= Math.floor(last / 4096); p++) pages.add(p);
        }
        if (pages.size > RUN_MAX_PAGES) throw new RunError(`${file}: the trace touches more than ${RUN_MAX_PAGES} pages of 4 KiB; run maps at most 2 GiB`, 1);
        records += m;
      }
    } finally {
      r.close();
    }
  } catch (e) {
    if (e instanceof TraceError) throw new RunError(e.message, /unknown trace format/.test(e.problem) ? 2 : 1);
    throw e;
  }
  if (records === 0) throw new RunError(`${file}: the trace has no records`, 1);
  const sorted = [...pages].sort((a, b) => a - b);
  const regions: Region[] = [];
  for (const p of sorted) {
    const last = regions[regions.length - 1];
    if (last !== undefined && last.base + last.size === p * 4096) last.size += 4096;
    else regions.push({ base: p * 4096, size: 4096 });
  }
  return { source: `trace:${file}`, name: file, seed, streams: [...sids].sort((a, b) => a - b), regions, open: () => openTraceReader(file), records };
}

function loadTopology(t: string | TopologySpec): { spec: TopologySpec; source: string } {
  try {
    return loadTopologyNamed(t);
  } catch (e) {
    if (e instanceof UnknownTopologyError) throw new RunError(e.message, 2);
    if (e instanceof TopologyError) throw new RunError(e.message, 1);
    throw e;
  }
}

// ------------------------------------------------------------------ the run

/** Runs a workload through the farm; see the file comment. Throws RunError for bad options and inputs. */
export async function runWorkload(opts: RunOptions = {}): Promise<RunReport> {
  // Options.
  if (opts.workload !== undefined && opts.trace !== undefined) throw new RunError('give a workload or a trace, not both', 2);
  if (opts.seconds !== undefined && opts.count !== undefined) throw new RunError('give --seconds or --count, not both', 2);
  if (opts.seconds !== undefined && !(Number.isFinite(opts.seconds) && opts.seconds > 0 && opts.seconds <= 86400)) {
    throw new RunError(`seconds: expected a number in (0, 86400], got ${String(opts.seconds)}`, 2);
  }
  checkInt('count', opts.count, 1, Number.MAX_SAFE_INTEGER);
  checkInt('units', opts.units, 1, 64);
  checkInt('seed', opts.seed, 0, 0xffffffff);
  checkInt('batch', opts.batch, 1, 1 << 20);
  checkInt('invalidate-every', opts.invalidateEvery, 0, Number.MAX_SAFE_INTEGER);
  const distribution = opts.distribution ?? RUN_DEFAULTS.distribution;
  if (distribution !== 'affinity' && distribution !== 'dynamic') throw new RunError(`distribution: expected affinity or dynamic, got "${String(distribution)}"`, 2);
  const cachesName = opts.caches ?? RUN_DEFAULTS.caches;
  if (!Object.prototype.hasOwnProperty.call(CACHE_PRESETS, cachesName)) {
    throw new RunError(`unknown cache preset "${cachesName}" (presets: ${presetNames().join(', ')})`, 2);
  }
  // "none" runs the caching front end with no structures, so walks and descriptor reads are counted.
  const cache: CacheConfig = CACHE_PRESETS[cachesName] ?? { name: 'none' };
  const units = opts.units ?? Math.min(64, availableParallelism());
  const seed = opts.seed ?? RUN_DEFAULTS.seed;
  const batchSize = opts.batch ?? RUN_DEFAULTS.batch;
  const every = opts.invalidateEvery ?? 0;

  // The topology first (cheap), so that its errors come before the tables are built.
  const topo = loadTopology(opts.topology ?? RUN_DEFAULTS.topology);
  const resolved = resolveTopology(topo.spec);
  const unknown = opts.smmu !== undefined ? unknownSmmu(topo.spec, opts.smmu) : null;
  if (unknown !== null) throw new RunError(unknown, 2);

  // The workload and its footprint.
  const plan = opts.trace !== undefined ? planTrace(opts.trace, opts.count, seed) : planGenerator(opts.workload ?? RUN_DEFAULTS.workload, seed);
  const pages = checkFootprint(plan.regions, plan.source);
  if (plan.streams.length === 0) throw new RunError(`${plan.source}: the workload has no streams`, 1);
  const limit: RunReport['limit'] =
    opts.count !== undefined
      ? { kind: 'count', value: plan.records === null ? opts.count : Math.min(opts.count, plan.records) }
      : opts.seconds !== undefined || plan.records === null
        ? { kind: 'seconds', value: opts.seconds ?? RUN_DEFAULTS.seconds }
        : { kind: 'trace', value: plan.records };

  const tables = buildNestedRegions(plan.regions, seed);

  // The topology's SMMUs over the tables' memory, and the devices in use.
  const machine = new TopologyMachine(resolved, tables.mem);
  const picked = pickDmaSmmu(machine, topo.spec, resolved, opts.smmu);
  if ('error' in picked) throw new RunError(picked.error, picked.usage ? 2 : 1);
  const { unit, devices } = picked;
  const assignments: StreamAssignment[] = plan.streams.map((ws, i) => {
    const d = devices[i % devices.length]!;
    return { workloadSid: ws, device: masterName(d.master), sid: d.sid, group: d.group.id };
  });
  const sidOf = new Map(assignments.map((a) => [a.workloadSid, a.sid]));

  // One VM, one domain: stage 2 and a nested domain over it; attach every group in use.
  let nested: Domain;
  try {
    const s2 = unit.driver.createDomain('s2', tables.stage2);
    nested = unit.driver.createDomain('nested', tables.stage1, s2);
    const groups = new Set<number>();
    for (const a of assignments) {
      if (groups.has(a.group)) continue;
      groups.add(a.group);
      machine.attachGroup(a.group, nested);
    }
  } catch (e) {
    if (e instanceof DriverError) throw new RunError(`${unit.spec.name}: ${e.message}`, 1);
    if (e instanceof AttachError) throw new RunError(e.message, 1);
    throw e;
  }
  const topoSids = [...new Set(assignments.map((a) => a.sid))];

  // The farm.
  const t0 = performance.now();
  let farm: Farm;
  try {
    farm = await Farm.start({ mem: tables.mem, units, cache, distribution, capacity: batchSize });
  } catch (e) {
    if (e instanceof FarmError) throw new RunError(e.message, 1);
    throw e;
  }
  const farmStartMs = performance.now() - t0;
  const maint = new FarmMaintenance(farm, opts.dropInvalidations === true);
  const faultCounts = new Float64Array(FAULT_NAMES.length);
  let aborts = 0;
  let translations = 0;
  let elapsedMs = 0;
  const inv = { events: 0, unmappedAccesses: 0, staleTranslations: 0 };
  let stats: UnitStats[];
  let layers: LayerReport | null = null;
  try {
    farm.loadConfig(unit.smmu, topoSids);
    unit.smmu.cache = maint;

    const src = plan.open();
    const b: Batch = createBatch(batchSize);
    const sids = new Int32Array(batchSize);
    const pa = new Float64Array(batchSize);
    const status = new Int8Array(batchSize);
    const stage1: PageTable = tables.stage1;
    const target = limit.kind === 'seconds' ? Infinity : limit.value!;
    const start = performance.now();
    const deadline = limit.kind === 'seconds' ? start + limit.value! * 1000 : Infinity;
    let k = 0;
    let lastYieldMs = 0;
    // Affinity farms overlap batches: batch k+1 is generated and submitted while the units
    // translate batch k (Farm.submit / collect). A batch with an unmap event runs alone.
    const pipelined = distribution === 'affinity';
    let inFlight = 0;
    let inFlightN = 0;
    const count = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const s = status[i]!;
        if (s === RES_OK) continue;
        if (s === RES_ABORT) aborts++;
        else faultCounts[s]!++;
      }
    };
    const drain = (): void => {
      if (inFlight === 0) return;
      farm.collect(inFlight, pa, status);
      count(inFlightN);
      inFlight = 0;
    };
    try {
      while (translations < target && performance.now() < deadline && opts.signal?.aborted !== true) {
        const got = src.fill(b);
        const n = Math.min(got, target - translations);
        if (n <= 0) break;
        let lastW = -1;
        let lastT = -1;
        for (let i = 0; i < n; i++) {
          const ws = b.sid[i]!;
          if (ws !== lastW) {
            lastW = ws;
            lastT = sidOf.get(ws) ?? -1; // every stream was seen by the plan
          }
          sids[i] = lastT;
        }
        k++;
        let page = -1;
        let leafPa = 0;
        if (every > 0 && k % every === 0) {
          drain();
          page = Math.floor(b.va[0]! / 4096) * 4096;
          const leaf = stage1.lookup(page);
          if (leaf === null) page = -1;
          else {
            leafPa = leaf.pa;
            unit.driver.unmap(nested, page, 4096); // TLBIVA + TLBSYNC through the registers: the farm's invalidate + sync
          }
        }
        if (pipelined && page < 0) {
          const d = farm.submit(sids, b.va, b.acc, n);
          drain(); // the previous batch, translated meanwhile
          inFlight = d;
          inFlightN = n;
        } else {
          drain();
          farm.translate(sids, b.va, b.acc, n, pa, status);
          count(n);
        }
        if (page >= 0) {
          inv.events++;
          for (let i = 0; i < n; i++) {
            if (Math.floor(b.va[i]! / 4096) * 4096 !== page) continue;
            inv.unmappedAccesses++;
            if (status[i] === RES_OK) inv.staleTranslations++;
          }
          unit.driver.map(nested, page, leafPa, 4096, TABLE_PROT); // make: no invalidation needed for a new entry
        }
        translations += n;
        elapsedMs = performance.now() - start;
        // The loop is synchronous: give the event loop a turn now and then so that a SIGINT
        // handler can abort it (about every 50 ms; a batch takes a few milliseconds).
        if (opts.signal !== undefined && elapsedMs - lastYieldMs >= 50) {
          lastYieldMs = elapsedMs;
          await new Promise<void>((r) => setImmediate(r));
        }
        if (opts.onProgress !== undefined) {
          const fraction = limit.kind === 'seconds' ? Math.min(1, elapsedMs / (limit.value! * 1000)) : translations / target;
          opts.onProgress({ translations, elapsedMs, fraction });
        }
      }
      drain();
    } finally {
      src.close?.();
    }
    elapsedMs = performance.now() - start;
    stats = farm.unitStats();
    if (opts.layers !== undefined && opts.layers > 0 && opts.signal?.aborted !== true) layers = measureLayers(unit.smmu, cache, plan, sidOf, opts.layers, batchSize);
  } catch (e) {
    if (e instanceof TraceError) throw new RunError(e.message, 1);
    throw e;
  } finally {
    unit.smmu.cache = new NoCache();
    await farm.close();
  }

  const sum = (f: (s: UnitStats) => number): number => stats.reduce((a, s) => a + f(s), 0);
  const total = sum((s) => s.translations);
  const totalAborts = sum((s) => s.aborts);
  const faultsByKind: Record<string, number> = {};
  for (let i = 1; i < FAULT_NAMES.length; i++) faultsByKind[FAULT_NAMES[i]!] = faultCounts[i]!;
  const seconds = elapsedMs / 1000;
  return {
    workload: { source: plan.source, name: plan.name, seed, streams: plan.streams },
    topology: { name: topo.spec.name, source: topo.source, smmu: unit.spec.name, streams: assignments },
    caches: cachesName,
    units,
    distribution,
    limit,
    interrupted: opts.signal?.aborted === true,
    tables: { pages, regions: plan.regions.length, buildMs: tables.buildMs },
    farmStartMs,
    translations: total,
    seconds,
    translationsPerSecond: ratio(total, seconds),
    hitRate: ratio(sum((s) => s.hits), total - totalAborts),
    walksPerTranslation: ratio(sum((s) => s.walks), total),
    descriptorReadsPerTranslation: ratio(sum((s) => s.descriptorReads), total),
    faults: sum((s) => s.faults),
    faultsByKind,
    aborts: totalAborts,
    invalidations: { issued: maint.issued, syncs: maint.syncs, applied: sum((s) => s.invalidationsApplied), ...inv },
    perUnit: stats.map((s, u) => ({
      unit: u,
      translations: s.translations,
      hitRate: ratio(s.hits, s.translations - s.aborts),
      walksPerTranslation: ratio(s.walks, s.translations),
      descriptorReadsPerTranslation: ratio(s.descriptorReads, s.translations),
      faults: s.faults,
      aborts: s.aborts,
      invalidationsApplied: s.invalidationsApplied,
      busyMs: s.busyMs,
    })),
    layers,
  };
}

/** The SMMU model's access kind for a request's kind code (REQ_READ, REQ_WRITE, REQ_EXEC: bits [1:0]). */
const ACCESS_OF: ReadonlyArray<'r' | 'w' | 'x'> = ['r', 'w', 'x', 'r'];

/**
 * The `layers` pass: the workload's first 2n requests through `smmu.dma()` on this thread with a
 * fresh TranslationCaches of `config`; the first n warm the caches, the next n are timed.
 */
function measureLayers(smmu: Smmu, config: CacheConfig, plan: WorkloadPlan, sidOf: Map<number, number>, n: number, batchSize: number): LayerReport {
  const clockMs = LayerClock.calibrate();
  const saved = smmu.cache;
  const clock = new LayerClock();
  smmu.cache = new TranslationCaches(config);
  const src = plan.open();
  const b = createBatch(batchSize);
  try {
    let done = 0;
    while (done < 2 * n) {
      const got = src.fill(b);
      if (got <= 0) break;
      for (let i = 0; i < got && done < 2 * n; i++, done++) {
        if (done === n) smmu.layers = clock;
        const a = b.acc[i]!;
        smmu.dma(sidOf.get(b.sid[i]!) ?? -1, b.va[i]!, ACCESS_OF[a & 3]!, (a & REQ_UNPRIV) === 0);
      }
    }
  } finally {
    smmu.layers = null;
    smmu.cache = saved;
    src.close?.();
  }
  return { transactions: clock.transactions, clockNs: clockMs * 1e6, rows: layerRows(clock, clockMs) };
}

/** Reads a workload configuration file (JSON) for `workload`. */
export function readWorkloadFile(file: string): WorkloadConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new RunError(`${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 1);
  }
  try {
    return JSON.parse(text) as WorkloadConfig;
  } catch (e) {
    throw new RunError(`${file}: not valid JSON (${(e as Error).message})`, 1);
  }
}
