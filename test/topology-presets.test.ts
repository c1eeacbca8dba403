/**
 * Every preset, and a large generated topology (>= 4,096 stream IDs over >= 16
 * SMMUs), resolves: every requester ID maps, no stream ID is claimed twice on
 * one SMMU, and each stream ID agrees with an independent reading of the
 * document's iommu-map (of_map_id re-done here on the raw JSON).
 */

import { describe, expect, it } from 'vitest';
import { parseTopology, parseTopologyDoc, type NumberLike, type TopologyDoc } from '../src/topology/file.js';
import { GenerateError, generateTopology, type GenerateSizes } from '../src/topology/generate.js';
import type { ResolvedTopology } from '../src/topology/model.js';
import { PRESET_NAMES, loadPreset, presetDoc } from '../src/topology/presets.js';
import { resolveTopology } from '../src/topology/resolve.js';

const num = (v: NumberLike | undefined, dflt: number): number => (v === undefined ? dflt : typeof v === 'number' ? v : parseInt(v, 16));

/** The (host bridge, RID) or platform device behind each stream ID of each SMMU: more than one is a stream ID claimed twice. */
function claimants(t: ResolvedTopology): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  const add = (key: string, who: string): void => {
    let s = m.get(key);
    if (s === undefined) m.set(key, (s = new Set()));
    s.add(who);
  };
  for (const f of t.functions) for (const a of f.aliases) if (a.stream !== null) add(`${a.stream.smmu}:${a.stream.sid}`, `${f.hostBridge.name}/${a.rid}`);
  for (const d of t.platformDevices) for (const s of d.streams) add(`${s.smmu}:${s.sid}`, d.name);
  return m;
}

/** Checks a resolved topology against its own document. Returns the number of stream IDs in use. */
function checkResolves(doc: TopologyDoc, t: ResolvedTopology): number {
  expect(t.diagnostics).toEqual([]);
  const claims = claimants(t);
  const twice = [...claims].filter(([, who]) => who.size > 1);
  expect(twice).toEqual([]);
  // Each RID's stream ID, re-derived from the raw document.
  for (const f of t.functions) {
    const hb = doc.hostBridges!.find((h) => h.name === f.hostBridge.name)!;
    const mask = num(hb['iommu-map-mask'], 0xffffffff);
    for (const a of f.aliases) {
      const masked = (a.rid & mask) >>> 0;
      const e = hb['iommu-map']!.find((x) => masked >= num(x['rid-base'], 0) && masked < num(x['rid-base'], 0) + num(x.length, 0))!;
      expect(a.stream).toEqual({ smmu: e.smmu, sid: masked - num(e['rid-base'], 0) + num(e['sid-base'], 0) });
    }
  }
  // Every group is on exactly one SMMU, and every stream ID in use belongs to exactly one group.
  const owner = new Map<string, number>();
  for (const g of t.groups) {
    expect(g.smmus).toHaveLength(1);
    for (const s of g.streams) {
      const k = `${s.smmu}:${s.sid}`;
      expect(owner.has(k)).toBe(false);
      owner.set(k, g.id);
    }
  }
  expect(owner.size).toBe(claims.size);
  return claims.size;
}

describe('presets', () => {
  it('there are soc, server and hyperscale', () => {
    expect(PRESET_NAMES).toEqual(['soc', 'server', 'hyperscale']);
  });

  for (const name of ['soc', 'server', 'hyperscale']) {
    it(`${name} resolves with no stream ID claimed twice`, () => {
      const t = resolveTopology(loadPreset(name));
      const sids = checkResolves(presetDoc(name), t);
      if (name === 'soc') {
        expect(t.spec.smmus).toHaveLength(1);
        expect(t.platformDevices).toHaveLength(6);
        expect(t.functions).toHaveLength(7);
        // The Wi-Fi/BT combo below a root port without ACS shares the root port's group.
        const wifi = t.functions.find((f) => f.name === 'wifi')!;
        expect(wifi.group.members.map((m) => m.kind === 'pci' && m.name)).toEqual(['pcie1-rp0', 'wifi', 'bt']);
        // dma0's masked specifier covers 16 stream IDs.
        expect(t.platformDevices.find((d) => d.name === 'dma0')!.streams).toHaveLength(16);
      }
      if (name === 'server') {
        expect(t.spec.smmus).toHaveLength(4);
        expect(t.functions).toHaveLength(264);
        expect(t.functions.filter((f) => f.type === 'upstream-port').length).toBeGreaterThan(0);
        const bridges = t.functions.filter((f) => f.type === 'pcie-to-pci-bridge');
        expect(bridges).toHaveLength(2);
        for (const b of bridges) {
          // Everything behind the legacy bridge issues DMA with (secondary bus, 00.0) too, and shares its group.
          for (const c of b.children) {
            expect(c.aliases.map((a) => a.rid)).toContain(b.secondary << 8);
            expect(c.group).toBe(b.group);
          }
        }
        // Several iommu-map entries per root complex, over several SMMUs.
        for (const hb of t.spec.hostBridges) expect(new Set(hb.iommuMap.map((e) => e.smmu)).size).toBe(4);
      }
      if (name === 'hyperscale') {
        expect(t.spec.smmus).toHaveLength(16);
        expect(sids).toBeGreaterThanOrEqual(4096);
        expect(sids).toBe(4800);
        for (const s of t.spec.smmus) expect(t.streamOwners.get(s.name)!.size).toBeGreaterThan(0);
      }
    });
  }

  it('a preset is the same document every time', () => {
    expect(presetDoc('server')).toEqual(presetDoc('server'));
  });
});

describe('the generator', () => {
  const LARGE: GenerateSizes = { smmus: 20, hostBridges: 11, rootPorts: 6, switchFanout: 8, functions: 8, legacyBridges: 1, legacyDevices: 6, seed: 99 };

  it('a large generated topology: >= 4,096 stream IDs over >= 16 SMMUs, none claimed twice', () => {
    const doc = generateTopology(LARGE);
    const t = resolveTopology(parseTopologyDoc(doc, 'generated'));
    const sids = checkResolves(doc, t);
    expect(sids).toBeGreaterThanOrEqual(4096);
    const used = t.spec.smmus.filter((s) => t.streamOwners.get(s.name)!.size > 0);
    expect(used.length).toBeGreaterThanOrEqual(16);
    // 11 root complexes x (5 switched root ports x (root port + upstream port + 8 x (downstream port + 8 functions))
    //   + 1 legacy root port x (root port + bridge + 6 PCI devices)) = 11 x (5 x 74 + 8) = 4,158 PCI functions;
    // plus one bridge alias (secondary bus, 00.0) per legacy bridge (no device sits at 00.0) and 20 x 4 platform IDs.
    expect(t.functions).toHaveLength(4158);
    expect(sids).toBe(4158 + 11 + 80);
  });

  it('is deterministic: the same sizes and seed give the same document, another seed another one', () => {
    expect(generateTopology(LARGE)).toEqual(generateTopology(LARGE));
    const a = JSON.stringify(generateTopology({ ...LARGE, seed: 1 }));
    const b = JSON.stringify(generateTopology({ ...LARGE, seed: 2 }));
    expect(a).not.toEqual(b);
  });

  it('its document survives a trip through a file', () => {
    const doc = generateTopology({ smmus: 3, rootPorts: 2, switchFanout: 2, functions: 2, seed: 5 });
    const t1 = resolveTopology(parseTopologyDoc(doc, 'a'));
    const t2 = resolveTopology(parseTopology(JSON.stringify(doc), 'b'));
    expect(t2.functions.map((f) => [f.bdf, f.streams, f.group.id])).toEqual(t1.functions.map((f) => [f.bdf, f.streams, f.group.id]));
  });

  it('devices fill links across root complexes first; empty links stay empty', () => {
    const doc = generateTopology({ smmus: 2, hostBridges: 2, rootPorts: 2, switchFanout: 2, devices: 3, functions: 1, seed: 3 });
    const t = resolveTopology(parseTopologyDoc(doc, 'g'));
    const endpoints = t.functions.filter((f) => f.type === 'endpoint');
    expect(endpoints.map((f) => f.bdf.slice(0, 4))).toEqual(['0000', '0000', '0001']);
  });

  it('refuses sizes it cannot build, saying why', () => {
    expect(() => generateTopology({ smmus: 8, hostBridges: 1, rootPorts: 31, switchFanout: 32, functions: 1, seed: 1 })).toThrow(GenerateError);
    expect(() => generateTopology({ smmus: 8, hostBridges: 1, rootPorts: 31, switchFanout: 32, functions: 1, seed: 1 })).toThrow(/host bridge pcie0 needs more than 256 buses/);
    expect(() => generateTopology({ smmus: 1, rootPorts: 4, switchFanout: 8, functions: 1, seed: 1, smmuShape: { sidBits: 10 } })).toThrow(/smmu0 runs out of stream IDs/);
    expect(() => generateTopology({ smmus: 1, rootPorts: 1, switchFanout: 2, devices: 3, functions: 1, seed: 1 })).toThrow('devices must be an integer from 0 to 2, got 3');
    expect(() => generateTopology({ smmus: 0, rootPorts: 1, switchFanout: 0, functions: 1, seed: 1 })).toThrow('smmus must be an integer from 1 to 256, got 0');
  });
});
