/**
 * Stream-match entries for a set of stream IDs: (ID, MASK) pairs, where an SMR
 * matches every stream ID that equals ID in the bits MASK leaves clear (Arm IHI
 * 0062, 2.4 "Stream matching"). A power-of-two aligned block of 2^k IDs is one
 * SMR with MASK = 2^k - 1; masks need not be contiguous ({0x10, 0x30} is ID
 * 0x10 MASK 0x20).
 *
 * The cover is exact (an SMR never matches a stream ID outside the set: that
 * would capture another master's DMA) and disjoint (no stream ID matches two
 * entries: that is a stream match conflict, and the driver refuses overlapping
 * entries). Finding the fewest entries is a minimum exact cover by subcubes;
 * the greedy choice here takes the largest subcube (Quine-McCluskey merging)
 * of what is left, which is optimal for aligned blocks and unions of them. Sets
 * larger than 256 IDs are split into maximal aligned blocks instead.
 *
 * Linux's arm-smmu gives each PCI stream ID its own SMR (mask 0; masks come
 * only from a device tree's second `iommus` cell); folding IDs into masked
 * entries is this workbench's choice, to stretch the SMRs, and attach can be
 * told not to (`useMasks: false`).
 */

import { fmtHex, type IommuGroup, type ResolvedTopology } from './model.js';

export interface SmrEntry {
  id: number;
  mask: number;
}

const GREEDY_LIMIT = 256;

/** Stream IDs an entry matches, how many. */
export function entrySize(e: SmrEntry): number {
  let n = 1;
  for (let m = e.mask; m !== 0; m &= m - 1) n *= 2;
  return n;
}

export function entryMatches(e: SmrEntry, sid: number): boolean {
  return ((sid ^ e.id) & ~e.mask) === 0;
}

export function fmtEntry(e: SmrEntry): string {
  return e.mask === 0 ? fmtHex(e.id) : `${fmtHex(e.id)}/${fmtHex(e.mask)}`;
}

/** Maximal power-of-two aligned blocks of a sorted, distinct list, each no wider than `maskLimit` allows. */
export function alignedBlocks(sorted: number[], maskLimit: number): SmrEntry[] {
  const out: SmrEntry[] = [];
  let i = 0;
  while (i < sorted.length) {
    const s = sorted[i]!;
    let size = 1;
    for (;;) {
      const next = size * 2;
      if (s % next !== 0 || ((next - 1) & ~maskLimit) !== 0 || i + next - 1 >= sorted.length || sorted[i + next - 1] !== s + next - 1) break;
      size = next;
    }
    out.push({ id: s, mask: size - 1 });
    i += size;
  }
  return out;
}

/** The largest subcube of `set` (lowest ID, then smallest mask, among the largest), masks within maskLimit. */
function largestCube(set: Set<number>, maskLimit: number): SmrEntry {
  let level = new Map<number, Set<number>>([[0, set]]);
  const bits: number[] = [];
  for (let b = 1; b <= maskLimit && b !== 0; b <<= 1) if ((maskLimit & b) !== 0) bits.push(b);
  for (;;) {
    const next = new Map<number, Set<number>>();
    for (const [mask, ids] of level) {
      for (const id of ids) {
        for (const b of bits) {
          if ((mask & b) !== 0 || (id & b) !== 0 || !ids.has(id | b)) continue;
          const m = mask | b;
          let s = next.get(m);
          if (s === undefined) next.set(m, (s = new Set()));
          s.add(id);
        }
      }
    }
    if (next.size === 0) break;
    level = next;
  }
  let best: SmrEntry | null = null;
  for (const [mask, ids] of level) {
    for (const id of ids) {
      if (best === null || id < best.id || (id === best.id && mask < best.mask)) best = { id, mask };
    }
  }
  return best!;
}

/**
 * An exact, disjoint set of stream-match entries covering `sids`, sorted by ID.
 * `maskLimit`: the SMR.MASK bits the SMMU implements.
 */
export function coverStreamIds(sids: Iterable<number>, maskLimit = 0x7fff): SmrEntry[] {
  let rem = [...new Set(sids)].sort((a, b) => a - b);
  const out: SmrEntry[] = [];
  while (rem.length > 0) {
    if (rem.length > GREEDY_LIMIT) {
      out.push(...alignedBlocks(rem, maskLimit));
      break;
    }
    const e = largestCube(new Set(rem), maskLimit);
    out.push(e);
    rem = rem.filter((s) => !entryMatches(e, s));
  }
  return out.sort((a, b) => a.id - b.id);
}

export interface SmmuSmrPlan {
  smmu: string;
  streamMatching: boolean;
  /** IDR0.NUMSMRG (stream matching) or 2^NUMSIDB S2CRs (stream indexing). */
  entries: number;
  streamIds: number;
  groups: number;
  /** Stream-map entries to attach every group at once: with masks, and one per stream ID. */
  needMasked: number;
  needUnmasked: number;
}

/** What attaching every group at once would take, per SMMU (groups on several SMMUs are left out). */
export function planSmrs(t: ResolvedTopology): SmmuSmrPlan[] {
  return t.spec.smmus.map((s) => {
    const groups = t.groups.filter((g: IommuGroup) => g.smmus.length === 1 && g.smmus[0] === s.name);
    let masked = 0;
    let ids = 0;
    const maskLimit = (1 << s.features.numSidB) - 1;
    for (const g of groups) {
      ids += g.streams.length;
      masked += s.features.sms ? coverStreamIds(g.streams.map((x) => x.sid), maskLimit).length : g.streams.length;
    }
    return {
      smmu: s.name,
      streamMatching: s.features.sms,
      entries: s.features.sms ? s.features.numSmrg : s.features.numS2cr,
      streamIds: t.streamOwners.get(s.name)!.size,
      groups: groups.length,
      needMasked: masked,
      needUnmasked: ids,
    };
  });
}
