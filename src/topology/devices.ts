/**
 * The DMA devices of a topology, as a user of the whole machine (`run`,
 * `stress`) picks them: which devices issue DMA through which SMMU, with the
 * stream ID their transactions carry, and which SMMU to use by default.
 *
 * A device's stream ID is the one its requester ID reaches the SMMU as: its
 * own, or the alias of a bridge that takes ownership (the last alias that is
 * not a quirk, as pci_for_each_dma_alias ends); a platform device's first
 * `iommus` stream ID.
 */

import { AttachError, type SmmuUnit, type TopologyMachine } from './attach.js';
import type { IommuGroup, Master, ResolvedTopology, TopologySpec } from './model.js';

/** Function types that master DMA: PCI endpoints, RC-integrated endpoints, conventional PCI devices. */
const DMA_TYPES = new Set(['endpoint', 'rc-endpoint', 'pci-device']);

export interface DmaDevice {
  master: Master;
  group: IommuGroup;
  /** The stream ID its DMA carries on arrival at the SMMU. */
  sid: number;
}

/** The stream ID a device's DMA reaches its SMMU with, or null if none is mapped. */
export function dmaStream(m: Master): { smmu: string; sid: number } | null {
  if (m.kind === 'platform') return m.streams[0] ?? null;
  let s: { smmu: string; sid: number } | null = null;
  for (const a of m.aliases) if (a.reason !== 'quirk' && a.stream !== null) s = a.stream;
  return s;
}

/**
 * The DMA devices of SMMU `smmu` whose IOMMU group lies wholly on it (so the
 * group can be attached there), in topology order: PCI functions, then
 * platform devices.
 */
export function dmaDevicesOn(machine: TopologyMachine, t: ResolvedTopology, smmu: string): DmaDevice[] {
  const out: DmaDevice[] = [];
  const masters: Master[] = [...t.functions.filter((f) => DMA_TYPES.has(f.type)), ...t.platformDevices];
  for (const m of masters) {
    const s = dmaStream(m);
    if (s === null || s.smmu !== smmu) continue;
    try {
      if (machine.unitOf(m.group).spec.name !== smmu) continue;
    } catch (e) {
      if (e instanceof AttachError) continue;
      throw e;
    }
    out.push({ master: m, group: m.group, sid: s.sid });
  }
  return out;
}

/** Why `smmu` cannot be used in `spec` (it has no SMMU of that name), or null if it can. */
export function unknownSmmu(spec: TopologySpec, smmu: string): string | null {
  if (spec.smmus.some((s) => s.name === smmu)) return null;
  return `no SMMU named "${smmu}" in topology ${spec.name} (SMMUs: ${spec.smmus.map((s) => s.name).join(', ')})`;
}

/**
 * The SMMU to use and its DMA devices: `smmu` if named, else the first SMMU
 * (in the topology's order) with a device that can be attached. Returns a
 * message instead when there is none.
 */
export function pickDmaSmmu(
  machine: TopologyMachine,
  spec: TopologySpec,
  t: ResolvedTopology,
  smmu?: string,
): { unit: SmmuUnit; devices: DmaDevice[] } | { error: string; usage: boolean } {
  if (smmu !== undefined) {
    const unknown = unknownSmmu(spec, smmu);
    if (unknown !== null) return { error: unknown, usage: true };
    const devices = dmaDevicesOn(machine, t, smmu);
    if (devices.length === 0) return { error: `${smmu} has no DMA device whose IOMMU group can be attached there`, usage: false };
    return { unit: machine.unit(smmu), devices };
  }
  for (const s of spec.smmus) {
    const devices = dmaDevicesOn(machine, t, s.name);
    if (devices.length > 0) return { unit: machine.unit(s.name), devices };
  }
  return { error: `topology ${spec.name} has no DMA device whose IOMMU group can be attached`, usage: false };
}
