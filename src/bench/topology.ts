/**
 * The measurable logic of the `topology` benchmark (bench/topology.ts): a
 * ladder of topologies from the `soc` preset to `hyperscale`, with generated
 * sizes between, and for each one what it costs to set the system up, how
 * much memory its model state holds, and the counts that say how big it is.
 *
 * Set-up is split into four phases, each timed on its own:
 *
 * - `spec`: the smmu-topology/1 document (a preset's, or generateTopology's,
 *   built once outside the timing) validated into a TopologySpec
 *   (parseTopologyDoc);
 * - `resolve`: resolveTopology: requester IDs, DMA aliases
 *   (pci_for_each_dma_alias), `iommu-map` RID->SID, IOMMU groups, diagnostics;
 * - `bring-up`: a TopologyMachine: one SMMU model per SMMU, each probed and
 *   reset by its ArmSmmuDriver;
 * - `attach`: every DMA device (PCI endpoints, RC-integrated endpoints,
 *   conventional PCI devices, platform devices: the devices.ts definition)
 *   found with dmaDevicesOn on each SMMU, and the IOMMU group of each,
 *   in topology order, attached as Linux does at probe time: one default
 *   domain per group, so one stage-1 context bank per group, and stream-match
 *   entries (SMRs, masked where an aligned block allows) for its stream IDs.
 *   A group that finds no free context bank or too few free SMRs stays
 *   unattached (the driver leaves the SMMU as it was) and set-up goes on.
 *   Every domain's stage-1 tables are one shared, empty table: tables are not
 *   what this benchmark measures.
 *
 * Set-up time per round is the mean over a number of copies set up one after
 * the other after a full garbage collection (about 1,000 stream IDs' worth: a
 * small topology takes well under a millisecond, which one copy would leave to
 * timer noise).
 *
 * Memory is the growth of the V8 heap (process.memoryUsage().heapUsed) and of
 * ArrayBuffer/SharedArrayBuffer memory (memoryUsage().arrayBuffers) over each
 * phase, per copy: the copies are built phase by phase (every copy's spec, then
 * every copy's resolution, ...) with a full garbage collection and a reading
 * between phases and everything kept referenced, so these are the bytes the
 * topology's model state retains. The shared table memory is allocated before
 * the baseline and is not counted. V8's bytecode flushing is turned off (it
 * would return code memory during a collection and make a phase look smaller).
 *
 * After the first set-up of each topology the stream-match state is checked
 * against the registers: every stream ID of every attached group must match
 * exactly one valid SMR, whose S2CR routes it (TYPE translate) to that group's
 * context bank, and the SMRs must cover no other stream ID.
 */

import { runInNewContext } from 'node:vm';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { DriverError, type Domain } from '../driver/arm-smmu.js';
import { PhysMem } from '../memory/phys.js';
import { createStage1, type PageTable } from '../pgtable/builder.js';
import { PhysTables } from '../pgtable/table-memory.js';
import * as R from '../smmu/regs.js';
import { AttachError, TopologyMachine } from '../topology/attach.js';
import { dmaDevicesOn, pickDmaSmmu } from '../topology/devices.js';
import { parseTopologyDoc, type TopologyDoc } from '../topology/file.js';
import { generateTopology, type GenerateSizes } from '../topology/generate.js';
import type { IommuGroup, Master, ResolvedTopology, TopologySpec } from '../topology/model.js';
import { presetDoc } from '../topology/presets.js';
import { resolveTopology } from '../topology/resolve.js';
import { entryMatches, entrySize } from '../topology/smr.js';

export type Mode = 'full' | 'quick' | 'tiny';

/** One rung of the ladder: a preset, or generated sizes (with their seed). */
export interface Rung {
  name: string;
  kind: 'preset' | 'generated';
  /** What it is, in words (for the Markdown). */
  description: string;
  doc: () => TopologyDoc;
}

const SHAPE = { smrs: 128, sidBits: 15, contextBanks: 128, s2OnlyBanks: 32 };

function generated(name: string, sizes: Omit<GenerateSizes, 'name' | 'smmuShape'>): Rung {
  const hb = sizes.hostBridges ?? Math.max(1, Math.ceil(sizes.smmus / 2));
  const fanout = sizes.switchFanout;
  return {
    name,
    kind: 'generated',
    description:
      `generated (seed ${sizes.seed}): ${sizes.smmus} SMMU${sizes.smmus === 1 ? '' : 's'}, ${hb} root complex${hb === 1 ? '' : 'es'} × ${sizes.rootPorts} Root Ports` +
      `${fanout > 0 ? ` × switches of ${fanout} Downstream Ports` : ''}, ${sizes.functions}-function endpoints, ${sizes.platformDevices ?? sizes.smmus} platform devices`,
    doc: () => generateTopology({ ...sizes, name, smmuShape: SHAPE }),
  };
}

function preset(name: string, description: string): Rung {
  return { name, kind: 'preset', description: `preset: ${description}`, doc: () => presetDoc(name) };
}

/** Every rung, smallest first. */
export const LADDER: readonly Rung[] = [
  preset('soc', '1 SMMU, 6 platform devices, 2 small PCIe root complexes'),
  generated('gen-s1', { smmus: 1, hostBridges: 1, rootPorts: 4, switchFanout: 4, functions: 2, platformDevices: 2, seed: 7 }),
  generated('gen-s2', { smmus: 2, hostBridges: 1, rootPorts: 4, switchFanout: 4, functions: 4, seed: 7 }),
  preset('server', '4 SMMUs, 2 root complexes, 264 PCI functions'),
  generated('gen-s8', { smmus: 8, hostBridges: 4, rootPorts: 8, switchFanout: 8, functions: 4, seed: 7 }),
  generated('gen-s12', { smmus: 12, hostBridges: 6, rootPorts: 8, switchFanout: 8, functions: 6, seed: 7 }),
  preset('hyperscale', '16 SMMUs, 8 root complexes, 4,736 PCI functions'),
];

/** The rungs a mode measures: tiny the smallest three, quick soc, server and hyperscale, full all. */
export function ladder(mode: Mode): Rung[] {
  const names = mode === 'tiny' ? ['soc', 'gen-s1', 'gen-s2'] : mode === 'quick' ? ['soc', 'server', 'hyperscale'] : LADDER.map((r) => r.name);
  return LADDER.filter((r) => names.includes(r.name));
}

// ------------------------------------------------------------------ memory

let gcFn: (() => void) | null | undefined;

/** A full garbage collection (global.gc when node runs with --expose-gc, else one exposed through V8 flags). */
export function fullGc(): void {
  if (gcFn === undefined) {
    setFlagsFromString('--no-flush-bytecode');
    const g = (globalThis as { gc?: () => void }).gc;
    if (typeof g === 'function') gcFn = g;
    else {
      try {
        setFlagsFromString('--expose-gc');
        gcFn = runInNewContext('gc') as () => void;
      } catch {
        gcFn = null;
      }
    }
  }
  if (gcFn === null) throw new Error('cannot force a garbage collection (run node with --expose-gc)');
  gcFn!();
}

interface Mem {
  heap: number;
  buffers: number;
}

/** The V8 heap in use less its code spaces (compiled code is the JIT's, not the model's), and ArrayBuffer memory. */
function memNow(): Mem {
  fullGc();
  let heap = 0;
  for (const s of getHeapSpaceStatistics()) if (!s.space_name.startsWith('code')) heap += s.space_used_size;
  return { heap, buffers: process.memoryUsage().arrayBuffers };
}

// ------------------------------------------------------------------ set-up

export const PHASES = ['spec', 'resolve', 'bring-up', 'attach'] as const;
export type Phase = (typeof PHASES)[number];

/** Function types that master DMA (as src/topology/devices.ts counts them). */
const DMA_TYPES = new Set(['endpoint', 'rc-endpoint', 'pci-device']);

export interface TopologyCounts {
  smmus: number;
  pciFunctions: number;
  platformDevices: number;
  /** PCI endpoints, RC-integrated endpoints, conventional PCI devices and platform devices. */
  dmaDevices: number;
  /** IOMMU groups (all, bridges' included). */
  groups: number;
  /** Distinct (SMMU, stream ID) pairs any master uses. */
  streamIds: number;
  /** Groups holding a DMA device that could be attached on one SMMU. */
  dmaGroups: number;
  /** Groups attached (each to its own default domain). */
  attachedGroups: number;
  /** Context banks holding a domain, over all SMMUs (= attached groups). */
  contextBanksInUse: number;
  /** Context banks the SMMUs implement, in all. */
  contextBanks: number;
  /** Valid SMRs, read back from the registers, over all SMMUs. */
  smrsUsed: number;
  /** SMRs the SMMUs implement, in all. */
  smrs: number;
  /** Stream IDs routed to a context bank. */
  attachedStreamIds: number;
  /** DMA devices whose group is not attached, by why. */
  unattached: { all: number; noContextBank: number; noSmr: number; notAttachable: number };
}

/** Shared stage-1 tables (one empty table for every default domain) and the memory they live in. */
export interface SetupWorld {
  mem: PhysMem;
  table: PageTable;
}

export function setupWorld(): SetupWorld {
  const base = 0x4000_0000;
  const mem = PhysMem.create({ regions: [{ base, size: 1 << 20, name: 'stage-1 tables' }] });
  const tables = new PhysTables(mem, base, base + (1 << 20));
  return { mem, table: createStage1(tables, { granule: 4, ias: 48, oas: 48 }) };
}

export interface SetupResult {
  ms: Record<Phase, number>;
  totalMs: number;
  counts: TopologyCounts;
  spec: TopologySpec;
  resolved: ResolvedTopology;
  machine: TopologyMachine;
  /** The domain of each attached group, by group id. */
  domains: Map<number, Domain>;
}

type Failure = 'noContextBank' | 'noSmr';

/**
 * The attach phase: every DMA device's group, in topology order, to its own default stage-1
 * domain on its SMMU; a group that finds no free context bank or SMRs is left out.
 */
function attachAll(spec: TopologySpec, resolved: ResolvedTopology, machine: TopologyMachine, world: SetupWorld): { domains: Map<number, Domain>; failed: Map<number, Failure> } {
  const domains = new Map<number, Domain>();
  const failed = new Map<number, Failure>();
  for (const s of spec.smmus) {
    const unit = machine.unit(s.name);
    for (const d of dmaDevicesOn(machine, resolved, s.name)) {
      const g = d.group;
      if (domains.has(g.id) || failed.has(g.id)) continue;
      let domain: Domain;
      try {
        domain = unit.driver.createDomain('s1', world.table);
      } catch (e) {
        if (e instanceof DriverError && e.code === 'ENOSPC') {
          failed.set(g.id, 'noContextBank');
          continue;
        }
        throw e;
      }
      try {
        machine.attachGroup(g, domain);
        domains.set(g.id, domain);
      } catch (e) {
        machine.destroyDomain(s.name, domain);
        if (e instanceof AttachError && e.code === 'ENOSPC') {
          failed.set(g.id, 'noSmr');
          continue;
        }
        throw e;
      }
    }
  }
  return { domains, failed };
}

/** Sets a topology up once (see the file comment), timing each phase; then counts what it holds. */
export function setUpTopology(doc: TopologyDoc, file: string, world: SetupWorld): SetupResult {
  let t = performance.now();
  const spec = parseTopologyDoc(doc, file);
  const specMs = performance.now() - t;
  t = performance.now();
  const resolved = resolveTopology(spec);
  const resolveMs = performance.now() - t;
  t = performance.now();
  const machine = new TopologyMachine(resolved, world.mem);
  const bringUpMs = performance.now() - t;
  t = performance.now();
  const { domains, failed } = attachAll(spec, resolved, machine, world);
  const attachMs = performance.now() - t;

  // Counts (outside the timing).
  const dmaMasters: Master[] = [...resolved.functions.filter((f) => DMA_TYPES.has(f.type)), ...resolved.platformDevices];
  const unattached = { all: 0, noContextBank: 0, noSmr: 0, notAttachable: 0 };
  for (const m of dmaMasters) {
    if (domains.has(m.group.id)) continue;
    unattached.all++;
    const why = failed.get(m.group.id);
    if (why === undefined) unattached.notAttachable++;
    else unattached[why]++;
  }
  let smrsUsed = 0;
  let smrs = 0;
  let banks = 0;
  for (const s of spec.smmus) {
    smrsUsed += machine.smrs(s.name).length;
    smrs += machine.unit(s.name).smmu.features.numSmrg;
    banks += machine.unit(s.name).driver.probed.numContextBanks;
  }
  const attachedGroups = [...domains.keys()].map((id) => resolved.groups[id]!);
  const counts: TopologyCounts = {
    smmus: spec.smmus.length,
    pciFunctions: resolved.functions.length,
    platformDevices: resolved.platformDevices.length,
    dmaDevices: dmaMasters.length,
    groups: resolved.groups.length,
    streamIds: [...resolved.streamOwners.values()].reduce((a, m) => a + m.size, 0),
    dmaGroups: domains.size + failed.size,
    attachedGroups: domains.size,
    contextBanksInUse: domains.size,
    contextBanks: banks,
    smrsUsed,
    smrs,
    attachedStreamIds: attachedGroups.reduce((a, g) => a + g.streams.length, 0),
    unattached,
  };
  const ms = { spec: specMs, resolve: resolveMs, 'bring-up': bringUpMs, attach: attachMs };
  return { ms, totalMs: specMs + resolveMs + bringUpMs + attachMs, counts, spec, resolved, machine, domains };
}

/**
 * One round of set-up timing: a full GC, then `copies` set-ups one after the other; each phase's
 * time is the mean over the copies (small topologies take well under a millisecond, so one copy
 * is mostly timer noise). Returns the first copy's result with those means.
 */
export function timeSetup(doc: TopologyDoc, file: string, world: SetupWorld, copies: number): SetupResult {
  fullGc();
  const sum: Record<Phase, number> = { spec: 0, resolve: 0, 'bring-up': 0, attach: 0 };
  let first: SetupResult | null = null;
  for (let i = 0; i < copies; i++) {
    const r = setUpTopology(doc, file, world);
    for (const p of PHASES) sum[p] += r.ms[p];
    first ??= r;
  }
  const ms = { spec: sum.spec / copies, resolve: sum.resolve / copies, 'bring-up': sum['bring-up'] / copies, attach: sum.attach / copies };
  return { ...first!, ms, totalMs: ms.spec + ms.resolve + ms['bring-up'] + ms.attach };
}

export interface MemorySample {
  /** V8 heap growth retained by each phase, per copy (bytes). */
  heap: Record<Phase, number>;
  heapTotal: number;
  /** ArrayBuffer + SharedArrayBuffer growth over the whole set-up, per copy (bytes). */
  buffers: number;
}

/**
 * One round of memory measurement: `copies` set-ups built phase by phase (every copy's spec, a
 * full GC and a reading, every copy's resolution, ...), everything kept referenced, so that each
 * phase's retained bytes per copy come out of the heap's noise.
 */
export function weighSetup(doc: TopologyDoc, file: string, world: SetupWorld, copies: number): MemorySample {
  const n = Array.from({ length: copies }, (_, i) => i);
  const m0 = memNow();
  const specs = n.map(() => parseTopologyDoc(doc, file));
  const m1 = memNow();
  const resolved = specs.map((s) => resolveTopology(s));
  const m2 = memNow();
  const machines = resolved.map((r) => new TopologyMachine(r, world.mem));
  const m3 = memNow();
  const attached = machines.map((m, i) => attachAll(specs[i]!, resolved[i]!, m, world));
  const m4 = memNow();
  if (attached.length !== copies) throw new Error('unreachable');
  const per = (a: Mem, b: Mem): number => (b.heap - a.heap) / copies;
  return {
    heap: { spec: per(m0, m1), resolve: per(m1, m2), 'bring-up': per(m2, m3), attach: per(m3, m4) },
    heapTotal: per(m0, m4),
    buffers: (m4.buffers - m0.buffers) / copies,
  };
}

/** Copies per round for a topology of `streamIds` stream IDs: about 1,000 stream IDs' worth, 1 to 16. */
export function copiesFor(streamIds: number): number {
  return Math.max(1, Math.min(16, Math.ceil(1000 / streamIds)));
}

/**
 * Checks the stream-match state of a set-up against the registers (see the file comment).
 * Returns the problems found (empty: correct).
 */
export function checkSetup(r: SetupResult): string[] {
  const problems: string[] = [];
  const bySmmu = new Map<string, IommuGroup[]>();
  for (const id of r.domains.keys()) {
    const g = r.resolved.groups[id]!;
    const list = bySmmu.get(g.smmus[0]!) ?? [];
    list.push(g);
    bySmmu.set(g.smmus[0]!, list);
  }
  for (const s of r.spec.smmus) {
    const unit = r.machine.unit(s.name);
    const valid = r.machine.smrs(s.name);
    const groups = bySmmu.get(s.name) ?? [];
    let sids = 0;
    for (const g of groups) {
      const cb = r.domains.get(g.id)!.cbndx;
      for (const st of g.streams) {
        sids++;
        const hits = valid.filter((e) => entryMatches(e, st.sid));
        if (hits.length !== 1) {
          problems.push(`${s.name}: stream ID 0x${st.sid.toString(16)} of group ${g.id} matches ${hits.length} SMRs`);
          continue;
        }
        const s2cr = unit.smmu.read32(R.GR0_S2CR + 4 * hits[0]!.index);
        const type = (s2cr >>> R.S2CR_TYPE_SHIFT) & 3;
        if (type !== R.S2CR_TYPE_TRANS || (s2cr & R.S2CR_CBNDX_MASK) !== cb) {
          problems.push(`${s.name}: stream ID 0x${st.sid.toString(16)} of group ${g.id}: S2CR ${hits[0]!.index} is 0x${s2cr.toString(16)}, expected translation to bank ${cb}`);
        }
      }
    }
    const covered = valid.reduce((a, e) => a + entrySize(e), 0);
    if (covered !== sids) problems.push(`${s.name}: the valid SMRs match ${covered} stream IDs, the attached groups have ${sids}`);
  }
  return problems;
}

// ------------------------------------------------------------------ throughput

export interface ThroughputPlan {
  smmu: string;
  /** DMA devices on that SMMU whose group can be attached there. */
  devices: number;
  /**
   * Streams the workload has: the longest prefix of those devices (in topology order, as
   * runWorkload assigns them) whose groups all fit the SMMU's SMRs when attached to one domain.
   */
  streams: number;
  /** Distinct stream IDs those devices' DMA carries. */
  streamIds: number;
}

/**
 * Which SMMU `runWorkload` uses by default for `spec` (the first with an attachable DMA device),
 * and how many of its devices a workload can be spread over: runWorkload attaches every group in use
 * to one nested domain, so context banks do not limit it, but SMRs do.
 */
export function planThroughput(resolved: ResolvedTopology, world: SetupWorld): ThroughputPlan {
  const machine = new TopologyMachine(resolved, world.mem);
  const picked = pickDmaSmmu(machine, resolved.spec, resolved);
  if ('error' in picked) throw new Error(picked.error);
  const domain = picked.unit.driver.createDomain('s1', world.table);
  const done = new Set<number>();
  let k = 0;
  for (const d of picked.devices) {
    if (!done.has(d.group.id)) {
      try {
        machine.attachGroup(d.group, domain);
      } catch (e) {
        if (e instanceof AttachError && e.code === 'ENOSPC') break;
        throw e;
      }
      done.add(d.group.id);
    }
    k++;
  }
  if (k === 0) throw new Error(`${picked.unit.spec.name}: the group of its first DMA device does not fit its SMRs`);
  const streamIds = new Set(picked.devices.slice(0, k).map((d) => d.sid)).size;
  return { smmu: picked.unit.spec.name, devices: picked.devices.length, streams: k, streamIds };
}

/** Bytes of the per-stream footprint of the throughput workload (every stream over the same VAs). */
export const STREAM_FOOTPRINT = 2 << 20;

/**
 * The throughput workload: `streams` uniform streams of 64-byte reads over the same 2 MiB of VA
 * (so the footprint, and the tables, are the same whatever the number of streams), taken
 * round-robin, one request from each in turn.
 */
export function throughputWorkload(streams: number): { kind: 'interleave'; order: 'round-robin'; streams: Array<{ kind: 'uniform'; sid: number; footprint: number; seed: number }> } {
  return {
    kind: 'interleave',
    order: 'round-robin',
    streams: Array.from({ length: streams }, (_, i) => ({ kind: 'uniform' as const, sid: i, footprint: STREAM_FOOTPRINT, seed: i + 1 })),
  };
}
