/**
 * The `invalidation` suite's measurable logic (bench/invalidation.ts runs it):
 *
 * 1. Unmap policies under map/DMA/unmap traffic (`measurePolicies`): a NIC
 *    driver's dma_map/dma_unmap per receive buffer (Linux iommu-dma) through
 *    the translation farm, whose TLBI publish and sync are the real Atomics
 *    protocol of src/farm/invalidator.ts. Policies: none (no invalidation: the
 *    baseline), strict (TLBIVAL + sync per unmap), batched (TLBIVAL per unmap,
 *    one sync per `batch` unmaps; IOVAs reused only after that sync) and
 *    deferred (Linux's flush queue: unmapped IOVAs wait in a queue of `fq`,
 *    released after one TLBIASID + sync). Every DMA translation is checked
 *    against the buffer it must reach, and `policyWindows` checks what an
 *    unmapped IOVA gives before and after each policy's sync.
 * 2. Combined vs split stage entries under stage-2 changes (`measureStage2Rates`):
 *    KVM migrates one guest page every N translations (unmap, TLBIIPAS2, with
 *    KVM's rule also TLBIVMID, then map at a new frame), while a device
 *    translates through TranslationCaches; every translation is checked.
 * 3. Fan-out (`measureFanOut`): one CPU-side stage-2 change, made visible to
 *    1..D devices behind one SMMU or behind one SMMU each (the register model
 *    and its driver: TLBIIPAS2 + TLBSYNC, TLBIVMID + sTLBGSYNC per SMMU).
 *    The farm's sync with 1..U busy units is in bench/invalidation.ts.
 */

import { TranslationCaches } from '../cache/caches.js';
import { CACHE_PRESETS } from '../cache/presets.js';
import { ArmSmmuDriver, type Domain } from '../driver/arm-smmu.js';
import { Farm } from '../farm/farm.js';
import { REQ_WRITE, RES_OK } from '../farm/unit.js';
import { PhysMem } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, PageTable } from '../pgtable/builder.js';
import { Regime, decodeStage1, decodeStage2 } from '../pgtable/regime.js';
import { IpaTables, PhysTables } from '../pgtable/table-memory.js';
import { encodeIds } from '../smmu/id.js';
import { Smmu } from '../smmu/smmu.js';
import { ACC_READ, FAULT_TRANSLATION, WalkResult } from '../walk/result.js';
import { mulberry32 } from '../workloads/nested-4k-1g.js';

// ---------------------------------------------------------------------------
// A small nested world: a guest stage 1 (tables at IPAs) over a KVM stage 2,
// 4 KiB pages at both stages.
// ---------------------------------------------------------------------------

const PAGE = 4096;
const RW = PROT_READ | PROT_WRITE | PROT_CACHE;
export const LAYOUT = {
  guestTablesIpa: 0x4000_0000,
  guestTablesBytes: 4 << 20,
  hostTablesPa: 0x4040_0000,
  hostTablesBytes: 12 << 20,
  ramIpa: 0x1_0000_0000,
  dataPa: 0x8000_0000,
  dataBytes: 32 << 20,
  /** Device IOVAs (guest stage-1 input addresses) start here. */
  iovaBase: 0x10_0000_0000,
  vmid: 1,
  asid: 1,
} as const;

export interface World {
  mem: PhysMem;
  stage1: PageTable;
  stage2: PageTable;
  /** Guest RAM pages mapped at stage 2 (IPA ramIpa + i * 4096). */
  ramPages: number;
  /** The PA guest page i lives at now (frame set 0 or 1). */
  paOf(i: number): number;
  ipaOf(i: number): number;
  /** KVM moves guest page i to its other frame at stage 2 (unmap then map: break-before-make); returns its IPA. */
  movePage(i: number, between: (ipa: number) => void): number;
  nested(): Regime;
}

export function buildWorld(ramPages: number): World {
  const L = LAYOUT;
  if (2 * ramPages * PAGE > L.dataBytes) throw new RangeError(`${ramPages} guest pages need more than ${L.dataBytes} bytes of data frames`);
  const mem = PhysMem.create({
    regions: [
      { base: L.guestTablesIpa, size: L.guestTablesBytes + L.hostTablesBytes, name: 'page tables' },
      { base: L.dataPa, size: L.dataBytes, name: 'data' },
    ],
  });
  const stage2 = new PageTable({ stage: 2, granule: 4, ias: 48, oas: 48, tables: new PhysTables(mem, L.hostTablesPa, L.hostTablesPa + L.hostTablesBytes), vmid: L.vmid });
  for (let off = 0; off < L.guestTablesBytes; off += PAGE) stage2.map(L.guestTablesIpa + off, L.guestTablesIpa + off, PAGE, RW);
  const frameSet = new Uint8Array(ramPages);
  const paOf = (i: number): number => L.dataPa + (frameSet[i]! * ramPages + i) * PAGE;
  const ipaOf = (i: number): number => L.ramIpa + i * PAGE;
  for (let i = 0; i < ramPages; i++) stage2.map(ipaOf(i), paOf(i), PAGE, RW);
  const stage1 = new PageTable({ stage: 1, granule: 4, ias: 48, oas: 48, tables: new IpaTables(mem, stage2, L.guestTablesIpa, L.guestTablesIpa + L.guestTablesBytes), asid: L.asid });
  return {
    mem,
    stage1,
    stage2,
    ramPages,
    paOf,
    ipaOf,
    movePage(i, between) {
      const ipa = ipaOf(i);
      if (stage2.unmap(ipa, PAGE) !== PAGE) throw new Error(`stage 2: guest page ${i} was not mapped`);
      between(ipa);
      frameSet[i] = 1 - frameSet[i]!;
      stage2.map(ipa, paOf(i), PAGE, RW);
      return ipa;
    },
    nested: () => decodeStage2(stage2.stage2Fields(), decodeStage1(stage1.stage1Fields(), new Regime())),
  };
}

// ---------------------------------------------------------------------------
// 1. Unmap policies through the farm
// ---------------------------------------------------------------------------

export const POLICIES = ['none', 'strict', 'batched', 'deferred'] as const;
export type Policy = (typeof POLICIES)[number];

export interface PolicyOptions {
  /** Timed rounds; every policy runs once per round (in rotated order). */
  rounds: number;
  /** dma_map/DMA/dma_unmap operations per policy per round. */
  ops: number;
  /** Buffers mapped, DMAed into and unmapped per NAPI poll (one farm batch). */
  napi?: number;
  /** DMA translations per buffer (writes at distinct offsets of its page). */
  dmaPerBuffer?: number;
  /** Batched: unmaps per sync. */
  batch?: number;
  /** Deferred: flush-queue entries per TLBIASID + sync. */
  fq?: number;
  /** Translation units (default 1). */
  units?: number;
  /** Progress lines (stderr in the bench program). */
  log?: (line: string) => void;
}

export interface PolicyRow {
  policy: Policy;
  /** Per round. */
  opsPerSec: number[];
  /** Per round: ops/s over the no-invalidation baseline's ops/s of the same round. */
  relative: number[];
  /** Counts of one run (every run reproduces them; checked). */
  tlbiPerOp: number;
  syncsPerOp: number;
  hitRate: number;
  readsPerTranslation: number;
  /** DMA translations that reached a PA other than their buffer's (possible only without invalidation). */
  stale: number;
  translations: number;
}

export interface PolicyWindow {
  policy: Policy;
  unmapped: number;
  /** Unmapped IOVAs the device could still translate before the policy's (next) sync. */
  reachableBeforeSync: number;
  /** ... and after it (0 for every policy that invalidates; checked). */
  reachableAfterSync: number;
}

export interface PolicyReport {
  rows: PolicyRow[];
  windows: PolicyWindow[];
  napi: number;
  dmaPerBuffer: number;
  batch: number;
  fq: number;
  units: number;
  buffers: number;
}

const BUFFERS = 1024;
const IOVA_PAGES = 4096;

interface Counters {
  tlbi: number;
  syncs: number;
}

/** The driver side of one policy over the farm: IOVA allocation, unmap and invalidation. */
class DmaDriver {
  private free: number[] = [];
  private pending: number[] = [];
  readonly n: Counters = { tlbi: 0, syncs: 0 };

  constructor(
    private readonly farm: Farm,
    private readonly stage1: PageTable,
    readonly policy: Policy,
    private readonly batch: number,
    private readonly fq: number,
  ) {
    this.reset();
  }

  reset(): void {
    // A LIFO of free IOVA pages, as Linux's per-CPU IOVA caches reuse the most recently freed first.
    this.free = Array.from({ length: IOVA_PAGES }, (_, i) => LAYOUT.iovaBase + (IOVA_PAGES - 1 - i) * PAGE);
    this.pending = [];
    this.n.tlbi = 0;
    this.n.syncs = 0;
  }

  map(ipa: number): number {
    const iova = this.free.pop();
    if (iova === undefined) throw new Error(`${this.policy}: out of IOVA space`);
    this.stage1.map(iova, ipa, PAGE, RW);
    return iova;
  }

  private tlbiVal(iova: number): void {
    this.n.tlbi++;
    this.farm.invalidate({ kind: 'va', vmid: LAYOUT.vmid, asid: LAYOUT.asid, allAsids: false, va: iova, leaf: true });
  }

  private sync(): void {
    this.n.syncs++;
    this.farm.sync();
  }

  unmap(iova: number): void {
    if (this.stage1.unmap(iova, PAGE) !== PAGE) throw new Error(`${this.policy}: IOVA 0x${iova.toString(16)} was not mapped`);
    switch (this.policy) {
      case 'none':
        this.free.push(iova);
        return;
      case 'strict':
        this.tlbiVal(iova);
        this.sync();
        this.free.push(iova);
        return;
      case 'batched':
        this.tlbiVal(iova);
        this.pending.push(iova);
        if (this.pending.length >= this.batch) this.drain();
        return;
      case 'deferred':
        this.pending.push(iova);
        if (this.pending.length >= this.fq) this.drain();
        return;
    }
  }

  /** The policy's sync point: batched syncs; deferred flushes the domain (TLBIASID) and syncs; then the IOVAs are free again. */
  drain(): void {
    if (this.pending.length === 0) return;
    if (this.policy === 'deferred') {
      this.n.tlbi++;
      this.farm.invalidate({ kind: 'asid', vmid: LAYOUT.vmid, asid: LAYOUT.asid });
    }
    this.sync();
    for (const v of this.pending) this.free.push(v);
    this.pending = [];
  }
}

/** Starts a farm translating `world`'s nested domain for streams 0..15 (context bank via a driver on an SMMU model). */
async function startFarm(world: World, units: number, capacity: number): Promise<Farm> {
  const smmu = new Smmu(encodeIds({ smrs: 16, contextBanks: 8, s2OnlyBanks: 2 }), world.mem);
  const drv = new ArmSmmuDriver(smmu);
  drv.probe();
  drv.reset();
  drv.attach(drv.createDomain('nested', world.stage1, drv.createDomain('s2', world.stage2)), [{ id: 0, mask: 15 }]);
  const farm = await Farm.start({ mem: world.mem, units, cache: CACHE_PRESETS.mmu600!, distribution: 'affinity', capacity });
  farm.loadConfig(smmu, Array.from({ length: 16 }, (_, i) => i));
  return farm;
}

function flushFarm(farm: Farm): void {
  farm.invalidate({ kind: 'all' });
  farm.sync();
}

export async function measurePolicies(o: PolicyOptions): Promise<PolicyReport> {
  const napi = o.napi ?? 64;
  const k = o.dmaPerBuffer ?? 4;
  const batch = o.batch ?? 32;
  const fq = o.fq ?? 256;
  const units = o.units ?? 1;
  const log = o.log ?? ((): void => {});
  if (o.ops % napi !== 0) throw new RangeError(`ops (${o.ops}) must be a multiple of the NAPI budget (${napi})`);
  const world = buildWorld(BUFFERS);
  const farm = await startFarm(world, units, napi * k);
  try {
    const n = napi * k;
    const sids = new Int32Array(n);
    const vas = new Float64Array(n);
    const accs = new Uint8Array(n).fill(REQ_WRITE);
    const pa = new Float64Array(n);
    const st = new Int8Array(n);
    const want = new Float64Array(n);
    const iovas = new Float64Array(napi);
    const drivers = new Map<Policy, DmaDriver>(POLICIES.map((p) => [p, new DmaDriver(farm, world.stage1, p, batch, fq)]));
    const rows = new Map<Policy, PolicyRow>(POLICIES.map((p) => [p, { policy: p, opsPerSec: [], relative: [], tlbiPerOp: 0, syncsPerOp: 0, hitRate: 0, readsPerTranslation: 0, stale: 0, translations: 0 }]));
    const sumStats = (): { t: number; h: number; r: number } => farm.unitStats().reduce((a, s) => ({ t: a.t + s.translations, h: a.h + s.hits, r: a.r + s.descriptorReads }), { t: 0, h: 0, r: 0 });

    /** One run of `ops` operations under a policy: returns ops/s and the counts. */
    const runOnce = (d: DmaDriver): { opsPerSec: number; stale: number; t: number; h: number; r: number } => {
      d.reset();
      flushFarm(farm);
      const s0 = sumStats();
      let stale = 0;
      let op = 0;
      const t0 = performance.now();
      while (op < o.ops) {
        // Refill: dma_map one page-sized receive buffer per ring slot.
        for (let j = 0; j < napi; j++) {
          const buf = (op + j) % BUFFERS;
          iovas[j] = d.map(world.ipaOf(buf));
          for (let a = 0; a < k; a++) {
            const off = ((a * PAGE) / k) | 0;
            sids[j * k + a] = j & 3; // four receive queues
            vas[j * k + a] = iovas[j]! + off;
            want[j * k + a] = world.paOf(buf) + off;
          }
        }
        // The device writes the packets.
        farm.translate(sids, vas, accs, n, pa, st);
        for (let i = 0; i < n; i++) {
          if (st[i] !== RES_OK) throw new Error(`${d.policy}: DMA to a mapped IOVA 0x${vas[i]!.toString(16)} failed (status ${st[i]})`);
          if (pa[i] !== want[i]) {
            if (d.policy !== 'none') throw new Error(`${d.policy}: DMA to IOVA 0x${vas[i]!.toString(16)} reached PA 0x${pa[i]!.toString(16)}, not its buffer at 0x${want[i]!.toString(16)}: a stale translation`);
            stale++;
          }
        }
        // Completion: dma_unmap each buffer.
        for (let j = 0; j < napi; j++) d.unmap(iovas[j]!);
        op += napi;
      }
      d.drain();
      const ms = performance.now() - t0;
      const s1 = sumStats();
      return { opsPerSec: o.ops / (ms / 1000), stale, t: s1.t - s0.t, h: s1.h - s0.h, r: s1.r - s0.r };
    };

    // Warm-up (JIT, farm): one short run of each policy, uncounted.
    for (const p of POLICIES) runOnce(drivers.get(p)!);
    for (let r = 0; r < o.rounds; r++) {
      const order = POLICIES.map((_, i) => POLICIES[(i + r) % POLICIES.length]!);
      const ops: Partial<Record<Policy, number>> = {};
      for (const p of order) {
        const d = drivers.get(p)!;
        const x = runOnce(d);
        const row = rows.get(p)!;
        const counts = { tlbiPerOp: d.n.tlbi / o.ops, syncsPerOp: d.n.syncs / o.ops, hitRate: x.h / x.t, readsPerTranslation: x.r / x.t, stale: x.stale, translations: x.t };
        if (r === 0) Object.assign(row, counts);
        else {
          for (const [key, v] of Object.entries(counts)) {
            if (row[key as keyof typeof counts] !== v) throw new Error(`${p}: ${key} was ${row[key as keyof typeof counts]} in round 1 and ${v} in round ${r + 1}: the counts are not deterministic`);
          }
        }
        row.opsPerSec.push(x.opsPerSec);
        ops[p] = x.opsPerSec;
        log(`${p}: ${(x.opsPerSec / 1e3).toFixed(1)} k ops/s`);
      }
      for (const p of POLICIES) rows.get(p)!.relative.push(ops[p]! / ops.none!);
    }
    const windows = POLICIES.map((p) => policyWindow(farm, world, drivers.get(p)!, batch + batch / 2));
    return { rows: POLICIES.map((p) => rows.get(p)!), windows, napi, dmaPerBuffer: k, batch, fq, units, buffers: BUFFERS };
  } finally {
    await farm.close();
  }
}

/**
 * The safety check: map `m` buffers, DMA to each (the TLB now holds them), unmap all under the
 * policy, then DMA to every unmapped IOVA before and after the policy's sync. After it, every
 * invalidating policy must give a translation fault; strict must already before.
 */
function policyWindow(farm: Farm, world: World, d: DmaDriver, m: number): PolicyWindow {
  d.reset();
  flushFarm(farm);
  const iovas = Array.from({ length: m }, (_, j) => d.map(world.ipaOf(j)));
  const sids = new Int32Array(m);
  const vas = Float64Array.from(iovas);
  const accs = new Uint8Array(m).fill(REQ_WRITE);
  const pa = new Float64Array(m);
  const st = new Int8Array(m);
  const reachable = (): number => {
    farm.translate(sids, vas, accs, m, pa, st);
    let ok = 0;
    for (let j = 0; j < m; j++) {
      if (st[j] === RES_OK) ok++;
      else if (st[j] !== FAULT_TRANSLATION) throw new Error(`${d.policy}: an unmapped IOVA gave status ${st[j]}, expected a translation fault`);
    }
    return ok;
  };
  if (reachable() !== m) throw new Error(`${d.policy}: a mapped buffer could not be reached`);
  for (const v of iovas) d.unmap(v);
  const before = reachable();
  d.drain();
  const after = reachable();
  if (d.policy === 'strict' && before !== 0) throw new Error(`strict: ${before} of ${m} IOVAs were still reachable after unmap + TLBIVAL + sync`);
  if (d.policy !== 'none' && after !== 0) throw new Error(`${d.policy}: ${after} of ${m} IOVAs were still reachable after the policy's sync`);
  d.reset();
  flushFarm(farm);
  return { policy: d.policy, unmapped: m, reachableBeforeSync: before, reachableAfterSync: after };
}

// ---------------------------------------------------------------------------
// 2. Combined vs split entries under stage-2 changes
// ---------------------------------------------------------------------------

export interface Stage2Strategy {
  name: string;
  preset: string;
  /** KVM's rule: after TLBIIPAS2, TLBIVMID (every stage-1 entry of the VMID). */
  vmidFlush: boolean;
}

export const S2_STRATEGIES: readonly Stage2Strategy[] = [
  { name: 'combined + KVM rule', preset: 'combined', vmidFlush: true },
  { name: 'combined-conservative, TLBIIPAS2 alone', preset: 'combined-conservative', vmidFlush: false },
  { name: 'split, TLBIIPAS2 alone', preset: 'split', vmidFlush: false },
  { name: 'split + KVM rule', preset: 'split', vmidFlush: true },
  { name: 'mmu600 + KVM rule', preset: 'mmu600', vmidFlush: true },
];

/** Unsafe, for tests: combined entries with TLBIIPAS2 alone (the architecture lets them survive it). */
export const S2_UNSAFE: Stage2Strategy = { name: 'combined, TLBIIPAS2 alone (unsafe)', preset: 'combined', vmidFlush: false };

export interface Stage2Options {
  rounds: number;
  /** Translations counted per point. */
  translations: number;
  /** Translations per stage-2 change; 0 = no changes. */
  rates: number[];
  /** Device footprint in pages (the guest has 4x as many; changes go round all of them). */
  footprint?: number;
  strategies?: readonly Stage2Strategy[];
  log?: (line: string) => void;
}

export interface Stage2Row {
  strategy: string;
  /** Translations per stage-2 change (0: none). */
  every: number;
  changes: number;
  hitRate: number;
  readsPerTranslation: number;
  tlbiPerChange: number;
  translationsPerSec: number[];
  /** Per round, over the same strategy with no changes in that round. */
  relative: number[];
}

export function measureStage2Rates(o: Stage2Options): Stage2Row[] {
  const F = o.footprint ?? 256;
  const strategies = o.strategies ?? S2_STRATEGIES;
  const log = o.log ?? ((): void => {});
  const world = buildWorld(4 * F);
  const vaOf = (p: number): number => LAYOUT.iovaBase + p * PAGE;
  for (let p = 0; p < F; p++) world.stage1.map(vaOf(p), world.ipaOf(p), PAGE, RW);
  const regime = world.nested();
  const rand = mulberry32(7);
  const T = o.translations;
  const warm = 4 * F;
  const pages = new Int32Array(T + warm);
  const offs = new Int32Array(T + warm);
  for (let i = 0; i < T + warm; i++) {
    pages[i] = Math.floor(rand() * F);
    offs[i] = Math.floor(rand() * 64) * 64;
  }
  const rows = new Map<string, Stage2Row>();
  const res = new WalkResult();
  for (let r = 0; r < o.rounds; r++) {
    for (const s of strategies) {
      let base = 0;
      for (const every of o.rates) {
        const c = new TranslationCaches(CACHE_PRESETS[s.preset]!);
        let tlbi = 0;
        let change = 0;
        const translateAt = (i: number): void => {
          const p = pages[i]!;
          if (!c.translate(world.mem, regime, 0, 0, vaOf(p) + offs[i]!, ACC_READ, res)) throw new Error(`${s.name}: translation of device page ${p} faulted (${res.faultName})`);
          if (res.pa !== world.paOf(p) + offs[i]!) throw new Error(`${s.name}, a change every ${every}: device page ${p} translated to 0x${res.pa.toString(16)}, not 0x${(world.paOf(p) + offs[i]!).toString(16)}: a stale entry survived the stage-2 change`);
        };
        for (let i = 0; i < warm; i++) translateAt(T + i);
        const s0 = { ...c.stats };
        const t0 = performance.now();
        for (let i = 0; i < T; i++) {
          if (every > 0 && i % every === every - 1) {
            // KVM migrates a guest page: break, TLBIIPAS2 (+ TLBIVMID), make. A quarter of the guest's pages are the device's.
            world.movePage((change++ * 97) % world.ramPages, (ipa) => {
              c.invalidate({ kind: 'ipa', vmid: LAYOUT.vmid, ipa, leaf: true });
              tlbi++;
              if (s.vmidFlush) {
                c.invalidate({ kind: 'vmid', vmid: LAYOUT.vmid });
                tlbi++;
              }
            });
          }
          translateAt(i);
        }
        const tps = T / ((performance.now() - t0) / 1000);
        const key = `${s.name}\u0000${every}`;
        const counts = { changes: change, hitRate: (c.stats.hits - s0.hits) / T, readsPerTranslation: (c.stats.descriptorReads - s0.descriptorReads) / T, tlbiPerChange: change > 0 ? tlbi / change : 0 };
        let row = rows.get(key);
        if (row === undefined) {
          row = { strategy: s.name, every, ...counts, translationsPerSec: [], relative: [] };
          rows.set(key, row);
        } else if (row.hitRate !== counts.hitRate || row.readsPerTranslation !== counts.readsPerTranslation) {
          throw new Error(`${s.name}, a change every ${every}: counts differ between rounds`);
        }
        row.translationsPerSec.push(tps);
        if (every === 0) base = tps;
        row.relative.push(base > 0 ? tps / base : 1);
        if (r === 0) log(`${s.name}, change every ${every || 'never'}: ${(100 * counts.hitRate).toFixed(1)}% hits, ${counts.readsPerTranslation.toFixed(2)} reads/translation`);
      }
    }
  }
  return [...rows.values()];
}

// ---------------------------------------------------------------------------
// 3. Fan-out of one CPU-side change through the register model
// ---------------------------------------------------------------------------

export type Arrangement = 'one SMMU per device' | 'devices behind one SMMU';
export const ARRANGEMENTS: readonly Arrangement[] = ['one SMMU per device', 'devices behind one SMMU'];

export interface FanOutOptions {
  rounds: number;
  devices: number[];
  /** Changes timed per round and point. */
  changes: number;
  /** Guest pages each device has touched before each change (its entries). */
  touched?: number;
  log?: (line: string) => void;
  /** Internal: skip the untimed warm-up pass (JIT) over the smallest points. */
  noWarmUp?: boolean;
}

export interface FanOutRow {
  arrangement: Arrangement;
  devices: number;
  smmus: number;
  tlbiPerChange: number;
  syncsPerChange: number;
  /** Per round: microseconds from the stage-2 unmap to the last sync's completion. */
  usPerChange: number[];
}

/**
 * One stage-2 change (KVM moves a guest page that `devices` assigned devices may have cached):
 * per SMMU that may hold entries, TLBIIPAS2 + TLBSYNC and TLBIVMID + sTLBGSYNC (KVM's rule), as
 * Stage2Owner does. Devices are stage-2-only streams of the VM, each with the mmu600 caches
 * (a micro-TLB per stream). After every change each device must reach the page's new frame.
 */
export function measureFanOut(o: FanOutOptions): FanOutRow[] {
  const touched = o.touched ?? 64;
  const log = o.log ?? ((): void => {});
  if (o.noWarmUp !== true) measureFanOut({ ...o, rounds: 1, devices: o.devices.slice(0, 2), changes: 4, log: () => {}, noWarmUp: true });
  const world = buildWorld(Math.max(touched * 2, 256));
  const rows: FanOutRow[] = [];
  for (const arrangement of ARRANGEMENTS) {
    for (const devices of o.devices) {
      const smmuCount = arrangement === 'one SMMU per device' ? devices : 1;
      const sys: Array<{ smmu: Smmu; drv: ArmSmmuDriver; dom: Domain; sids: number[] }> = [];
      for (let i = 0; i < smmuCount; i++) {
        const smmu = new Smmu(encodeIds({ smrs: 16, contextBanks: 8, s2OnlyBanks: 2 }), world.mem, new TranslationCaches(CACHE_PRESETS.mmu600!));
        const drv = new ArmSmmuDriver(smmu);
        drv.probe();
        drv.reset();
        const dom = drv.createDomain('s2', world.stage2);
        const per = arrangement === 'one SMMU per device' ? 1 : devices;
        const mask = per <= 1 ? 0 : (1 << Math.ceil(Math.log2(per))) - 1;
        drv.attach(dom, [{ id: 0, mask }]);
        sys.push({ smmu, drv, dom, sids: Array.from({ length: per }, (_, s) => s) });
      }
      const dmaAll = (page: number): void => {
        for (const x of sys) {
          for (const sid of x.sids) {
            const out = x.smmu.dma(sid, world.ipaOf(page) + 64, 'r', false);
            if (out.kind !== 'pa' || out.pa !== world.paOf(page) + 64) {
              throw new Error(`fan-out (${arrangement}, ${devices}): stream ${sid} reached ${out.kind === 'pa' ? `0x${out.pa.toString(16)}` : out.kind} for guest page ${page}, not 0x${(world.paOf(page) + 64).toString(16)}`);
            }
          }
        }
      };
      const us: number[] = [];
      let tlbi = 0;
      let syncs = 0;
      let changes = 0;
      for (let r = 0; r < o.rounds + 1; r++) {
        let ms = 0;
        for (let c = 0; c < o.changes; c++) {
          for (let p = 0; p < touched; p++) dmaAll(p); // the devices' entries
          const page = (c * 7) % touched;
          const a0 = sys.reduce((a, x) => a + x.drv.accesses.tlbi, 0);
          const y0 = sys.reduce((a, x) => a + x.drv.accesses.syncs, 0);
          const t0 = performance.now();
          world.movePage(page, (ipa) => {
            for (const x of sys) {
              x.drv.flushRange(x.dom, ipa, PAGE, false, true);
              x.drv.flushVmid(x.dom);
            }
          });
          ms += performance.now() - t0;
          if (r > 0) {
            tlbi += sys.reduce((a, x) => a + x.drv.accesses.tlbi, 0) - a0;
            syncs += sys.reduce((a, x) => a + x.drv.accesses.syncs, 0) - y0;
            changes++;
          }
          dmaAll(page); // every device sees the new frame
        }
        if (r > 0) us.push((1000 * ms) / o.changes); // round 0 warms up
      }
      rows.push({ arrangement, devices, smmus: smmuCount, tlbiPerChange: tlbi / changes, syncsPerChange: syncs / changes, usPerChange: us });
      log(`fan-out, ${arrangement}, ${devices} device(s): ${(us.slice().sort((a, b) => a - b)[us.length >> 1]!).toFixed(1)} us per change`);
    }
  }
  return rows;
}
