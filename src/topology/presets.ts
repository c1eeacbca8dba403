/**
 * Named topologies, from a laptop-sized SoC to a hyperscale server.
 *
 * - `soc`: one SMMU; six platform devices (one `iommus` specifier with a mask
 *   covering a DMA engine's 16 channels) and two small PCIe root complexes: one
 *   mapped RID by RID (several one-ID `iommu-map` entries, as Qualcomm SoCs
 *   do), one linearly, with a Wi-Fi/Bluetooth combo card (two functions, no
 *   ACS) below a Root Port without ACS.
 * - `server`: 4 SMMUs, 2 root complexes, 264 PCI functions behind switches
 *   (8 Downstream Ports each) and one legacy PCIe-to-PCI bridge per root
 *   complex, plus 4 platform devices (generated, seed 2024).
 * - `hyperscale`: 16 SMMUs, 8 root complexes with 8 Root Ports each, a switch
 *   of 8 Downstream Ports below every Root Port, and an 8-function endpoint on
 *   every link: 4,736 PCI functions and 4,800 stream IDs (generated, seed 1).
 */

import { TOPOLOGY_FORMAT, parseTopologyDoc, type TopologyDoc } from './file.js';
import { generateTopology } from './generate.js';
import type { TopologySpec } from './model.js';

function soc(): TopologyDoc {
  return {
    format: TOPOLOGY_FORMAT,
    name: 'soc',
    smmus: [{ name: 'smmu0', shape: { smrs: 32, sidBits: 15, contextBanks: 16, s2OnlyBanks: 4 } }],
    hostBridges: [
      {
        // Qualcomm style: one iommu-map entry per requester ID.
        name: 'pcie0',
        segment: 0,
        'bus-range': [0, 1],
        'iommu-map': [
          { 'rid-base': '0x0000', smmu: 'smmu0', 'sid-base': '0x1c00', length: 1 },
          { 'rid-base': '0x0100', smmu: 'smmu0', 'sid-base': '0x1c01', length: 1 },
        ],
        devices: [{ type: 'root-port', name: 'pcie0-rp', device: 0, secondary: 1, subordinate: 1, acs: true, children: [{ type: 'endpoint', name: 'nvme0', device: 0 }] }],
      },
      {
        name: 'pcie1',
        segment: 1,
        'bus-range': [0, 15],
        'iommu-map': [{ 'rid-base': '0x0000', smmu: 'smmu0', 'sid-base': '0x2000', length: '0x1000' }],
        devices: [
          {
            type: 'root-port',
            name: 'pcie1-rp0',
            device: 0,
            secondary: 1,
            subordinate: 1,
            acs: false,
            children: [
              {
                type: 'endpoint',
                name: 'combo',
                device: 0,
                functions: [
                  { function: 0, name: 'wifi' },
                  { function: 1, name: 'bt' },
                ],
              },
            ],
          },
          { type: 'root-port', name: 'pcie1-rp1', device: 1, secondary: 2, subordinate: 2, acs: true, children: [{ type: 'endpoint', name: 'xhci1', device: 0 }] },
        ],
      },
    ],
    platformDevices: [
      { name: 'gpu', iommus: [{ smmu: 'smmu0', sid: '0x0000' }, { smmu: 'smmu0', sid: '0x0001' }] },
      { name: 'display', iommus: [{ smmu: 'smmu0', sid: '0x0010', mask: '0x1' }] },
      { name: 'usb0', iommus: [{ smmu: 'smmu0', sid: '0x0020' }] },
      { name: 'emmc', iommus: [{ smmu: 'smmu0', sid: '0x0030' }] },
      { name: 'crypto', iommus: [{ smmu: 'smmu0', sid: '0x0040' }, { smmu: 'smmu0', sid: '0x0041' }] },
      { name: 'dma0', iommus: [{ smmu: 'smmu0', sid: '0x0050', mask: '0xf' }] },
    ],
  };
}

function server(): TopologyDoc {
  return generateTopology({
    name: 'server',
    smmus: 4,
    hostBridges: 2,
    rootPorts: 4,
    switchFanout: 8,
    functions: 4,
    legacyBridges: 1,
    legacyDevices: 4,
    platformDevices: 4,
    seed: 2024,
    smmuShape: { smrs: 128, sidBits: 15, contextBanks: 128, s2OnlyBanks: 32 },
  });
}

function hyperscale(): TopologyDoc {
  return generateTopology({
    name: 'hyperscale',
    smmus: 16,
    hostBridges: 8,
    rootPorts: 8,
    switchFanout: 8,
    functions: 8,
    platformDevices: 16,
    seed: 1,
    smmuShape: { smrs: 128, sidBits: 15, contextBanks: 128, s2OnlyBanks: 32 },
  });
}

export const PRESETS: Record<string, { description: string; doc: () => TopologyDoc }> = {
  soc: { description: '1 SMMU, 6 platform devices and 2 small PCIe root complexes (7 functions)', doc: soc },
  server: { description: '4 SMMUs, 2 root complexes, 264 PCI functions behind switches and legacy PCIe-to-PCI bridges', doc: server },
  hyperscale: { description: '16 SMMUs, 8 root complexes, 4,736 PCI functions, 4,800 stream IDs', doc: hyperscale },
};

export const PRESET_NAMES = Object.keys(PRESETS);

export class UnknownPresetError extends Error {
  constructor(name: string) {
    super(`no preset named "${name}" (presets: ${PRESET_NAMES.join(', ')})`);
    this.name = 'UnknownPresetError';
  }
}

export function presetDoc(name: string): TopologyDoc {
  const p = PRESETS[name];
  if (p === undefined) throw new UnknownPresetError(name);
  return p.doc();
}

/** A preset, validated like a file named "preset:NAME". */
export function loadPreset(name: string): TopologySpec {
  return parseTopologyDoc(presetDoc(name), `preset:${name}`);
}
