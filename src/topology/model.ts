/**
 * The topology model: where each DMA transaction's stream ID comes from and
 * which SMMU sees it.
 *
 * A system has SMMUs (each an instance of the src/smmu model, described by its
 * ID shape), PCI host bridges (root complexes) with a segment, a bus range and
 * a device-tree `iommu-map`, a tree of PCI functions below each host bridge,
 * and platform (non-PCI) devices with fixed `iommus` stream IDs.
 *
 * Two levels live here:
 * - the *spec* (`TopologySpec`): a validated topology file, defaults filled in
 *   and every element remembering its JSON path for error messages;
 * - the *resolution* (`ResolvedTopology`, built by resolve.ts): PCI functions
 *   with requester IDs, DMA aliases, stream IDs and IOMMU groups, plus
 *   diagnostics (unmapped RIDs and the like).
 */

import type { SmmuFeatures, SmmuShape } from '../smmu/id.js';

/**
 * The kind of a PCI function, in the PCIe Device/Port Type terms Linux uses
 * (PCI_EXP_TYPE_*), plus the two conventional-PCI kinds (no PCIe capability).
 *
 * | type                  | Linux                        | what it is |
 * |---|---|---|
 * | `root-port`           | PCI_EXP_TYPE_ROOT_PORT       | Root Port of a root complex (a bridge) |
 * | `upstream-port`       | PCI_EXP_TYPE_UPSTREAM        | a switch's Upstream Port (a bridge to the switch's internal bus) |
 * | `downstream-port`     | PCI_EXP_TYPE_DOWNSTREAM      | a switch's Downstream Port (a bridge to a link) |
 * | `pcie-to-pci-bridge`  | PCI_EXP_TYPE_PCI_BRIDGE      | PCI Express to PCI/PCI-X bridge (a legacy bus below) |
 * | `pci-to-pcie-bridge`  | PCI_EXP_TYPE_PCIE_BRIDGE     | PCI/PCI-X to PCI Express bridge (a reverse bridge) |
 * | `pci-bridge`          | not pci_is_pcie()            | conventional PCI-to-PCI (or PCI-X) bridge |
 * | `endpoint`            | PCI_EXP_TYPE_ENDPOINT        | PCIe endpoint |
 * | `rc-endpoint`         | PCI_EXP_TYPE_RC_END          | root-complex integrated endpoint (on the root bus) |
 * | `pci-device`          | not pci_is_pcie()            | conventional PCI / PCI-X device |
 */
export type PciType =
  | 'root-port'
  | 'upstream-port'
  | 'downstream-port'
  | 'pcie-to-pci-bridge'
  | 'pci-to-pcie-bridge'
  | 'pci-bridge'
  | 'endpoint'
  | 'rc-endpoint'
  | 'pci-device';

export const PCI_TYPES: readonly PciType[] = [
  'root-port',
  'upstream-port',
  'downstream-port',
  'pcie-to-pci-bridge',
  'pci-to-pcie-bridge',
  'pci-bridge',
  'endpoint',
  'rc-endpoint',
  'pci-device',
];

export const BRIDGE_TYPES: readonly PciType[] = ['root-port', 'upstream-port', 'downstream-port', 'pcie-to-pci-bridge', 'pci-to-pcie-bridge', 'pci-bridge'];

export function isBridge(t: PciType): boolean {
  return BRIDGE_TYPES.includes(t);
}

/** pci_is_pcie(): the function has a PCI Express capability. */
export function isPcie(t: PciType): boolean {
  return t !== 'pci-bridge' && t !== 'pci-device';
}

/** PCI_DEVFN(slot, func). */
export function devfnOf(device: number, fn: number): number {
  return ((device & 0x1f) << 3) | (fn & 7);
}

/** PCI_DEVID(bus, devfn): the 16-bit requester ID. */
export function ridOf(bus: number, devfn: number): number {
  return ((bus & 0xff) << 8) | (devfn & 0xff);
}

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/** "dd.f", as lspci writes a slot and function. */
export function fmtDevfn(devfn: number): string {
  return `${hex2(devfn >> 3)}.${devfn & 7}`;
}

/** "ssss:bb:dd.f". */
export function fmtBdf(segment: number, bus: number, devfn: number): string {
  return `${segment.toString(16).padStart(4, '0')}:${hex2(bus)}:${fmtDevfn(devfn)}`;
}

/** A requester ID as "0xbbdf" (four hex digits). */
export function fmtRid(rid: number): string {
  return '0x' + rid.toString(16).padStart(4, '0');
}

export function fmtHex(n: number): string {
  return '0x' + n.toString(16);
}

// ------------------------------------------------------------------ the spec (a validated file)

export interface SmmuSpec {
  name: string;
  shape: SmmuShape;
  /** IDR0..2 values built from the shape (encodeIds), what `new Smmu(ids, mem)` takes. */
  ids: { id0: number; id1: number; id2: number };
  features: SmmuFeatures;
  path: string;
}

/** One `iommu-map` entry: RIDs [ridBase, ridBase+length) -> stream IDs [sidBase, ...) of `smmu`. */
export interface IommuMapEntry {
  ridBase: number;
  smmu: string;
  sidBase: number;
  length: number;
  path: string;
}

export interface FunctionSpec {
  function: number;
  name: string;
  /** Devfns on the same bus this function also issues DMA as (Linux's dma_alias_mask quirks). */
  dmaAliases: number[];
  /** ACS (SV, RR, CR, UF) implemented and enabled; undefined: no ACS capability. */
  acs: boolean | undefined;
  path: string;
}

export interface PciNodeSpec {
  type: PciType;
  name: string;
  device: number;
  /** One for bridges; one or more for endpoints and PCI devices (multi-function devices). */
  functions: FunctionSpec[];
  /** Bridges: Secondary and Subordinate Bus Numbers; -1 otherwise. */
  secondary: number;
  subordinate: number;
  /** pci-bridge only: PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS (a PCIe-to-PCI bridge without a PCIe capability). */
  pcieBridgeAlias: boolean;
  /** Bridges: the devices on the secondary bus. */
  children: PciNodeSpec[];
  path: string;
}

export interface HostBridgeSpec {
  name: string;
  segment: number;
  busStart: number;
  busEnd: number;
  iommuMap: IommuMapEntry[];
  /** `iommu-map-mask`: a RID is ANDed with it before the lookup (default: all ones). */
  iommuMapMask: number;
  hasIommuMap: boolean;
  /** The devices on the root bus (busStart). */
  devices: PciNodeSpec[];
  path: string;
}

/** One `iommus` specifier: an SMMU and a stream ID, with an optional SMR mask (the binding's second cell). */
export interface IommusEntry {
  smmu: string;
  sid: number;
  mask: number;
  path: string;
}

export interface PlatformDeviceSpec {
  name: string;
  iommus: IommusEntry[];
  path: string;
}

export interface TopologySpec {
  /** Where it came from: a file name or "preset:NAME" (named in errors). */
  file: string;
  name: string;
  smmus: SmmuSpec[];
  hostBridges: HostBridgeSpec[];
  platformDevices: PlatformDeviceSpec[];
}

// ------------------------------------------------------------------ the resolution

/** An SMMU and one of its stream IDs. */
export interface StreamRef {
  smmu: string;
  sid: number;
}

/** Why a requester ID is among a function's DMA aliases (see resolve.ts, pci_for_each_dma_alias). */
export type AliasReason =
  /** The function's own requester ID. */
  | 'requester'
  /** A dma_alias_mask quirk: DMA from another devfn on the same bus. */
  | 'quirk'
  /** A PCIe-to-PCI/PCI-X bridge upstream: (secondary bus, devfn 0). */
  | 'pcie-to-pci-bridge'
  /** A conventional PCI bridge with the PCIe-bridge-alias quirk: (secondary bus, devfn 0). */
  | 'pcie-bridge-alias-quirk'
  /** A conventional PCI/PCI-X bridge upstream: the bridge's own requester ID. */
  | 'pci-bridge'
  /** A PCI/PCI-X-to-PCIe bridge upstream: the bridge's own requester ID. */
  | 'pci-to-pcie-bridge';

export interface DmaAlias {
  rid: number;
  /** The function the callback saw (the device itself, or the bridge that takes ownership). */
  by: PciFunction;
  reason: AliasReason;
  /** Where the alias maps: null when no iommu-map entry covers it (reported in diagnostics). */
  stream: StreamRef | null;
}

export interface PciFunction {
  kind: 'pci';
  /** Scan (depth-first) order. */
  index: number;
  hostBridge: HostBridgeSpec;
  segment: number;
  bus: number;
  device: number;
  function: number;
  devfn: number;
  rid: number;
  bdf: string;
  type: PciType;
  name: string;
  node: PciNodeSpec;
  spec: FunctionSpec;
  /** bus->self: the bridge whose secondary bus this function is on; null on the root bus. */
  parent: PciFunction | null;
  /** Bridges: the functions on the secondary bus. */
  children: PciFunction[];
  secondary: number;
  subordinate: number;
  /** pdev->multifunction: other functions share the slot. */
  multifunction: boolean;
  /** pci_acs_enabled(pdev, REQ_ACS_FLAGS). */
  acsEnabled: boolean;
  dmaAliasDevfns: number[];
  /** pci_for_each_dma_alias, in its order (duplicates kept). */
  aliases: DmaAlias[];
  /** Distinct stream IDs of all aliases, in alias order. */
  streams: StreamRef[];
  group: IommuGroup;
}

export interface PlatformDevice {
  kind: 'platform';
  index: number;
  name: string;
  spec: PlatformDeviceSpec;
  /** Every stream ID the `iommus` specifiers cover (a masked specifier covers several). */
  streams: StreamRef[];
  group: IommuGroup;
}

export type Master = PciFunction | PlatformDevice;

export interface IommuGroup {
  id: number;
  members: Master[];
  /** The SMMUs its stream IDs are on (normally exactly one). */
  smmus: string[];
  /** Distinct stream IDs, sorted by SMMU order then stream ID. */
  streams: StreamRef[];
  /** Why members share the group (empty for a group of one). */
  reasons: string[];
}

export type DiagnosticKind =
  /** A requester ID that no iommu-map entry covers (or a host bridge without iommu-map). */
  | 'unmapped-rid'
  /** A function whose aliases map to two SMMUs (Linux's iommu_fwspec_init refuses: -EINVAL). */
  | 'aliases-on-several-smmus'
  /** A group whose members are on two SMMUs: no single domain can take it. */
  | 'group-on-several-smmus'
  /** One stream ID reached from two different requester IDs (an iommu-map-mask folds them, or an alias). */
  | 'shared-stream-id'
  /** An iommu-map entry whose RIDs an earlier entry already covers (the first match wins). */
  | 'shadowed-map-entry';

export interface Diagnostic {
  severity: 'error' | 'warning';
  kind: DiagnosticKind;
  message: string;
  /** The function or device concerned, where there is one. */
  master?: string;
  rid?: number;
}

export interface ResolvedTopology {
  spec: TopologySpec;
  functions: PciFunction[];
  platformDevices: PlatformDevice[];
  groups: IommuGroup[];
  diagnostics: Diagnostic[];
  /** Per SMMU: stream ID -> the masters that use it. */
  streamOwners: Map<string, Map<number, Master[]>>;
}

export function masterName(m: Master): string {
  return m.kind === 'pci' ? `${m.bdf} (${m.name})` : m.name;
}
