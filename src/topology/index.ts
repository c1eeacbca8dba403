/**
 * Topologies: PCI and platform devices, requester IDs and DMA aliases, RID ->
 * stream ID through `iommu-map`, IOMMU groups, several SMMUs, and attaching
 * groups to host domains or VMs.
 */

import { existsSync, readFileSync } from 'node:fs';
import { TopologyError, parseTopology } from './file.js';
import type { ResolvedTopology, TopologySpec } from './model.js';
import { PRESETS, loadPreset } from './presets.js';
import { resolveTopology } from './resolve.js';

export * from './attach.js';
export * from './devices.js';
export * from './file.js';
export * from './generate.js';
export * from './model.js';
export * from './presets.js';
export * from './render.js';
export * from './resolve.js';
export * from './smr.js';

/** Reads and validates a topology file. Throws TopologyError (an unreadable file included). */
export function loadTopologyFile(file: string): TopologySpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TopologyError(file, [{ path: '$', problem: code === 'ENOENT' ? 'no such file' : `cannot read (${(e as Error).message})` }]);
  }
  return parseTopology(text, file);
}

export function resolveFile(file: string): ResolvedTopology {
  return resolveTopology(loadTopologyFile(file));
}

/**
 * A topology by preset name or file: the spec and where it came from
 * (`preset:NAME` or the file), or null when `t` is neither a preset nor an
 * existing file. Throws TopologyError for a file that is not a valid topology.
 */
export function loadTopologyNamed(t: string): { spec: TopologySpec; source: string } | null {
  if (Object.prototype.hasOwnProperty.call(PRESETS, t)) return { spec: loadPreset(t), source: `preset:${t}` };
  if (!existsSync(t)) return null;
  return { spec: loadTopologyFile(t), source: t };
}
