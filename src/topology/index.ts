/**
 * Topologies: PCI and platform devices, requester IDs and DMA aliases, RID ->
 * stream ID through `iommu-map`, IOMMU groups, several SMMUs, and attaching
 * groups to host domains or VMs.
 */

import { existsSync, readFileSync } from 'node:fs';
import { TopologyError, parseTopology } from './file.js';
import type { ResolvedTopology, TopologySpec } from './model.js';
import { PRESETS, PRESET_NAMES, loadPreset } from './presets.js';
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

/** A topology name that is neither a preset nor an existing file. */
export class UnknownTopologyError extends Error {
  constructor(readonly topology: string) {
    super(`unknown topology "${topology}": not a preset (presets: ${PRESET_NAMES.join(', ')}) and no such file`);
    this.name = 'UnknownTopologyError';
  }
}

/**
 * A topology by preset name or file (or an already validated spec): the spec and where it
 * came from (`preset:NAME`, the file). Throws UnknownTopologyError when `t` is neither a
 * preset nor an existing file, and TopologyError for a file that is not a valid topology.
 */
export function loadTopologyNamed(t: string | TopologySpec): { spec: TopologySpec; source: string } {
  if (typeof t !== 'string') return { spec: t, source: t.file };
  if (Object.prototype.hasOwnProperty.call(PRESETS, t)) return { spec: loadPreset(t), source: `preset:${t}` };
  if (!existsSync(t)) throw new UnknownTopologyError(t);
  return { spec: loadTopologyFile(t), source: t };
}
