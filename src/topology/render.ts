/**
 * Presenting a resolved topology: a readable tree (SMMUs, host bridges and
 * their iommu-maps, the PCI tree with RIDs, aliases, stream IDs and groups,
 * platform devices, shared groups with the reasons, diagnostics), and the
 * resolved mapping as JSON.
 */

import { aliasWords } from './resolve.js';
import { fmtHex, fmtRid, type IommuGroup, type Master, type PciFunction, type ResolvedTopology, type StreamRef } from './model.js';
import { fmtEntry, planSmrs } from './smr.js';

/** "0x10-0x13, 0x20" */
export function fmtSidRanges(sids: number[]): string {
  const s = [...new Set(sids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    parts.push(j === i ? fmtHex(s[i]!) : `${fmtHex(s[i]!)}-${fmtHex(s[j]!)}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/** "smmu0 0x10-0x13; smmu1 0x4" */
export function fmtStreams(streams: StreamRef[]): string {
  const by = new Map<string, number[]>();
  for (const s of streams) {
    let l = by.get(s.smmu);
    if (l === undefined) by.set(s.smmu, (l = []));
    l.push(s.sid);
  }
  return [...by].map(([smmu, sids]) => `${smmu} ${fmtSidRanges(sids)}`).join('; ');
}

function plural(n: number, word: string, many = word + 's'): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? word : many}`;
}

function busRange(lo: number, hi: number): string {
  const h = (n: number): string => n.toString(16).padStart(2, '0');
  return lo === hi ? `bus ${h(lo)}` : `buses ${h(lo)}-${h(hi)}`;
}

function functionLine(f: PciFunction): string {
  const flags: string[] = [];
  if (f.secondary >= 0) flags.push(busRange(f.secondary, f.subordinate));
  if (f.type === 'root-port' || f.type === 'downstream-port' || f.multifunction) flags.push(f.acsEnabled ? 'ACS' : 'no ACS');
  let s = `${f.bdf} ${f.type} ${f.name}${flags.length > 0 ? ` [${flags.join(', ')}]` : ''}  RID ${fmtRid(f.rid)}`;
  // Aliases other than the own RID (pci_for_each_dma_alias may repeat a RID; it is listed once).
  const extra = f.aliases.filter((a, i) => a.rid !== f.rid && f.aliases.findIndex((b) => b.rid === a.rid) === i);
  if (extra.length > 0) {
    s += `, aliases ${extra.map((a) => `${fmtRid(a.rid)} (${a.reason === 'quirk' ? 'quirk' : `${a.reason} ${a.by.bdf}`})`).join(', ')}`;
  }
  const mapped = f.aliases.filter((a) => a.stream !== null);
  const unmapped = f.aliases.filter((a) => a.stream === null);
  s += ' -> ';
  s += mapped.length > 0 ? fmtStreams(f.streams) : 'no stream ID';
  if (unmapped.length > 0) s += ` (UNMAPPED: ${unmapped.map((a) => fmtRid(a.rid)).join(', ')})`;
  s += `  group ${f.group.id}`;
  return s;
}

export interface RenderOptions {
  /** Leave out the per-function tree (for huge topologies). */
  summary?: boolean;
}

/** The readable tree, as lines. */
export function renderTopology(t: ResolvedTopology, opts: RenderOptions = {}): string[] {
  const out: string[] = [];
  const spec = t.spec;
  const sids = [...t.streamOwners.values()].reduce((n, m) => n + m.size, 0);
  out.push(
    `topology "${spec.name}" (${spec.file}): ${plural(spec.smmus.length, 'SMMU')}, ${plural(spec.hostBridges.length, 'host bridge')}, ` +
      `${plural(t.functions.length, 'PCI function')}, ${plural(t.platformDevices.length, 'platform device')}; ` +
      `${plural(sids, 'stream ID')}, ${plural(t.groups.length, 'IOMMU group')}`,
  );
  out.push('');
  out.push('SMMUs');
  const plans = planSmrs(t);
  for (const s of spec.smmus) {
    const f = s.features;
    const p = plans.find((x) => x.smmu === s.name)!;
    const stages = [f.s1ts ? 's1' : '', f.s2ts ? 's2' : '', f.nts ? 'nested' : ''].filter((x) => x !== '').join('+');
    const matching = f.sms ? `stream matching, ${f.numSmrg} SMRs` : `stream indexing, ${f.numS2cr} S2CRs`;
    out.push(`  ${s.name}: ${matching}, ${f.numSidB}-bit stream IDs, ${f.numCb} context banks (${f.numS2Cb} stage-2 only), ${stages}`);
    let use = `    ${plural(p.streamIds, 'stream ID')} in use, ${plural(p.groups, 'group')}`;
    if (f.sms && p.groups > 0) {
      const fits = p.needMasked <= f.numSmrg;
      use += `; attaching every group takes ${plural(p.needMasked, 'SMR')} with masks (${p.needUnmasked} without)${fits ? '' : `: more than the ${f.numSmrg} there are`}`;
    }
    out.push(use);
  }
  for (const hb of spec.hostBridges) {
    out.push('');
    out.push(`Host bridge ${hb.name}: segment ${hb.segment.toString(16).padStart(4, '0')}, ${busRange(hb.busStart, hb.busEnd)}`);
    if (!hb.hasIommuMap) out.push('  iommu-map: none (nothing below is translated)');
    else {
      if (hb.iommuMapMask !== 0xffffffff) out.push(`  iommu-map-mask: ${fmtHex(hb.iommuMapMask)}`);
      hb.iommuMap.forEach((e, i) => {
        const rids = e.length === 1 ? fmtRid(e.ridBase) : `${fmtRid(e.ridBase)}-${fmtRid(e.ridBase + e.length - 1)}`;
        const out2 = e.length === 1 ? fmtHex(e.sidBase) : `${fmtHex(e.sidBase)}-${fmtHex(e.sidBase + e.length - 1)}`;
        out.push(`  ${i === 0 ? 'iommu-map:' : '          '} RIDs ${rids} -> ${e.smmu} ${out2}`);
      });
    }
    if (!opts.summary) {
      const walk = (f: PciFunction, depth: number): void => {
        out.push(`${'  '.repeat(depth + 1)}${functionLine(f)}`);
        for (const c of f.children) walk(c, depth + 1);
      };
      for (const f of t.functions) if (f.hostBridge === hb && f.parent === null) walk(f, 0);
    } else {
      out.push(`  ${plural(t.functions.filter((f) => f.hostBridge === hb).length, 'PCI function')}`);
    }
  }
  if (t.platformDevices.length > 0) {
    out.push('');
    out.push('Platform devices');
    if (!opts.summary) {
      const w = Math.max(...t.platformDevices.map((d) => d.name.length));
      for (const d of t.platformDevices) {
        const specs = d.spec.iommus.map((e) => `${e.smmu} ${fmtEntry({ id: e.sid, mask: e.mask })}`).join(', ');
        out.push(`  ${d.name.padEnd(w)}  iommus ${specs} -> ${fmtStreams(d.streams)}  group ${d.group.id}`);
      }
    } else out.push(`  ${plural(t.platformDevices.length, 'platform device')}`);
  }
  const shared = t.groups.filter((g) => g.members.length > 1);
  out.push('');
  out.push(`IOMMU groups: ${t.groups.length} (${t.groups.length - shared.length} of one device, ${shared.length} shared)`);
  const shown = opts.summary ? shared.slice(0, 20) : shared;
  for (const g of shown) out.push(...groupLines(g));
  if (shown.length < shared.length) out.push(`  ... and ${shared.length - shown.length} more shared groups`);
  out.push('');
  const errors = t.diagnostics.filter((d) => d.severity === 'error').length;
  const warnings = t.diagnostics.length - errors;
  if (t.diagnostics.length === 0) out.push('Diagnostics: none (every requester ID maps to a stream ID)');
  else {
    out.push(`Diagnostics: ${plural(errors, 'error')}, ${plural(warnings, 'warning')}`);
    for (const d of t.diagnostics) out.push(`  ${d.severity} ${d.kind}: ${d.message}`);
  }
  return out;
}

function memberWord(m: Master): string {
  return m.kind === 'pci' ? `${m.bdf} ${m.name}` : m.name;
}

function groupLines(g: IommuGroup): string[] {
  const lines = [`  group ${g.id}: ${fmtStreams(g.streams) || 'no stream IDs'}; ${g.members.map(memberWord).join(', ')}`];
  for (const r of g.reasons) lines.push(`    because: ${r}`);
  return lines;
}

// ------------------------------------------------------------------ JSON

export const RESOLVED_FORMAT = 'smmu-topology-resolved/1';

/** The resolved mapping as plain JSON-able data. */
export function resolvedJson(t: ResolvedTopology): unknown {
  const plans = planSmrs(t);
  return {
    format: RESOLVED_FORMAT,
    name: t.spec.name,
    source: t.spec.file,
    smmus: t.spec.smmus.map((s) => {
      const p = plans.find((x) => x.smmu === s.name)!;
      return {
        name: s.name,
        ids: { id0: fmtHex(s.ids.id0), id1: fmtHex(s.ids.id1), id2: fmtHex(s.ids.id2) },
        streamMatching: s.features.sms,
        smrs: s.features.sms ? s.features.numSmrg : 0,
        sidBits: s.features.numSidB,
        contextBanks: s.features.numCb,
        s2OnlyBanks: s.features.numS2Cb,
        nested: s.features.nts,
        streamIds: p.streamIds,
        groups: p.groups,
        smrsToAttachAll: { masked: p.needMasked, unmasked: p.needUnmasked },
      };
    }),
    hostBridges: t.spec.hostBridges.map((hb) => ({
      name: hb.name,
      segment: hb.segment,
      busRange: [hb.busStart, hb.busEnd],
      iommuMap: hb.hasIommuMap ? hb.iommuMap.map((e) => ({ ridBase: e.ridBase, smmu: e.smmu, sidBase: e.sidBase, length: e.length })) : null,
      iommuMapMask: hb.iommuMapMask,
    })),
    functions: t.functions.map((f) => ({
      bdf: f.bdf,
      name: f.name,
      type: f.type,
      hostBridge: f.hostBridge.name,
      segment: f.segment,
      bus: f.bus,
      device: f.device,
      function: f.function,
      rid: f.rid,
      parent: f.parent?.bdf ?? null,
      ...(f.secondary >= 0 ? { secondary: f.secondary, subordinate: f.subordinate } : {}),
      multifunction: f.multifunction,
      acs: f.acsEnabled,
      aliases: f.aliases.map((a) => ({ rid: a.rid, by: a.by.bdf, reason: a.reason, why: aliasWords(a.reason), smmu: a.stream?.smmu ?? null, sid: a.stream?.sid ?? null })),
      streams: f.streams.map((s) => ({ smmu: s.smmu, sid: s.sid })),
      group: f.group.id,
    })),
    platformDevices: t.platformDevices.map((d) => ({
      name: d.name,
      iommus: d.spec.iommus.map((e) => ({ smmu: e.smmu, sid: e.sid, mask: e.mask })),
      streams: d.streams.map((s) => ({ smmu: s.smmu, sid: s.sid })),
      group: d.group.id,
    })),
    groups: t.groups.map((g) => ({
      id: g.id,
      smmus: g.smmus,
      streams: g.streams.map((s) => ({ smmu: s.smmu, sid: s.sid })),
      members: g.members.map((m) => (m.kind === 'pci' ? m.bdf : m.name)),
      reasons: g.reasons,
    })),
    diagnostics: t.diagnostics.map((d) => ({ ...d })),
  };
}


