/**
 * RID -> stream ID through the device-tree `iommu-map` and `iommu-map-mask`
 * (of_map_id in drivers/of/base.c): several entries per root complex, several
 * SMMUs, masks, the first match winning, and RIDs that no entry covers being
 * reported rather than dropped. Expected stream IDs are worked out by hand:
 * sid = (rid & mask) - rid-base + sid-base for the first entry that covers
 * (rid & mask).
 */

import { describe, expect, it } from 'vitest';
import { parseTopologyDoc, type HostBridgeDoc, type TopologyDoc } from '../src/topology/file.js';
import type { ResolvedTopology } from '../src/topology/model.js';
import { mapRid, resolveTopology } from '../src/topology/resolve.js';

const SMMUS = [
  { name: 'smmu0', shape: { smrs: 32, sidBits: 15 } },
  { name: 'smmu1', shape: { smrs: 32, sidBits: 12 } },
];

function resolve(hostBridges: HostBridgeDoc[], extra: Partial<TopologyDoc> = {}): ResolvedTopology {
  return resolveTopology(parseTopologyDoc({ format: 'smmu-topology/1', name: 'maps', smmus: SMMUS, hostBridges, ...extra }, 'maps.json'));
}

/** A root port at 00:01.0 over buses 01-04, with a 2-function endpoint on each of 01 (directly) and a switch's 03, 04. */
const devices = (p = ''): HostBridgeDoc['devices'] => [
  {
    type: 'root-port',
    device: 1,
    secondary: 1,
    subordinate: 4,
    acs: true,
    children: [
      {
        type: 'upstream-port',
        device: 0,
        secondary: 2,
        subordinate: 4,
        children: [
          { type: 'downstream-port', device: 0, secondary: 3, subordinate: 3, acs: true, children: [{ type: 'endpoint', name: `${p}a`, device: 0, functions: 2, acs: true }] },
          { type: 'downstream-port', device: 1, secondary: 4, subordinate: 4, acs: true, children: [{ type: 'endpoint', name: `${p}b`, device: 0, functions: 2, acs: true }] },
        ],
      },
    ],
  },
];

const sidsOf = (t: ResolvedTopology, bdf: string): string[] => t.functions.find((f) => f.bdf === bdf)!.streams.map((s) => `${s.smmu}:0x${s.sid.toString(16)}`);

describe('iommu-map', () => {
  it('several entries per root complex, onto several SMMUs', () => {
    const t = resolve([
      {
        name: 'pcie0',
        'iommu-map': [
          { 'rid-base': '0x0000', smmu: 'smmu0', 'sid-base': '0x1000', length: '0x100' }, // bus 00 -> smmu0 0x1000..
          { 'rid-base': '0x0100', smmu: 'smmu1', 'sid-base': '0x0800', length: '0x300' }, // buses 01-03 -> smmu1 0x800..
          { 'rid-base': '0x0400', smmu: 'smmu0', 'sid-base': '0x4000', length: '0x100' }, // bus 04 -> smmu0 0x4000..
        ],
        devices: devices(),
      },
    ]);
    const hb = t.spec.hostBridges[0]!;
    expect(mapRid(hb, 0x0008)).toEqual({ smmu: 'smmu0', sid: 0x1008 });
    expect(mapRid(hb, 0x00ff)).toEqual({ smmu: 'smmu0', sid: 0x10ff });
    expect(mapRid(hb, 0x0100)).toEqual({ smmu: 'smmu1', sid: 0x0800 });
    expect(mapRid(hb, 0x03ff)).toEqual({ smmu: 'smmu1', sid: 0x0aff });
    expect(mapRid(hb, 0x0401)).toEqual({ smmu: 'smmu0', sid: 0x4001 });
    expect(mapRid(hb, 0x0500)).toBeNull();
    expect(sidsOf(t, '0000:00:01.0')).toEqual(['smmu0:0x1008']);
    expect(sidsOf(t, '0000:01:00.0')).toEqual(['smmu1:0x800']); // upstream port 01:00.0
    expect(sidsOf(t, '0000:02:01.0')).toEqual(['smmu1:0x908']); // downstream port 02:01.0 = 0x0208
    expect(sidsOf(t, '0000:03:00.1')).toEqual(['smmu1:0xa01']);
    expect(sidsOf(t, '0000:04:00.1')).toEqual(['smmu0:0x4001']);
    expect(t.diagnostics).toEqual([]);
    // The groups follow: each function (ACS everywhere) alone, on its own SMMU.
    expect(t.groups.every((g) => g.members.length === 1 && g.smmus.length === 1)).toBe(true);
  });

  it('iommu-map-mask is applied to the RID before the lookup', () => {
    // Mask 0x00ff drops the bus: 04:00.1 (0x0401) looks up 0x0001.
    const t = resolve([{ name: 'pcie0', 'iommu-map-mask': '0x00ff', 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': '0x2000', length: '0x100' }], devices: devices() }]);
    expect(mapRid(t.spec.hostBridges[0]!, 0x0401)).toEqual({ smmu: 'smmu0', sid: 0x2001 });
    expect(sidsOf(t, '0000:04:00.1')).toEqual(['smmu0:0x2001']);
    expect(sidsOf(t, '0000:03:00.1')).toEqual(['smmu0:0x2001']);
    // 03:00.1 and 04:00.1 now carry the same stream ID: the SMMU cannot tell them apart, so
    // (arm_smmu_device_group) they share a group, and the fold is reported.
    const g = t.functions.find((f) => f.bdf === '0000:03:00.1')!.group;
    expect(g.members.map((m) => (m.kind === 'pci' ? m.bdf : m.name))).toContain('0000:04:00.1');
    const shared = t.diagnostics.filter((d) => d.kind === 'shared-stream-id');
    expect(shared.length).toBeGreaterThan(0);
    expect(shared.some((d) => d.message.includes('smmu0:0x2001') && d.message.includes('RID 0x0301') && d.message.includes('RID 0x0401'))).toBe(true);
    expect(shared.every((d) => d.severity === 'warning')).toBe(true);
  });

  it('a mask that folds the function bits puts a multi-function device on one stream ID', () => {
    const t = resolve([{ name: 'pcie0', 'iommu-map-mask': '0xfff8', 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: '0x8000' }], devices: devices() }]);
    expect(sidsOf(t, '0000:03:00.0')).toEqual(['smmu0:0x300']);
    expect(sidsOf(t, '0000:03:00.1')).toEqual(['smmu0:0x300']);
    expect(t.functions.find((f) => f.bdf === '0000:03:00.1')!.group.members).toHaveLength(2);
  });

  it('iommu-map-mask 0 (as on Juno): every RID is one stream ID, and every PCI function one group', () => {
    const t = resolve([{ name: 'pcie0', 'iommu-map-mask': 0, 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: 1 }], devices: devices() }]);
    expect(new Set(t.functions.flatMap((f) => f.streams.map((s) => `${s.smmu}:${s.sid}`)))).toEqual(new Set(['smmu0:0']));
    expect(t.groups).toHaveLength(1);
    expect(t.groups[0]!.members).toHaveLength(t.functions.length);
  });

  it('the first entry that covers the RID wins, and a shadowed entry is reported', () => {
    const t = resolve([
      {
        name: 'pcie0',
        'iommu-map': [
          { 'rid-base': '0x0300', smmu: 'smmu1', 'sid-base': '0x0000', length: '0x100' },
          { 'rid-base': '0x0000', smmu: 'smmu0', 'sid-base': '0x0000', length: '0x1000' },
        ],
        devices: devices(),
      },
    ]);
    expect(sidsOf(t, '0000:03:00.1')).toEqual(['smmu1:0x1']);
    expect(sidsOf(t, '0000:04:00.1')).toEqual(['smmu0:0x401']);
    const d = t.diagnostics.filter((x) => x.kind === 'shadowed-map-entry');
    expect(d).toHaveLength(1);
    expect(d[0]!.message).toBe('$.hostBridges[0].iommu-map[1]: RIDs 0x0300..0x03ff are already covered by $.hostBridges[0].iommu-map[0], which wins (of_map_id takes the first match)');
  });

  it('several root complexes in several segments, each with its own map', () => {
    const t = resolve([
      { name: 'pcie0', segment: 0, 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: '0x500' }], devices: devices() },
      { name: 'pcie1', segment: 1, 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': '0x1000', length: '0x500' }], devices: devices('pcie1-') },
    ]);
    expect(sidsOf(t, '0000:04:00.1')).toEqual(['smmu0:0x401']);
    expect(sidsOf(t, '0001:04:00.1')).toEqual(['smmu0:0x1401']);
    expect(t.diagnostics).toEqual([]);
  });
});

describe('unmapped requester IDs are reported, never dropped', () => {
  it('a RID beyond every entry: an error diagnostic naming the function and the RID', () => {
    const t = resolve([{ name: 'pcie0', 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: '0x400' }], devices: devices() }]);
    // Bus 04 (RIDs 0x0400-0x04ff) is not covered: 04:00.0 and 04:00.1.
    const un = t.diagnostics.filter((d) => d.kind === 'unmapped-rid');
    expect(un.map((d) => [d.master, d.rid])).toEqual([
      ['0000:04:00.0', 0x0400],
      ['0000:04:00.1', 0x0401],
    ]);
    expect(un.every((d) => d.severity === 'error')).toBe(true);
    expect(un[0]!.message).toBe('0000:04:00.0 (b.0): RID 0x0400, its requester ID, is not translated: no iommu-map entry of host bridge pcie0 covers it');
    const f = t.functions.find((x) => x.bdf === '0000:04:00.0')!;
    expect(f.streams).toEqual([]);
    expect(f.aliases[0]!.stream).toBeNull();
  });

  it('an unmapped bridge alias is reported even when the own RID maps', () => {
    const t = resolve([
      {
        name: 'pcie0',
        // Covers 02:01.0 (0x0208) but not the bridge alias (02, 00.0) = 0x0200.
        'iommu-map': [
          { 'rid-base': '0x0100', smmu: 'smmu0', 'sid-base': '0x0100', length: '0x100' },
          { 'rid-base': '0x0208', smmu: 'smmu0', 'sid-base': '0x0208', length: 8 },
        ],
        devices: [
          {
            type: 'root-port',
            device: 1,
            secondary: 1,
            subordinate: 2,
            acs: true,
            children: [{ type: 'pcie-to-pci-bridge', device: 0, secondary: 2, subordinate: 2, children: [{ type: 'pci-device', name: 'old', device: 1 }] }],
          },
        ],
      },
    ]);
    const old = t.functions.find((f) => f.name === 'old')!;
    expect(old.streams).toEqual([{ smmu: 'smmu0', sid: 0x0208 }]);
    const un = t.diagnostics.filter((d) => d.kind === 'unmapped-rid');
    expect(un.map((d) => [d.master, d.rid])).toEqual([
      ['0000:00:01.0', 0x0008],
      ['0000:02:01.0', 0x0200],
    ]);
    expect(un[1]!.message).toContain('its alias (PCIe-to-PCI bridge alias (secondary bus, devfn 0) of 0000:01:00.0)');
  });

  it('a host bridge without iommu-map: every function is reported', () => {
    const t = resolve([{ name: 'pcie0', devices: devices() }]);
    expect(t.diagnostics.filter((d) => d.kind === 'unmapped-rid')).toHaveLength(t.functions.length);
    expect(t.diagnostics[0]!.message).toContain('host bridge pcie0 has no iommu-map');
  });

  it('the mask is named when it took part', () => {
    const t = resolve([{ name: 'pcie0', 'iommu-map-mask': '0xff00', 'iommu-map': [{ 'rid-base': '0x0100', smmu: 'smmu0', 'sid-base': 0, length: '0x100' }], devices: devices() }]);
    const un = t.diagnostics.find((d) => d.master === '0000:03:00.1')!;
    expect(un.message).toContain('(masked with 0xff00: 0x0300)');
  });
});
