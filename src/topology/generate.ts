/**
 * A deterministic topology generator: sizes and a seed in, an
 * `smmu-topology/1` document out (the same format a file holds, validated by
 * the same parser).
 *
 * The shape: `hostBridges` root complexes (segment i, buses 0x00-0xff), each
 * with `rootPorts` Root Ports at 00:01.0, 00:02.0, ... Below each Root Port a
 * switch (an Upstream Port and `switchFanout` Downstream Ports), or, with
 * `switchFanout` 0, the device directly. The last `legacyBridges` Root Ports
 * of each root complex lead to a PCIe-to-PCI bridge with `legacyDevices`
 * conventional PCI devices (slots 1, 2, ...) instead. Endpoint devices (`functions` functions
 * each) fill the links below the ports, at most one per link (device 0).
 *
 * Buses are numbered depth first, as firmware enumerates them. Each Root
 * Port has two `iommu-map` entries onto one SMMU (Root Ports are dealt to
 * SMMUs round-robin across all root complexes): its own RID, and its bus range
 * onto a 256-aligned block of stream IDs; so a root complex has several
 * entries over several SMMUs, and RIDs nothing uses stay unmapped. Platform devices take 4 stream IDs each (one
 * masked `iommus` specifier), after the PCI blocks.
 *
 * The seed decides what varies in real systems: whether each Root Port,
 * Downstream Port and multi-function endpoint implements ACS, the device kinds
 * (names), and which single-function endpoints have a DMA alias quirk (a
 * phantom function 1, as some SATA controllers do).
 */

import type { SmmuShape } from '../smmu/id.js';
import { TOPOLOGY_FORMAT, type HostBridgeDoc, type IommuMapDoc, type PciNodeDoc, type PlatformDeviceDoc, type TopologyDoc } from './file.js';

export interface GenerateSizes {
  smmus: number;
  /** Root complexes (default: half the SMMUs, at least 1). */
  hostBridges?: number;
  /** Root Ports per root complex. */
  rootPorts: number;
  /** Downstream Ports of the switch below each Root Port; 0: no switches. */
  switchFanout: number;
  /** Endpoint devices in all (default: one on every link). */
  devices?: number;
  /** Functions per endpoint device (1..8). */
  functions: number;
  /** Root Ports per root complex (the last ones) that lead to a PCIe-to-PCI bridge (default 0). */
  legacyBridges?: number;
  /** Conventional PCI devices behind each such bridge (default 4). */
  legacyDevices?: number;
  /** Platform devices in all (default: one per SMMU). */
  platformDevices?: number;
  seed: number;
  /** The SMMUs' shape (default: 128 SMRs, 15 stream-ID bits, 128 context banks of which 32 stage-2 only). */
  smmuShape?: SmmuShape;
  name?: string;
}

export class GenerateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GenerateError';
  }
}

/** mulberry32: a small, fast, deterministic PRNG. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new GenerateError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
}

const KINDS = ['nic', 'nvme', 'gpu', 'accel', 'hba', 'fpga'];

/** Builds a topology document from sizes and a seed. Same inputs, same document. */
export function generateTopology(sizes: GenerateSizes): TopologyDoc {
  const S = sizes.smmus;
  checkInt('smmus', S, 1, 256);
  const H = sizes.hostBridges ?? Math.max(1, Math.ceil(S / 2));
  checkInt('hostBridges', H, 1, 256);
  checkInt('rootPorts', sizes.rootPorts, 1, 31);
  checkInt('switchFanout', sizes.switchFanout, 0, 32);
  checkInt('functions', sizes.functions, 1, 8);
  const legacy = sizes.legacyBridges ?? 0;
  checkInt('legacyBridges', legacy, 0, sizes.rootPorts);
  const legacyDevices = sizes.legacyDevices ?? 4;
  checkInt('legacyDevices', legacyDevices, 1, 31);
  checkInt('seed', sizes.seed, 0, 0xffffffff);
  const shape: SmmuShape = sizes.smmuShape ?? { smrs: 128, sidBits: 15, contextBanks: 128, s2OnlyBanks: 32 };
  const sidLimit = 2 ** (shape.sidBits ?? 15);
  const rand = mulberry32(sizes.seed);
  const chance = (p: number): boolean => rand() < p;

  // Links that can take an endpoint, in an order that spreads a partial fill over root complexes and ports.
  const fanout = sizes.switchFanout;
  const switched = sizes.rootPorts - legacy;
  const leavesPerPort = Math.max(fanout, 1);
  const leafCount = H * switched * leavesPerPort;
  const devices = sizes.devices ?? leafCount;
  checkInt('devices', devices, 0, leafCount);
  const filled = new Set<string>();
  {
    let n = 0;
    for (let leaf = 0; leaf < leavesPerPort && n < devices; leaf++)
      for (let rp = 0; rp < switched && n < devices; rp++)
        for (let h = 0; h < H && n < devices; h++, n++) filled.add(`${h}/${rp}/${leaf}`);
  }

  const sidCursor = new Array<number>(S).fill(0);
  const takeSids = (smmu: number, length: number, what: string, align = 1): number => {
    const base = Math.ceil(sidCursor[smmu]! / align) * align;
    if (base + length > sidLimit) throw new GenerateError(`smmu${smmu} runs out of stream IDs for ${what} (needs ${base + length}, has ${sidLimit}): use more SMMUs or fewer buses`);
    sidCursor[smmu] = base + length;
    return base;
  };
  const kindCount = new Map<string, number>();
  const endpointName = (): string => {
    const kind = KINDS[Math.floor(rand() * KINDS.length)]!;
    const n = kindCount.get(kind) ?? 0;
    kindCount.set(kind, n + 1);
    return `${kind}${n}`;
  };
  const endpoint = (): PciNodeDoc => {
    const name = endpointName();
    if (sizes.functions === 1) {
      // A phantom-function DMA alias quirk now and then.
      return chance(1 / 16) ? { type: 'endpoint', name, device: 0, functions: [{ function: 0, dmaAliases: ['00.1'] }] } : { type: 'endpoint', name, device: 0 };
    }
    return { type: 'endpoint', name, device: 0, functions: sizes.functions, acs: chance(0.5) };
  };

  const hostBridges: HostBridgeDoc[] = [];
  let globalRp = 0;
  for (let h = 0; h < H; h++) {
    let bus = 1;
    const nextBus = (): number => {
      if (bus > 255) throw new GenerateError(`host bridge pcie${h} needs more than 256 buses: use fewer root ports, a smaller fan-out, or more host bridges`);
      return bus++;
    };
    const map: IommuMapDoc[] = [];
    const devicesOnRoot: PciNodeDoc[] = [];
    for (let k = 0; k < sizes.rootPorts; k++) {
      const secondary = nextBus();
      const rp: PciNodeDoc = { type: 'root-port', name: `rp${h}.${k}`, device: k + 1, secondary, subordinate: secondary, acs: chance(7 / 8), children: [] };
      if (k >= switched) {
        const legacyBus = nextBus();
        const conventional: PciNodeDoc[] = [];
        for (let d = 0; d < legacyDevices; d++) conventional.push({ type: 'pci-device', name: `pci${h}.${k}.${d}`, device: d + 1 });
        rp.children!.push({ type: 'pcie-to-pci-bridge', name: `pcibr${h}.${k}`, device: 0, secondary: legacyBus, subordinate: legacyBus, children: conventional });
      } else if (fanout === 0) {
        if (filled.has(`${h}/${k}/0`)) rp.children!.push(endpoint());
      } else {
        const internal = nextBus();
        const up: PciNodeDoc = { type: 'upstream-port', name: `usp${h}.${k}`, device: 0, secondary: internal, subordinate: internal, children: [] };
        for (let i = 0; i < fanout; i++) {
          const b = nextBus();
          const dp: PciNodeDoc = { type: 'downstream-port', name: `dsp${h}.${k}.${i}`, device: i, secondary: b, subordinate: b, acs: chance(7 / 8), children: [] };
          if (filled.has(`${h}/${k}/${i}`)) dp.children!.push(endpoint());
          up.children!.push(dp);
        }
        up.subordinate = bus - 1;
        rp.children!.push(up);
      }
      rp.subordinate = bus - 1;
      devicesOnRoot.push(rp);
      // The Root Port's own RID and its bus range go to the same SMMU, so that a Root Port without ACS
      // (which joins the group of what is below it) does not split a group over two SMMUs.
      const smmu = globalRp++ % S;
      const length = (rp.subordinate - secondary + 1) * 256;
      map.push({ 'rid-base': hex((k + 1) << 3), smmu: `smmu${smmu}`, 'sid-base': hex(takeSids(smmu, 1, `root port rp${h}.${k}`)), length: 1 });
      map.push({ 'rid-base': hex(secondary << 8), smmu: `smmu${smmu}`, 'sid-base': hex(takeSids(smmu, length, `the buses below rp${h}.${k}`, 256)), length: hex(length) });
    }
    hostBridges.push({ name: `pcie${h}`, segment: h, 'bus-range': [0, 255], 'iommu-map': map, devices: devicesOnRoot });
  }

  const platformDevices: PlatformDeviceDoc[] = [];
  const P = sizes.platformDevices ?? S;
  checkInt('platformDevices', P, 0, 4096);
  for (let i = 0; i < P; i++) {
    const smmu = i % S;
    sidCursor[smmu] = Math.ceil(sidCursor[smmu]! / 4) * 4;
    const sid = takeSids(smmu, 4, `platform device dma${i}`);
    platformDevices.push({ name: `dma${i}`, iommus: [{ smmu: `smmu${smmu}`, sid: hex(sid), mask: '0x3' }] });
  }

  return {
    format: TOPOLOGY_FORMAT,
    name:
      sizes.name ??
      `generated-s${S}-h${H}-rp${sizes.rootPorts}-f${fanout}-d${devices}-fn${sizes.functions}${legacy > 0 ? `-lb${legacy}` : ''}-seed${sizes.seed}`,
    smmus: Array.from({ length: S }, (_, i) => ({ name: `smmu${i}`, shape: { ...shape } })),
    hostBridges,
    platformDevices,
  };
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(4, '0');
}
