/**
 * Malformed topology files: every problem is reported with the file, the JSON
 * path and what is wrong; consistency problems are all reported together.
 */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TopologyError, parseTopology, parseTopologyDoc, type TopologyDoc } from '../src/topology/file.js';
import { loadTopologyFile } from '../src/topology/index.js';
import { presetDoc } from '../src/topology/presets.js';
import { renderTopology, resolvedJson } from '../src/topology/render.js';
import { resolveTopology } from '../src/topology/resolve.js';

const FILE = 'topo/bad.json';

function base(): TopologyDoc {
  return {
    format: 'smmu-topology/1',
    name: 'base',
    smmus: [
      { name: 'smmu0', shape: { smrs: 16, sidBits: 12 } },
      { name: 'smmu1', shape: { smrs: 16, sidBits: 15 } },
    ],
    hostBridges: [
      {
        name: 'pcie0',
        segment: 0,
        'bus-range': [0, 15],
        'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': 0, length: '0x800' }],
        devices: [
          { type: 'root-port', name: 'rp0', device: 1, secondary: 1, subordinate: 2, acs: true, children: [{ type: 'endpoint', name: 'nic', device: 0, functions: 2 }] },
          { type: 'root-port', name: 'rp1', device: 2, secondary: 3, subordinate: 3, acs: true },
        ],
      },
    ],
    platformDevices: [{ name: 'dma', iommus: [{ smmu: 'smmu1', sid: '0x10', mask: '0x3' }] }],
  };
}

/** The problems reported for a document, as "file: path: problem" lines. */
function problems(doc: unknown): string[] {
  try {
    parseTopologyDoc(doc, FILE);
  } catch (e) {
    if (e instanceof TopologyError) {
      for (const i of e.issues) expect(e.message).toContain(`${FILE}: ${i.path}: ${i.problem}`);
      return e.issues.map((i) => `${FILE}: ${i.path}: ${i.problem}`);
    }
    throw e;
  }
  return [];
}

function mutate(f: (d: TopologyDoc & Record<string, unknown>) => void): string[] {
  const d = structuredClone(base()) as TopologyDoc & Record<string, unknown>;
  f(d);
  return problems(d);
}

describe('topology files: the good one parses', () => {
  it('base document', () => {
    expect(problems(base())).toEqual([]);
    const spec = parseTopologyDoc(base(), FILE);
    expect(spec.hostBridges[0]!.devices[0]!.functions.map((f) => f.name)).toEqual(['rp0']);
    expect(spec.hostBridges[0]!.devices[0]!.children[0]!.functions.map((f) => f.name)).toEqual(['nic.0', 'nic.1']);
    expect(spec.smmus[0]!.features.numSmrg).toBe(16);
  });
});

describe('topology files: structural errors', () => {
  it('not JSON', () => {
    expect(() => parseTopology('{"format": "smmu-topology/1",', FILE)).toThrow(/^topo\/bad\.json: \$: not valid JSON/);
  });

  it('wrong format tag', () => {
    expect(mutate((d) => ((d as Record<string, unknown>).format = 'vmsa-case/1'))).toEqual([`${FILE}: $.format: expected "smmu-topology/1", got "vmsa-case/1"`]);
  });

  it('an unknown property (a typo) is named', () => {
    expect(mutate((d) => ((d.hostBridges![0] as unknown as Record<string, unknown>)['iommu_map'] = [])))
      .toEqual([`${FILE}: $.hostBridges[0].iommu_map: unknown property (expected one of: name, segment, bus-range, iommu-map, iommu-map-mask, devices)`]);
  });

  it('a bad number', () => {
    expect(mutate((d) => ((d.hostBridges![0]!['iommu-map']![0] as unknown as Record<string, unknown>)['sid-base'] = '0xZZ'))).toEqual([
      `${FILE}: $.hostBridges[0].iommu-map[0].sid-base: expected a stream ID (a number or a "0x..." string), got "0xZZ"`,
    ]);
  });

  it('an unknown device type', () => {
    expect(mutate((d) => ((d.hostBridges![0]!.devices![1] as unknown as Record<string, unknown>).type = 'switch'))[0]).toMatch(
      /^topo\/bad\.json: \$\.hostBridges\[0\]\.devices\[1\]\.type: expected one of root-port, upstream-port, .*got "switch"$/,
    );
  });

  it('a device type where it cannot sit', () => {
    expect(mutate((d) => (d.hostBridges![0]!.devices![1] = { type: 'endpoint', name: 'x', device: 2 }))).toEqual([
      `${FILE}: $.hostBridges[0].devices[1].type: a endpoint cannot sit on the root bus (bus 0x0); allowed there: root-port, rc-endpoint, pcie-to-pci-bridge, pci-bridge, pci-device (an endpoint integrated in the root complex is an rc-endpoint)`,
    ]);
    expect(mutate((d) => (d.hostBridges![0]!.devices![0]!.children![0] = { type: 'pci-device', name: 'x', device: 0 }))[0]).toContain(
      '$.hostBridges[0].devices[0].children[0].type: a pci-device cannot sit on a PCIe link (bus 0x1)',
    );
  });

  it('an impossible SMMU shape', () => {
    expect(mutate((d) => (d.smmus[0]!.shape = { contextBanks: 4, s2OnlyBanks: 8 }))).toEqual([
      `${FILE}: $.smmus[0].shape: not a possible SMMU: IDR1.NUMS2CB (8) exceeds NUMCB (4)`,
    ]);
    expect(mutate((d) => (d.smmus[0]!.shape = { sidBits: 16 }))).toEqual([`${FILE}: $.smmus[0].shape.sidBits: expected a number of stream-ID bits (IDR0.NUMSIDB) from 0 to 15, got 16`]);
  });

  it('no such file', () => {
    expect(() => loadTopologyFile('/nonexistent/topo.json')).toThrow('/nonexistent/topo.json: $: no such file');
  });
});

describe('topology files: consistency errors', () => {
  it('overlapping bus ranges of sibling bridges', () => {
    expect(mutate((d) => (d.hostBridges![0]!.devices![1]!.secondary = 2))).toEqual([
      `${FILE}: $.hostBridges[0].devices[1]: buses 0x2-0x3 overlap buses 0x1-0x2 of $.hostBridges[0].devices[0]`,
    ]);
  });

  it('a bridge range outside its parent, or below its own bus', () => {
    expect(mutate((d) => (d.hostBridges![0]!.devices![1]!.subordinate = 0x20))).toEqual([
      `${FILE}: $.hostBridges[0].devices[1]: buses 0x3-0x20 reach beyond the parent's range (up to 0xf)`,
    ]);
    expect(
      mutate((d) => {
        d.hostBridges![0]!.devices![0]!.children![0] = { type: 'upstream-port', device: 0, secondary: 1, subordinate: 2 };
      }),
    ).toEqual([`${FILE}: $.hostBridges[0].devices[0].children[0].secondary: secondary bus 0x1 must be above the bus the bridge is on (0x1)`]);
  });

  it('overlapping bus ranges of host bridges in one segment (another segment is fine)', () => {
    const second = (segment: number) => (d: TopologyDoc) => d.hostBridges!.push({ name: 'pcie1', segment, 'bus-range': [8, 31] });
    expect(mutate(second(0))).toEqual([`${FILE}: $.hostBridges[1].bus-range: buses 0x8-0x1f of segment 0 overlap buses 0x0-0xf of host bridge pcie0 ($.hostBridges[0])`]);
    expect(mutate(second(1))).toEqual([]);
  });

  it('a stream ID claimed twice on one SMMU: two platform devices', () => {
    expect(mutate((d) => d.platformDevices!.push({ name: 'dma2', iommus: [{ smmu: 'smmu1', sid: '0x12' }] }))).toEqual([
      `${FILE}: $.platformDevices[1].iommus[0]: stream ID 0x12 of smmu1 claimed twice: by platform device dma2 here and by platform device dma at $.platformDevices[0].iommus[0]`,
    ]);
  });

  it('a stream ID claimed twice on one SMMU: a platform device inside an iommu-map range', () => {
    expect(mutate((d) => d.platformDevices!.push({ name: 'gpu', iommus: [{ smmu: 'smmu0', sid: '0x7ff' }] }))).toEqual([
      `${FILE}: $.platformDevices[1].iommus[0]: stream ID 0x7ff of smmu0 claimed twice: by platform device gpu here and by the iommu-map of pcie0 at $.hostBridges[0].iommu-map[0]`,
    ]);
  });

  it('stream IDs claimed twice on one SMMU: two root complexes mapping onto the same range', () => {
    expect(mutate((d) => d.hostBridges!.push({ name: 'pcie1', segment: 1, 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu0', 'sid-base': '0x700', length: '0x200' }] }))).toEqual([
      `${FILE}: $.hostBridges[1].iommu-map[0]: stream IDs 0x700..0x7ff of smmu0 claimed twice: by the iommu-map of pcie1 here and by the iommu-map of pcie0 at $.hostBridges[0].iommu-map[0]`,
    ]);
    // The same range on another SMMU is no conflict.
    expect(mutate((d) => d.hostBridges!.push({ name: 'pcie1', segment: 1, 'iommu-map': [{ 'rid-base': 0, smmu: 'smmu1', 'sid-base': '0x700', length: '0x200' }] }))).toEqual([]);
  });

  it('a map entry or iommus naming an SMMU that does not exist', () => {
    expect(
      mutate((d) => {
        d.hostBridges![0]!['iommu-map']![0]!.smmu = 'smmu9';
        d.platformDevices![0]!.iommus[0]!.smmu = 'tbu';
      }),
    ).toEqual([
      `${FILE}: $.hostBridges[0].iommu-map[0].smmu: no SMMU is named "smmu9" (SMMUs: smmu0, smmu1)`,
      `${FILE}: $.platformDevices[0].iommus[0].smmu: no SMMU is named "tbu" (SMMUs: smmu0, smmu1)`,
    ]);
  });

  it("stream IDs beyond the SMMU's stream-ID bits", () => {
    expect(mutate((d) => (d.hostBridges![0]!['iommu-map']![0]!.length = '0x1001'))).toEqual([
      `${FILE}: $.hostBridges[0].iommu-map[0]: stream IDs 0x0..0x1000 do not fit in smmu0's 12 stream-ID bits (up to 0xfff)`,
    ]);
  });

  it('an iommu-map-mask that ignores bits of a rid-base', () => {
    expect(
      mutate((d) => {
        d.hostBridges![0]!['iommu-map-mask'] = '0xff';
        d.hostBridges![0]!['iommu-map']![0]!['rid-base'] = '0x100';
      }),
    ).toEqual([
      `${FILE}: $.hostBridges[0].iommu-map[0].rid-base: iommu-map-mask 0xff ignores rid-base 0x100 (bits 0x100): no masked RID can match it (of_map_id refuses this map)`,
    ]);
  });

  it('a devfn used twice on one bus, a function without function 0, a link device other than 0', () => {
    expect(mutate((d) => d.hostBridges![0]!.devices!.push({ type: 'rc-endpoint', name: 'dup', device: 1 }))).toEqual([
      `${FILE}: $.hostBridges[0].devices[2]: devfn 01.0 on bus 0x0 is already taken by $.hostBridges[0].devices[0]`,
    ]);
    expect(mutate((d) => d.hostBridges![0]!.devices!.push({ type: 'rc-endpoint', name: 'f3', device: 5, functions: [{ function: 3 }] }))).toEqual([
      `${FILE}: $.hostBridges[0].devices[2].functions[0]: slot 05 on bus 0x0 has function 3 but no function 0 (PCI finds a slot's functions through function 0)`,
    ]);
    expect(mutate((d) => (d.hostBridges![0]!.devices![0]!.children![0]!.device = 3))).toEqual([
      `${FILE}: $.hostBridges[0].devices[0].children[0].device: a device on a PCIe link (bus 0x1, below a port) must be device 0, got 3`,
    ]);
  });

  it('a name used twice', () => {
    expect(mutate((d) => (d.platformDevices![0]!.name = 'nic'))).toEqual([`${FILE}: $.platformDevices[0].name: name "nic" is already used by $.hostBridges[0].devices[0].children[0].name`]);
  });

  it('ACS on a function that cannot have it', () => {
    expect(
      mutate((d) => {
        d.hostBridges![0]!.devices![1]!.subordinate = 4;
        d.hostBridges![0]!.devices![1]!.children = [{ type: 'pcie-to-pci-bridge', device: 0, secondary: 4, subordinate: 4, acs: true }];
      }),
    ).toEqual([
      `${FILE}: $.hostBridges[0].devices[1].children[0].acs: a pcie-to-pci-bridge cannot have ACS (conventional PCI has none, and PCIe 6.12.1 excludes PCIe-to-PCI and PCI-to-PCIe bridges)`,
    ]);
  });

  it('every consistency problem is reported at once', () => {
    const p = mutate((d) => {
      d.hostBridges![0]!.devices![1]!.secondary = 2;
      d.hostBridges![0]!['iommu-map']![0]!.smmu = 'smmu9';
      d.platformDevices!.push({ name: 'dma2', iommus: [{ smmu: 'smmu1', sid: '0x13' }] });
    });
    expect(p).toHaveLength(3);
  });

  it('a file on disk is named in its errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-topo-'));
    const file = join(dir, 'overlap.json');
    const d = base();
    d.hostBridges![0]!.devices![1]!.secondary = 2;
    writeFileSync(file, JSON.stringify(d));
    expect(() => loadTopologyFile(file)).toThrow(`${file}: $.hostBridges[0].devices[1]: buses 0x2-0x3 overlap buses 0x1-0x2 of $.hostBridges[0].devices[0]`);
  });
});

describe('topology files: bad input never crashes', () => {
  /** Every [container, key] in a JSON tree. */
  function slots(v: unknown, out: Array<[Record<string, unknown> | unknown[], string | number]> = []): Array<[Record<string, unknown> | unknown[], string | number]> {
    if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), slots(x, out)));
    else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) (out.push([v as Record<string, unknown>, k]), slots(x, out));
    return out;
  }

  it('any value anywhere (or a deleted property) gives a result or a TopologyError', () => {
    const docs = [base(), presetDoc('soc')];
    fc.assert(
      fc.property(fc.nat(1), fc.nat(), fc.oneof(fc.anything(), fc.integer({ min: -2, max: 300 }), fc.constant(undefined)), (which, at, value) => {
        const d = structuredClone(docs[which]!);
        const all = slots(d);
        const [holder, key] = all[at % all.length]!;
        if (value === undefined && !Array.isArray(holder)) delete holder[key as string];
        else (holder as Record<string | number, unknown>)[key] = value;
        try {
          const t = resolveTopology(parseTopologyDoc(d, 'fuzz.json'));
          renderTopology(t);
          JSON.stringify(resolvedJson(t));
        } catch (e) {
          if (!(e instanceof TopologyError)) throw e;
          expect(e.message.startsWith('fuzz.json: $')).toBe(true);
        }
      }),
      { numRuns: 400, seed: 42 },
    );
  });
});
