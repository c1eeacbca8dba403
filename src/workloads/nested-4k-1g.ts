/**
 * The `nested-4k-1g` workload: a guest with 1 GiB of device-visible VA, nested
 * translation with 4 KiB granules and 4 lookup levels at both stages.
 *
 * - Stage 1 (the guest's): T0SZ 16 (48-bit VA), 16 chunks of 64 MiB spread
 *   over the VA space (chunk i at i * 2^44, so each has its own level-0
 *   entry), mapped with 4 KiB pages onto randomly chosen IPA pages of a 4 GiB
 *   guest-RAM window. Its tables live at IPAs (a window that stage 2 maps
 *   1:1, so the same tables can also be walked with stage 2 off).
 * - Stage 2 (KVM's): VTCR.T0SZ 16, SL0 = 2 (start at level 0), 4 KiB pages;
 *   every guest IPA page maps onto a randomly chosen frame of 256 MiB of RAM.
 * - Queries: VAs drawn uniformly from the mapped 1 GiB, in random order.
 *
 * Deterministic for a given seed.
 */

import { PhysMem } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, PageTable } from '../pgtable/builder.js';
import { Regime, decodeStage1, decodeStage2, stage1Off } from '../pgtable/regime.js';
import { IpaTables, PhysTables } from '../pgtable/table-memory.js';

// mulberry32 now lives with the other workload generators; re-exported here for existing importers.
import { mulberry32 } from '../workload/rng.js';
export { mulberry32 };

export const NESTED_4K_1G = {
  chunks: 16,
  chunkBytes: 64 << 20,
  chunkStride: 2 ** 44,
  guestRamIpa: 0x1_0000_0000,
  guestRamBytes: 4 * 2 ** 30,
  guestTablesIpa: 0x4000_0000,
  guestTablesBytes: 16 << 20,
  hostTablesPa: 0x4100_0000,
  hostTablesBytes: 48 << 20,
  dataPa: 0x8000_0000,
  dataBytes: 256 << 20,
} as const;

export interface Nested4k1g {
  mem: PhysMem;
  stage1: PageTable;
  stage2: PageTable;
  /** Nested regime (stage 1 + stage 2). */
  nested: Regime;
  /** Stage 1 only (its tables are read at PA = IPA). */
  s1only: Regime;
  /** Stage 2 only. */
  s2only: Regime;
  /** Query VAs in random order, and the IPA each one maps to. */
  vas: Float64Array;
  ipas: Float64Array;
  /** Mapped pages. */
  pages: number;
  /** Milliseconds spent building tables. */
  buildMs: number;
}

export interface Nested4k1gOptions {
  seed?: number;
  /** Number of query addresses (default 1 << 20). */
  queries?: number;
  /** Scale the mapped VA down (1 = the full 1 GiB; tests use less). */
  fraction?: number;
}

interface NestedTables {
  mem: PhysMem;
  stage1: PageTable;
  stage2: PageTable;
  /** The IPA each mapped page got. */
  pageIpa: Float64Array;
}

/**
 * The nested machinery shared by the workloads: a guest stage 1 (tables at IPAs in a window
 * stage 2 maps 1:1 with 4 KiB pages) mapping page p at `vaOfPage(p)` onto a distinct random
 * IPA page of a 4 GiB guest-RAM window, and stage 2 mapping each of those onto a random frame
 * of 256 MiB of RAM.
 */
function buildNestedPages(pages: number, vaOfPage: (p: number) => number, rand: () => number): NestedTables {
  const W = NESTED_4K_1G;
  const mem = PhysMem.create({
    regions: [
      { base: W.guestTablesIpa, size: W.guestTablesBytes + W.hostTablesBytes, name: 'page tables' },
      { base: W.dataPa, size: W.dataBytes, name: 'data' },
    ],
  });
  const hostTables = new PhysTables(mem, W.hostTablesPa, W.hostTablesPa + W.hostTablesBytes);
  const stage2 = new PageTable({ stage: 2, granule: 4, ias: 48, oas: 48, tables: hostTables, vmid: 1 });
  // The guest's table window, 1:1 and with 4 KiB pages so every stage-1 table fetch is a 4-level stage-2 walk.
  for (let off = 0; off < W.guestTablesBytes; off += 4096) {
    stage2.map(W.guestTablesIpa + off, W.guestTablesIpa + off, 4096, PROT_READ | PROT_WRITE | PROT_CACHE);
  }
  const guestTables = new IpaTables(mem, stage2, W.guestTablesIpa, W.guestTablesIpa + W.guestTablesBytes);
  const stage1 = new PageTable({ stage: 1, granule: 4, ias: 48, oas: 48, tables: guestTables, asid: 1 });
  // Distinct random IPA pages of the guest-RAM window (rejection sampling on a bitmap).
  const ipaPages = W.guestRamBytes / 4096;
  if (pages > ipaPages / 2) throw new RangeError(`${pages} pages do not fit comfortably in the 4 GiB guest-RAM window`);
  const used = new Uint8Array(ipaPages / 8);
  const framePages = W.dataBytes / 4096;
  const pageIpa = new Float64Array(pages);
  for (let p = 0; p < pages; p++) {
    let n: number;
    do n = Math.floor(rand() * ipaPages);
    while ((used[n >> 3]! & (1 << (n & 7))) !== 0);
    used[n >> 3]! |= 1 << (n & 7);
    const ipa = W.guestRamIpa + n * 4096;
    pageIpa[p] = ipa;
    stage1.map(vaOfPage(p), ipa, 4096, PROT_READ | PROT_WRITE | PROT_CACHE);
    stage2.map(ipa, W.dataPa + Math.floor(rand() * framePages) * 4096, 4096, PROT_READ | PROT_WRITE | PROT_CACHE);
  }
  return { mem, stage1, stage2, pageIpa };
}

export interface NestedRegions {
  mem: PhysMem;
  stage1: PageTable;
  stage2: PageTable;
  nested: Regime;
  pages: number;
  buildMs: number;
}

/** Nested tables (as nested-4k-1g builds them) mapping every 4 KiB page of `regions`, e.g. a DMA workload's footprint. */
export function buildNestedRegions(regions: ReadonlyArray<{ base: number; size: number }>, seed = 1): NestedRegions {
  const t0 = performance.now();
  const starts: number[] = [];
  const firstPage: number[] = [];
  let pages = 0;
  for (const r of regions) {
    const base = Math.floor(r.base / 4096) * 4096;
    const end = Math.ceil((r.base + r.size) / 4096) * 4096;
    starts.push(base);
    firstPage.push(pages);
    pages += (end - base) / 4096;
  }
  const vaOfPage = (p: number): number => {
    let i = firstPage.length - 1;
    while (firstPage[i]! > p) i--;
    return starts[i]! + (p - firstPage[i]!) * 4096;
  };
  const t = buildNestedPages(pages, vaOfPage, mulberry32(seed));
  const nested = decodeStage2(t.stage2.stage2Fields(), decodeStage1(t.stage1.stage1Fields(), new Regime()));
  return { mem: t.mem, stage1: t.stage1, stage2: t.stage2, nested, pages, buildMs: performance.now() - t0 };
}

export function buildNested4k1g(opts: Nested4k1gOptions = {}): Nested4k1g {
  const t0 = performance.now();
  const W = NESTED_4K_1G;
  const rand = mulberry32(opts.seed ?? 1);
  const fraction = opts.fraction ?? 1;
  const chunkBytes = Math.max(4096, Math.floor((W.chunkBytes * fraction) / 4096) * 4096);
  const pagesPerChunk = chunkBytes / 4096;
  const pages = W.chunks * pagesPerChunk;
  const vaOf = (p: number): number => Math.floor(p / pagesPerChunk) * W.chunkStride + (p % pagesPerChunk) * 4096;
  const { mem, stage1, stage2, pageIpa } = buildNestedPages(pages, vaOf, rand);

  const nq = opts.queries ?? 1 << 20;
  const vas = new Float64Array(nq);
  const ipas = new Float64Array(nq);
  for (let i = 0; i < nq; i++) {
    const p = Math.floor(rand() * pages);
    const offset = Math.floor(rand() * 4096);
    vas[i] = vaOf(p) + offset;
    ipas[i] = pageIpa[p]! + offset;
  }

  const nested = decodeStage2(stage2.stage2Fields(), decodeStage1(stage1.stage1Fields(), new Regime()));
  const s1only = decodeStage1(stage1.stage1Fields(), new Regime());
  const s2only = stage1Off(decodeStage2(stage2.stage2Fields(), new Regime()));
  return { mem, stage1, stage2, nested, s1only, s2only, vas, ipas, pages, buildMs: performance.now() - t0 };
}
