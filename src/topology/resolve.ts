/**
 * Resolving a topology: PCI functions with their requester IDs, DMA aliases,
 * stream IDs and IOMMU groups, as Linux computes them.
 *
 * Requester IDs and DMA aliases: pci_for_each_dma_alias() (drivers/pci/search.c).
 *   1. The function's own RID, PCI_DEVID(bus, devfn).
 *   2. Each devfn in its dma_alias_mask (quirks: "DMA from another function's
 *      RID"), PCI_DEVID(bus, devfn) on the same bus.
 *   3. Then, for each bus from the function's bus up to the root bus, the
 *      bridge above it (bus->self):
 *      - Root Port, Upstream Port, Downstream Port: nothing (PCIe forwards the
 *        requester ID unchanged);
 *      - PCIe-to-PCI/PCI-X bridge (PCI_EXP_TYPE_PCI_BRIDGE): the bridge takes
 *        ownership of transactions from below with PCI_DEVID(bridge's secondary
 *        bus number, devfn 0) (PCIe-to-PCI/PCI-X Bridge spec r1.0, 2.3);
 *      - PCI/PCI-X-to-PCIe bridge (PCI_EXP_TYPE_PCIE_BRIDGE): the bridge's own
 *        RID;
 *      - a conventional PCI/PCI-X bridge (no PCIe capability): its own RID, or
 *        (secondary bus, devfn 0) with PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS (a
 *        PCIe-to-PCI bridge that lacks its PCIe capability).
 *   The walk keeps going above a bridge that aliased, so nested bridges each
 *   add an alias. (PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT and pci_real_dma_dev() are
 *   not modelled.)
 *
 * RID -> stream ID: of_map_id() (drivers/of/base.c) over the host bridge's
 * `iommu-map` and `iommu-map-mask`, for every alias, as of_iommu_configure()
 * does through of_pci_iommu_init(): masked = rid & mask; the first entry with
 * rid-base <= masked < rid-base + length gives sid = masked - rid-base +
 * sid-base on its SMMU. A RID that no entry covers (Linux prints "no iommu-map
 * translation" and the device gets no IOMMU) is a diagnostic here, never
 * dropped silently. Platform devices' `iommus` specifiers give stream IDs
 * directly (with a mask: every ID the mask covers).
 *
 * IOMMU groups: pci_device_group() (drivers/iommu/iommu.c), as a closure. Linux
 * adds devices one at a time and a device joins the first existing group it
 * finds by the searches below; taking the union of everything those searches
 * reach gives the same partition for a topology probed parents-first, and does
 * not depend on probe order. For each PCI function `d`:
 *   a. every function the alias walk visits (the bridges that alias it) is in
 *      d's group; the search continues from the last one (data.pdev);
 *   b. from there, climb while the bridge above is not isolated:
 *      pci_acs_path_enabled(bus->self, NULL, REQ_ACS_FLAGS) is false, i.e. some
 *      function from that bridge up to the root bus fails pci_acs_enabled();
 *      each bridge climbed to joins the group;
 *   c. get_pci_alias_group(): functions on the same bus that are DMA aliases of
 *      it or it of them (pci_devs_are_dma_aliases, dma_alias_mask both ways),
 *      recursively, with (d) for each;
 *   d. get_pci_function_alias_group(): if it is multi-function and not ACS
 *      isolated, the other functions of its slot without ACS, recursively.
 *   pci_acs_enabled(): conventional PCI functions, PCIe-to-PCI and PCI-to-PCIe
 *   bridges: never; Root and Downstream Ports: only with ACS (SV, RR, CR, UF
 *   enabled); endpoints, RCiEPs and Upstream Ports: always when single-function,
 *   otherwise only with ACS.
 * And arm_smmu_device_group() (drivers/iommu/arm/arm-smmu/arm-smmu.c) puts
 * masters whose stream IDs share a stream-map entry in one group, before
 * asking pci_device_group(): so functions whose RIDs an iommu-map-mask folds
 * onto one stream ID share a group too. Platform devices otherwise get a group
 * each (generic_device_group).
 */

import { expandMasked } from './file.js';
import {
  devfnOf,
  fmtBdf,
  fmtHex,
  fmtRid,
  isBridge,
  isPcie,
  masterName,
  ridOf,
  type AliasReason,
  type Diagnostic,
  type DmaAlias,
  type HostBridgeSpec,
  type IommuGroup,
  type Master,
  type PciFunction,
  type PciNodeSpec,
  type PlatformDevice,
  type ResolvedTopology,
  type StreamRef,
  type TopologySpec,
} from './model.js';

/** of_map_id(): the stream a RID maps to through a host bridge's iommu-map, or null when no entry covers it. */
export function mapRid(hb: HostBridgeSpec, rid: number): StreamRef | null {
  if (!hb.hasIommuMap) return null;
  const masked = (rid & hb.iommuMapMask) >>> 0;
  for (const e of hb.iommuMap) {
    if (masked >= e.ridBase && masked < e.ridBase + e.length) return { smmu: e.smmu, sid: masked - e.ridBase + e.sidBase };
  }
  return null;
}

/**
 * pci_acs_enabled(pdev, REQ_ACS_FLAGS) (drivers/pci/pci.c), without device-specific quirks: whether the
 * function keeps peer-to-peer DMA from bypassing the IOMMU.
 */
function acsEnabled(f: Pick<PciFunction, 'type' | 'multifunction'>, acs: boolean | undefined): boolean {
  // "Conventional PCI and PCI-X devices never support ACS, either effectively or actually."
  if (!isPcie(f.type)) return false;
  switch (f.type) {
    // PCI/X-to-PCIe bridges are handled as non-PCIe devices; PCIe-to-PCI bridges are excluded by PCIe 6.12.1.
    case 'pci-to-pcie-bridge':
    case 'pcie-to-pci-bridge':
      return false;
    // Root and Downstream Ports should implement ACS (6.12.1.1), whether single- or multi-function.
    case 'root-port':
    case 'downstream-port':
      return acs === true;
    // Endpoints, Upstream Ports and RCiEPs: ACS applies only when multi-function (6.12.1.2).
    default:
      return f.multifunction ? acs === true : true;
  }
}

/** pci_acs_path_enabled(start, NULL, REQ_ACS_FLAGS): null when every function from `start` to the root bus is ACS-enabled, else the first that is not. */
function acsPathBreak(start: PciFunction): PciFunction | null {
  for (let p: PciFunction | null = start; p !== null; p = p.parent) if (!p.acsEnabled) return p;
  return null;
}

class UnionFind {
  private readonly up: Int32Array;
  readonly reasons: Array<Set<string>>;

  constructor(n: number) {
    this.up = new Int32Array(n).map((_, i) => i);
    this.reasons = Array.from({ length: n }, () => new Set<string>());
  }

  find(i: number): number {
    while (this.up[i] !== i) {
      this.up[i] = this.up[this.up[i]!]!;
      i = this.up[i]!;
    }
    return i;
  }

  union(a: number, b: number, reason: string): void {
    let ra = this.find(a);
    let rb = this.find(b);
    // Reasons record the merges: a spanning explanation of why the members are together.
    if (ra === rb) return;
    if (rb < ra) [ra, rb] = [rb, ra];
    this.up[rb] = ra;
    for (const r of this.reasons[rb]!) this.reasons[ra]!.add(r);
    this.reasons[rb]!.clear();
    this.reasons[ra]!.add(reason);
  }
}

const ALIAS_WORDS: Record<AliasReason, string> = {
  requester: 'requester ID',
  quirk: 'DMA alias quirk',
  'pcie-to-pci-bridge': 'PCIe-to-PCI bridge alias (secondary bus, devfn 0)',
  'pcie-bridge-alias-quirk': 'PCIe-bridge alias quirk (secondary bus, devfn 0)',
  'pci-bridge': "PCI bridge's own RID",
  'pci-to-pcie-bridge': "PCI-to-PCIe bridge's own RID",
};

export function aliasWords(r: AliasReason): string {
  return ALIAS_WORDS[r];
}

/** Builds the functions of one host bridge, depth first (a bridge's subtree right after it), in devfn order on each bus. */
function buildFunctions(hb: HostBridgeSpec, out: PciFunction[], dummyGroup: IommuGroup): void {
  const visit = (nodes: PciNodeSpec[], bus: number, parent: PciFunction | null): PciFunction[] => {
    const onBus: Array<{ node: PciNodeSpec; fn: PciNodeSpec['functions'][number]; devfn: number }> = [];
    for (const node of nodes) for (const fn of node.functions) onBus.push({ node, fn, devfn: devfnOf(node.device, fn.function) });
    onBus.sort((a, b) => a.devfn - b.devfn);
    const perSlot = new Map<number, number>();
    for (const x of onBus) perSlot.set(x.devfn >> 3, (perSlot.get(x.devfn >> 3) ?? 0) + 1);
    const made: PciFunction[] = [];
    for (const x of onBus) {
      const bridge = isBridge(x.node.type);
      const f: PciFunction = {
        kind: 'pci',
        index: out.length,
        hostBridge: hb,
        segment: hb.segment,
        bus,
        device: x.node.device,
        function: x.fn.function,
        devfn: x.devfn,
        rid: ridOf(bus, x.devfn),
        bdf: fmtBdf(hb.segment, bus, x.devfn),
        type: x.node.type,
        name: x.fn.name,
        node: x.node,
        spec: x.fn,
        parent,
        children: [],
        secondary: bridge ? x.node.secondary : -1,
        subordinate: bridge ? x.node.subordinate : -1,
        multifunction: perSlot.get(x.devfn >> 3)! > 1,
        acsEnabled: false,
        dmaAliasDevfns: x.fn.dmaAliases,
        aliases: [],
        streams: [],
        group: dummyGroup,
      };
      f.acsEnabled = acsEnabled(f, x.fn.acs);
      out.push(f);
      made.push(f);
      if (bridge) f.children = visit(x.node.children, x.node.secondary, f);
    }
    return made;
  };
  visit(hb.devices, hb.busStart, null);
}

/** pci_for_each_dma_alias(): the RIDs a function's DMA may carry, in Linux's order. */
function dmaAliases(f: PciFunction): Array<Omit<DmaAlias, 'stream'>> {
  const out: Array<Omit<DmaAlias, 'stream'>> = [{ rid: f.rid, by: f, reason: 'requester' }];
  for (const df of f.dmaAliasDevfns) out.push({ rid: ridOf(f.bus, df), by: f, reason: 'quirk' });
  for (let tmp = f.parent; tmp !== null; tmp = tmp.parent) {
    switch (tmp.type) {
      case 'root-port':
      case 'upstream-port':
      case 'downstream-port':
        continue;
      case 'pcie-to-pci-bridge':
        out.push({ rid: ridOf(tmp.secondary, 0), by: tmp, reason: 'pcie-to-pci-bridge' });
        continue;
      case 'pci-to-pcie-bridge':
        out.push({ rid: tmp.rid, by: tmp, reason: 'pci-to-pcie-bridge' });
        continue;
      default:
        // Not pci_is_pcie(): a conventional PCI/PCI-X bridge.
        if (tmp.node.pcieBridgeAlias) out.push({ rid: ridOf(tmp.secondary, 0), by: tmp, reason: 'pcie-bridge-alias-quirk' });
        else out.push({ rid: tmp.rid, by: tmp, reason: 'pci-bridge' });
    }
  }
  return out;
}

/** pci_devs_are_dma_aliases(): one's dma_alias_mask names the other's devfn. */
function areDmaAliases(a: PciFunction, b: PciFunction): boolean {
  return a.dmaAliasDevfns.includes(b.devfn) || b.dmaAliasDevfns.includes(a.devfn);
}

function sortStreams(streams: StreamRef[], order: Map<string, number>): StreamRef[] {
  return streams.sort((a, b) => (order.get(a.smmu) ?? 0) - (order.get(b.smmu) ?? 0) || a.sid - b.sid);
}

/** Resolves a validated topology: RIDs, aliases, stream IDs, groups and diagnostics. */
export function resolveTopology(spec: TopologySpec): ResolvedTopology {
  const smmuOrder = new Map(spec.smmus.map((s, i) => [s.name, i]));
  const placeholder: IommuGroup = { id: -1, members: [], smmus: [], streams: [], reasons: [] };
  const functions: PciFunction[] = [];
  for (const hb of spec.hostBridges) buildFunctions(hb, functions, placeholder);
  const diagnostics: Diagnostic[] = [];

  // Shadowed iommu-map entries: the first match wins in of_map_id().
  for (const hb of spec.hostBridges) {
    hb.iommuMap.forEach((e, j) => {
      for (let i = 0; i < j; i++) {
        const p = hb.iommuMap[i]!;
        if (e.ridBase < p.ridBase + p.length && p.ridBase < e.ridBase + e.length) {
          diagnostics.push({
            severity: 'warning',
            kind: 'shadowed-map-entry',
            message: `${e.path}: RIDs ${fmtRid(Math.max(e.ridBase, p.ridBase))}..${fmtRid(Math.min(e.ridBase + e.length, p.ridBase + p.length) - 1)} are already covered by ${p.path}, which wins (of_map_id takes the first match)`,
          });
          break;
        }
      }
    });
  }

  // Aliases and their stream IDs.
  for (const f of functions) {
    const seen = new Set<string>();
    const smmusOfF = new Set<string>();
    for (const a of dmaAliases(f)) {
      const stream = mapRid(f.hostBridge, a.rid);
      f.aliases.push({ ...a, stream });
      if (stream === null) {
        const how = a.reason === 'requester' ? 'its requester ID' : `its alias (${ALIAS_WORDS[a.reason]}${a.by !== f ? ` of ${a.by.bdf}` : ''})`;
        const why = f.hostBridge.hasIommuMap
          ? `no iommu-map entry of host bridge ${f.hostBridge.name} covers it${f.hostBridge.iommuMapMask !== 0xffffffff ? ` (masked with ${fmtHex(f.hostBridge.iommuMapMask)}: ${fmtRid((a.rid & f.hostBridge.iommuMapMask) >>> 0)})` : ''}`
          : `host bridge ${f.hostBridge.name} has no iommu-map`;
        diagnostics.push({ severity: 'error', kind: 'unmapped-rid', master: f.bdf, rid: a.rid, message: `${f.bdf} (${f.name}): RID ${fmtRid(a.rid)}, ${how}, is not translated: ${why}` });
        continue;
      }
      smmusOfF.add(stream.smmu);
      const key = `${stream.smmu}:${stream.sid}`;
      if (!seen.has(key)) {
        seen.add(key);
        f.streams.push(stream);
      }
    }
    if (smmusOfF.size > 1) {
      diagnostics.push({
        severity: 'error',
        kind: 'aliases-on-several-smmus',
        master: f.bdf,
        message: `${f.bdf} (${f.name}): its DMA aliases map to several SMMUs (${[...smmusOfF].join(', ')}); Linux's iommu_fwspec_init() refuses a second IOMMU (-EINVAL)`,
      });
    }
  }

  // Platform devices.
  const platformDevices: PlatformDevice[] = spec.platformDevices.map((d, i) => {
    const seen = new Set<string>();
    const streams: StreamRef[] = [];
    for (const e of d.iommus) {
      for (const sid of expandMasked(e.sid, e.mask)) {
        const key = `${e.smmu}:${sid}`;
        if (seen.has(key)) continue;
        seen.add(key);
        streams.push({ smmu: e.smmu, sid });
      }
    }
    return { kind: 'platform', index: functions.length + i, name: d.name, spec: d, streams, group: placeholder };
  });
  const masters: Master[] = [...functions, ...platformDevices];

  // Groups.
  const uf = new UnionFind(masters.length);
  const byBus = new Map<string, PciFunction[]>();
  const busKey = (f: PciFunction): string => `${f.hostBridge.path}/${f.bus}`;
  for (const f of functions) {
    const k = busKey(f);
    let l = byBus.get(k);
    if (l === undefined) byBus.set(k, (l = []));
    l.push(f);
  }
  for (const d of functions) {
    // a. The alias walk: pdev ends as the function the last callback saw.
    let top = d;
    for (const a of d.aliases) {
      if (a.by !== d) uf.union(d.index, a.by.index, `DMA from below ${a.by.type} ${a.by.bdf} carries its alias ${fmtRid(a.rid)}`);
      top = a.by;
    }
    // b. Climb to the point where devices are protected from peer-to-peer DMA by ACS.
    for (let b = top.parent; b !== null; b = b.parent) {
      const broken = acsPathBreak(b);
      if (broken === null) break;
      top = b;
      uf.union(d.index, top.index, `no ACS isolation at ${broken.bdf} (${broken.type})`);
    }
    // c, d. Aliases to or from `top` on its bus, and non-isolated functions of its slot.
    const visited = new Set<number>();
    const onBus = byBus.get(busKey(top))!;
    const aliasGroup = (p: PciFunction): void => {
      if (visited.has(p.devfn)) return;
      visited.add(p.devfn);
      for (const tmp of onBus) {
        if (tmp === p || !areDmaAliases(p, tmp)) continue;
        uf.union(d.index, tmp.index, `DMA alias quirk between ${p.bdf} and ${tmp.bdf}`);
        aliasGroup(tmp);
        functionAliasGroup(tmp);
      }
    };
    const functionAliasGroup = (p: PciFunction): void => {
      if (!p.multifunction || p.acsEnabled) return;
      for (const tmp of onBus) {
        if (tmp === p || tmp.device !== p.device || tmp.acsEnabled) continue;
        uf.union(d.index, tmp.index, `multi-function slot ${fmtBdf(p.segment, p.bus, devfnOf(p.device, 0)).slice(0, -2)} without ACS`);
        aliasGroup(tmp);
      }
    };
    aliasGroup(top);
    functionAliasGroup(top);
  }

  // arm_smmu_device_group(): masters sharing a stream-map entry share a group.
  const streamOwners = new Map<string, Map<number, Master[]>>();
  for (const s of spec.smmus) streamOwners.set(s.name, new Map());
  for (const m of masters) {
    for (const s of m.streams) {
      const owners = streamOwners.get(s.smmu)!;
      let l = owners.get(s.sid);
      if (l === undefined) owners.set(s.sid, (l = []));
      l.push(m);
    }
  }
  for (const [smmu, owners] of streamOwners) {
    for (const [sid, list] of owners) {
      if (list.length < 2) continue;
      for (const m of list) uf.union(list[0]!.index, m.index, `stream ID ${smmu}:${fmtHex(sid)} is shared`);
      // Which requester IDs lead here? More than one distinct source means a mask folds them.
      const sources = new Set<string>();
      for (const m of list) {
        if (m.kind === 'platform') sources.add(`platform device ${m.name}`);
        else for (const a of m.aliases) if (a.stream !== null && a.stream.smmu === smmu && a.stream.sid === sid) sources.add(`${m.hostBridge.name} RID ${fmtRid(a.rid)}`);
      }
      if (sources.size > 1) {
        diagnostics.push({
          severity: 'warning',
          kind: 'shared-stream-id',
          message: `stream ID ${smmu}:${fmtHex(sid)} is reached from ${[...sources].join(', ')}: the SMMU cannot tell them apart, so ${list.map(masterName).join(', ')} share one group`,
        });
      }
    }
  }

  // Number the groups in scan order.
  const groups: IommuGroup[] = [];
  const groupOfRoot = new Map<number, IommuGroup>();
  for (const m of masters) {
    const root = uf.find(m.index);
    let g = groupOfRoot.get(root);
    if (g === undefined) {
      g = { id: groups.length, members: [], smmus: [], streams: [], reasons: [] };
      groupOfRoot.set(root, g);
      groups.push(g);
    }
    g.members.push(m);
    m.group = g;
  }
  for (const [root, g] of groupOfRoot) {
    const seen = new Set<string>();
    for (const m of g.members) {
      for (const s of m.streams) {
        const key = `${s.smmu}:${s.sid}`;
        if (seen.has(key)) continue;
        seen.add(key);
        g.streams.push(s);
      }
    }
    sortStreams(g.streams, smmuOrder);
    g.smmus = [...new Set(g.streams.map((s) => s.smmu))];
    g.reasons = g.members.length > 1 ? [...uf.reasons[root]!].sort() : [];
    if (g.smmus.length > 1) {
      diagnostics.push({
        severity: 'error',
        kind: 'group-on-several-smmus',
        message: `group ${g.id} (${g.members.map(masterName).join(', ')}) has stream IDs on ${g.smmus.join(' and ')}: no one domain can take it (arm-smmu attaches a domain to one SMMU)`,
      });
    }
  }
  return { spec, functions, platformDevices, groups, diagnostics, streamOwners };
}

/** Finds a PCI function by BDF ("0000:03:00.0" or "03:00.0" in segment 0) or by name, or a platform device by name. */
export function findMaster(t: ResolvedTopology, key: string): Master | undefined {
  const bdf = /^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/.test(key) ? `0000:${key}` : key;
  return t.functions.find((f) => f.bdf === bdf.toLowerCase() || f.name === key) ?? t.platformDevices.find((d) => d.name === key);
}

