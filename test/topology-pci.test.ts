/**
 * Requester IDs, DMA aliases and IOMMU groups on hand-built PCI trees. Every
 * expected RID, alias and group below is worked out by hand from the PCI rules
 * as Linux applies them (pci_for_each_dma_alias in drivers/pci/search.c;
 * pci_device_group, get_pci_alias_group, get_pci_function_alias_group in
 * drivers/iommu/iommu.c; pci_acs_enabled, pci_acs_path_enabled in
 * drivers/pci/pci.c), not read back from the code under test. The iommu-map is
 * the identity (SID = RID) so that stream IDs can be read off the RIDs.
 */

import { describe, expect, it } from 'vitest';
import { parseTopologyDoc, type PciNodeDoc, type TopologyDoc } from '../src/topology/file.js';
import type { PciFunction, ResolvedTopology } from '../src/topology/model.js';
import { resolveTopology } from '../src/topology/resolve.js';

function doc(devices: PciNodeDoc[], extra: Partial<TopologyDoc> = {}): TopologyDoc {
  return {
    format: 'smmu-topology/1',
    name: 'pci-rules',
    smmus: [{ name: 'smmu0', shape: { smrs: 64, sidBits: 15 } }],
    hostBridges: [{ name: 'pcie0', segment: 0, 'bus-range': [0, 0x1f], 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: 0x2000 }], devices }],
    ...extra,
  };
}

function resolve(d: TopologyDoc): ResolvedTopology {
  return resolveTopology(parseTopologyDoc(d, 'pci-rules.json'));
}

function fn(t: ResolvedTopology, bdf: string): PciFunction {
  const f = t.functions.find((x) => x.bdf === bdf);
  if (f === undefined) throw new Error(`no function ${bdf}`);
  return f;
}

const aliasRids = (f: PciFunction): number[] => f.aliases.map((a) => a.rid);
const groupOf = (t: ResolvedTopology, bdf: string): string[] => fn(t, bdf).group.members.map((m) => (m.kind === 'pci' ? m.bdf : m.name)).sort();

/**
 * 00:01.0 root port A (ACS)          [01-05]
 *   01:00.0 PCIe-to-PCI bridge brA    [02-03]
 *     02:00.0 PCI device legacy0
 *     02:03.0 PCI device legacy1
 *     02:04.0 PCI-to-PCI bridge pbr   [03-03]
 *       03:01.0 PCI device deep0
 * 00:02.0 root port B (no ACS)       [06-08]
 *   06:00.0 upstream port             [07-08]
 *     07:00.0 downstream port (ACS)   [08-08]
 *       08:00.0 endpoint ep0
 * 00:03.0 root port C (ACS)          [09-0c]
 *   09:00.0 PCIe-to-PCI bridge brC    [0a-0c]
 *     0a:01.0 PCI-to-PCIe bridge rbr  [0b-0c]
 *       0b:00.0 endpoint epR
 * 00:04.0 root port D (ACS)          [0d-0d]   } one multi-function slot
 *   0d:00.0 endpoint sata, DMA alias quirk: phantom function 00.1
 * 00:04.1 root port D1 (no ACS)      [0e-0e]   }
 *   0e:00.0-1 endpoint mf, two functions, no ACS
 * 00:05.0 RCiEP rcA, DMA alias quirk: devfn 06.0
 * 00:06.0 RCiEP rcB
 */
const TREE: PciNodeDoc[] = [
  {
    type: 'root-port',
    name: 'rpA',
    device: 1,
    secondary: 1,
    subordinate: 5,
    acs: true,
    children: [
      {
        type: 'pcie-to-pci-bridge',
        name: 'brA',
        device: 0,
        secondary: 2,
        subordinate: 3,
        children: [
          { type: 'pci-device', name: 'legacy0', device: 0 },
          { type: 'pci-device', name: 'legacy1', device: 3 },
          { type: 'pci-bridge', name: 'pbr', device: 4, secondary: 3, subordinate: 3, children: [{ type: 'pci-device', name: 'deep0', device: 1 }] },
        ],
      },
    ],
  },
  {
    type: 'root-port',
    name: 'rpB',
    device: 2,
    secondary: 6,
    subordinate: 8,
    acs: false,
    children: [
      {
        type: 'upstream-port',
        name: 'uspB',
        device: 0,
        secondary: 7,
        subordinate: 8,
        children: [{ type: 'downstream-port', name: 'dspB0', device: 0, secondary: 8, subordinate: 8, acs: true, children: [{ type: 'endpoint', name: 'ep0', device: 0 }] }],
      },
    ],
  },
  {
    type: 'root-port',
    name: 'rpC',
    device: 3,
    secondary: 9,
    subordinate: 0xc,
    acs: true,
    children: [
      {
        type: 'pcie-to-pci-bridge',
        name: 'brC',
        device: 0,
        secondary: 0xa,
        subordinate: 0xc,
        children: [{ type: 'pci-to-pcie-bridge', name: 'rbr', device: 1, secondary: 0xb, subordinate: 0xc, children: [{ type: 'endpoint', name: 'epR', device: 0 }] }],
      },
    ],
  },
  {
    type: 'root-port',
    name: 'rpD',
    device: 4,
    function: 0,
    secondary: 0xd,
    subordinate: 0xd,
    acs: true,
    children: [{ type: 'endpoint', name: 'sata', device: 0, functions: [{ function: 0, dmaAliases: ['00.1'] }] }],
  },
  {
    type: 'root-port',
    name: 'rpD1',
    device: 4,
    function: 1,
    secondary: 0xe,
    subordinate: 0xe,
    acs: false,
    children: [{ type: 'endpoint', name: 'mf', device: 0, functions: 2, acs: false }],
  },
  { type: 'rc-endpoint', name: 'rcA', device: 5, functions: [{ function: 0, dmaAliases: ['06.0'] }] },
  { type: 'rc-endpoint', name: 'rcB', device: 6 },
];

describe('requester IDs and DMA aliases (pci_for_each_dma_alias)', () => {
  const t = resolve(doc(TREE));

  it('RID = bus << 8 | device << 3 | function', () => {
    expect(fn(t, '0000:00:01.0').rid).toBe(0x0008);
    expect(fn(t, '0000:00:04.1').rid).toBe(0x0021);
    expect(fn(t, '0000:02:03.0').rid).toBe(0x0218);
    expect(fn(t, '0000:0e:00.1').rid).toBe(0x0e01);
    expect(fn(t, '0000:0e:00.1').name).toBe('mf.1');
  });

  it('PCIe ports forward the requester ID unchanged: an endpoint behind a switch has only its own RID', () => {
    expect(aliasRids(fn(t, '0000:08:00.0'))).toEqual([0x0800]);
  });

  it('a PCIe-to-PCI bridge takes ownership with (secondary bus, devfn 0)', () => {
    // legacy1 02:03.0: own 0x0218, then brA (PCI_EXP_TYPE_PCI_BRIDGE, secondary bus 02) -> 02:00.0 = 0x0200.
    const f = fn(t, '0000:02:03.0');
    expect(aliasRids(f)).toEqual([0x0218, 0x0200]);
    expect(f.aliases.map((a) => a.reason)).toEqual(['requester', 'pcie-to-pci-bridge']);
    expect(f.aliases[1]!.by.bdf).toBe('0000:01:00.0');
    // legacy0 sits at 02:00.0: the alias is its own RID again (Linux calls back twice; one stream ID).
    expect(aliasRids(fn(t, '0000:02:00.0'))).toEqual([0x0200, 0x0200]);
    expect(fn(t, '0000:02:00.0').streams).toEqual([{ smmu: 'smmu0', sid: 0x0200 }]);
    // The bridge itself is a PCIe function below a root port: its own RID only.
    expect(aliasRids(fn(t, '0000:01:00.0'))).toEqual([0x0100]);
  });

  it('a conventional PCI bridge aliases to its own RID, and the walk goes on upstream', () => {
    // deep0 03:01.0 = 0x0308 (devfn 1 << 3); pbr (no PCIe capability) 02:04.0 = 0x0220; then brA's (02, 0) = 0x0200.
    expect(aliasRids(fn(t, '0000:03:01.0'))).toEqual([0x0308, 0x0220, 0x0200]);
    expect(fn(t, '0000:03:01.0').streams.map((s) => s.sid)).toEqual([0x0308, 0x0220, 0x0200]);
  });

  it('a PCI-to-PCIe (reverse) bridge aliases to its own RID', () => {
    // epR 0b:00.0 = 0x0b00; rbr (PCI_EXP_TYPE_PCIE_BRIDGE) 0a:01.0 = 0x0a08; brC's (0a, 0) = 0x0a00.
    const f = fn(t, '0000:0b:00.0');
    expect(aliasRids(f)).toEqual([0x0b00, 0x0a08, 0x0a00]);
    expect(f.aliases.map((a) => a.reason)).toEqual(['requester', 'pci-to-pcie-bridge', 'pcie-to-pci-bridge']);
  });

  it('a dma_alias_mask quirk adds (same bus, alias devfn), even for a phantom function', () => {
    expect(aliasRids(fn(t, '0000:0d:00.0'))).toEqual([0x0d00, 0x0d01]);
    expect(fn(t, '0000:0d:00.0').aliases[1]!.reason).toBe('quirk');
    expect(aliasRids(fn(t, '0000:00:05.0'))).toEqual([0x0028, 0x0030]);
  });

  it('a conventional bridge with the PCIe-bridge-alias quirk aliases to (secondary bus, devfn 0)', () => {
    const t2 = resolve(
      doc([
        {
          type: 'root-port',
          device: 1,
          secondary: 1,
          subordinate: 3,
          acs: true,
          children: [
            {
              type: 'pcie-to-pci-bridge',
              device: 0,
              secondary: 2,
              subordinate: 3,
              children: [{ type: 'pci-bridge', name: 'quirky', device: 2, secondary: 3, subordinate: 3, pcieBridgeAlias: true, children: [{ type: 'pci-device', name: 'd', device: 5 }] }],
            },
          ],
        },
      ]),
    );
    // d 03:05.0 = 0x0328; quirky (flagged) -> (03, 0) = 0x0300; then the PCIe-to-PCI bridge's (02, 0) = 0x0200.
    const d = fn(t2, '0000:03:05.0');
    expect(aliasRids(d)).toEqual([0x0328, 0x0300, 0x0200]);
    expect(d.aliases[1]!.reason).toBe('pcie-bridge-alias-quirk');
  });
});

describe('IOMMU groups (pci_device_group)', () => {
  const t = resolve(doc(TREE));

  it('everything below a PCIe-to-PCI bridge shares its group (aliases), and stops at an ACS root port', () => {
    const g = ['0000:01:00.0', '0000:02:00.0', '0000:02:03.0', '0000:02:04.0', '0000:03:01.0'];
    for (const b of g) expect(groupOf(t, b)).toEqual(g);
    expect(groupOf(t, '0000:00:01.0')).toEqual(['0000:00:01.0']);
    expect(fn(t, '0000:02:03.0').group.reasons.join('; ')).toMatch(/pcie-to-pci-bridge 0000:01:00.0 carries its alias 0x0200/);
  });

  it('below a root port without ACS, the ports and the endpoint all join the root port', () => {
    // ep0: climb dspB0 (ACS, but the path up fails at rpB), uspB, rpB.
    const g = ['0000:00:02.0', '0000:06:00.0', '0000:07:00.0', '0000:08:00.0'];
    expect(groupOf(t, '0000:08:00.0')).toEqual(g);
    expect(fn(t, '0000:08:00.0').group.reasons).toContain('no ACS isolation at 0000:00:02.0 (root-port)');
  });

  it('with ACS on the root port, each port and the endpoint get groups of their own', () => {
    const tree = structuredClone(TREE);
    tree[1]!.acs = true;
    const t2 = resolve(doc(tree));
    for (const b of ['0000:00:02.0', '0000:06:00.0', '0000:07:00.0', '0000:08:00.0']) expect(groupOf(t2, b)).toEqual([b]);
    // ...but without ACS on the downstream port, the endpoint joins the downstream port only.
    const tree3 = structuredClone(tree);
    tree3[1]!.children![0]!.children![0]!.acs = false;
    const t3 = resolve(doc(tree3));
    expect(groupOf(t3, '0000:08:00.0')).toEqual(['0000:07:00.0', '0000:08:00.0']);
    expect(groupOf(t3, '0000:06:00.0')).toEqual(['0000:06:00.0']);
  });

  it('a reverse bridge behind a PCIe-to-PCI bridge: one group up to the ACS root port', () => {
    expect(groupOf(t, '0000:0b:00.0')).toEqual(['0000:09:00.0', '0000:0a:01.0', '0000:0b:00.0']);
  });

  it('multi-function root ports: the ACS one is alone, the one without joins what is below it', () => {
    expect(fn(t, '0000:00:04.0').multifunction).toBe(true);
    expect(groupOf(t, '0000:00:04.0')).toEqual(['0000:00:04.0']);
    expect(groupOf(t, '0000:0e:00.1')).toEqual(['0000:00:04.1', '0000:0e:00.0', '0000:0e:00.1']);
    // A phantom-function quirk adds a stream ID but nobody to the group.
    expect(groupOf(t, '0000:0d:00.0')).toEqual(['0000:0d:00.0']);
    expect(fn(t, '0000:0d:00.0').group.streams.map((s) => s.sid)).toEqual([0x0d00, 0x0d01]);
  });

  it('devices that are DMA aliases of each other share a group', () => {
    expect(groupOf(t, '0000:00:06.0')).toEqual(['0000:00:05.0', '0000:00:06.0']);
    expect(fn(t, '0000:00:05.0').group.reasons).toEqual(['DMA alias quirk between 0000:00:05.0 and 0000:00:06.0']);
    // Both use 0x0030, but from the same requester ID: not a folded stream ID.
    expect(t.diagnostics).toEqual([]);
  });

  it('multi-function endpoints: one group without ACS, one per function with it (below ACS ports)', () => {
    const ep = (acs: boolean): PciNodeDoc[] => [
      { type: 'root-port', device: 1, secondary: 1, subordinate: 1, acs: true, children: [{ type: 'endpoint', name: 'nic', device: 0, functions: 4, acs }] },
    ];
    const without = resolve(doc(ep(false)));
    expect(groupOf(without, '0000:01:00.2')).toEqual(['0000:01:00.0', '0000:01:00.1', '0000:01:00.2', '0000:01:00.3']);
    expect(fn(without, '0000:01:00.2').group.reasons).toEqual(['multi-function slot 0000:01:00 without ACS']);
    const withAcs = resolve(doc(ep(true)));
    expect(groupOf(withAcs, '0000:01:00.2')).toEqual(['0000:01:00.2']);
    // A single-function endpoint needs no ACS (PCIe 6.12.1.3).
    const single = resolve(doc([{ type: 'root-port', device: 1, secondary: 1, subordinate: 1, acs: true, children: [{ type: 'endpoint', device: 0 }] }]));
    expect(groupOf(single, '0000:01:00.0')).toEqual(['0000:01:00.0']);
  });

  it('the whole tree: 21 functions in 9 groups, numbered in scan order', () => {
    expect(t.functions.map((f) => f.bdf)).toEqual([
      '0000:00:01.0',
      '0000:01:00.0',
      '0000:02:00.0',
      '0000:02:03.0',
      '0000:02:04.0',
      '0000:03:01.0',
      '0000:00:02.0',
      '0000:06:00.0',
      '0000:07:00.0',
      '0000:08:00.0',
      '0000:00:03.0',
      '0000:09:00.0',
      '0000:0a:01.0',
      '0000:0b:00.0',
      '0000:00:04.0',
      '0000:0d:00.0',
      '0000:00:04.1',
      '0000:0e:00.0',
      '0000:0e:00.1',
      '0000:00:05.0',
      '0000:00:06.0',
    ]);
    expect(t.groups.map((g) => g.members.length)).toEqual([1, 5, 4, 1, 3, 1, 1, 3, 2]);
    expect(t.functions.map((f) => f.group.id)).toEqual([0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 4, 4, 4, 5, 6, 7, 7, 7, 8, 8]);
  });
});
