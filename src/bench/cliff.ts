/**
 * The IOTLB cliff (issue F, `caches` suite): TLB hit rate and descriptor reads
 * per translation for a DMA ring as its footprint grows past the TLB's reach
 * (entries x page size), with 4 KiB and with 2 MiB pages at both stages.
 *
 * The ring is a NIC-style receive ring of 2 KiB buffers, used in order, lap
 * after lap: one translation per buffer, so two buffers share a 4 KiB page.
 * Past the reach, a TLB that keeps the most recently used pages holds none of
 * the next lap's, and only the second buffer of each page hits: the hit rate
 * falls from 100% to about 50%. With 2 MiB pages the reach is 512 times larger
 * and the cliff moves out of the range measured here.
 *
 * Tables: a guest stage 1 (4 KiB granule, 48-bit VA, tables at IPAs) over a
 * KVM stage 2 (4 KiB granule, 48-bit IPA), both mapping the ring with leaves
 * of the chosen size; stage 2 maps the guest's table window with 4 KiB pages.
 * Every translation is checked to land where the tables say.
 */

import { TranslationCaches, type CacheConfig } from '../cache/caches.js';
import { PhysMem } from '../memory/phys.js';
import { PROT_CACHE, PROT_READ, PROT_WRITE, PageTable, createGuestStage1 } from '../pgtable/builder.js';
import { Regime, decodeStage1, decodeStage2 } from '../pgtable/regime.js';
import { PhysTables } from '../pgtable/table-memory.js';
import { ACC_READ, WalkResult } from '../walk/result.js';

export type CliffPage = '4K' | '2M';
const PAGE_BYTES: Record<CliffPage, number> = { '4K': 4096, '2M': 2 << 20 };

/** Bytes per ring buffer (one translation each). */
export const CLIFF_BUFFER = 2048;

const RING_VA = 0x80_0000_0000; // 512 GiB
const RING_IPA = 0x1_0000_0000; // 4 GiB
const RING_PA = 0x2_0000_0000; // 8 GiB: never read, so not backed by memory
const GUEST_TABLES = 0x4000_0000; // IPA = PA of the guest's table pages
const GUEST_TABLES_BYTES = 8 << 20;
const HOST_TABLES = 0x1000_0000;
const HOST_TABLES_BYTES = 8 << 20;

export interface CliffTables {
  page: CliffPage;
  mem: PhysMem;
  nested: Regime;
  /** Bytes of ring mapped (from RING_VA). */
  mapped: number;
  buildMs: number;
}

/** Nested tables mapping `bytes` of ring (a multiple of the page size) with `page` leaves at both stages. */
export function buildCliffTables(page: CliffPage, bytes: number): CliffTables {
  const step = PAGE_BYTES[page];
  if (!(bytes > 0 && bytes % step === 0 && bytes <= 2 ** 30)) throw new RangeError(`ring footprint ${bytes}: expected a multiple of ${step} up to 1 GiB`);
  const t0 = performance.now();
  const mem = PhysMem.create({
    regions: [
      { base: GUEST_TABLES, size: GUEST_TABLES_BYTES, name: 'guest tables' },
      { base: HOST_TABLES, size: HOST_TABLES_BYTES, name: 'host tables' },
    ],
  });
  const prot = PROT_READ | PROT_WRITE | PROT_CACHE;
  const stage2 = new PageTable({ stage: 2, granule: 4, ias: 48, oas: 48, tables: new PhysTables(mem, HOST_TABLES, HOST_TABLES + HOST_TABLES_BYTES), vmid: 1 });
  for (let off = 0; off < GUEST_TABLES_BYTES; off += 4096) stage2.map(GUEST_TABLES + off, GUEST_TABLES + off, 4096, prot);
  const stage1 = createGuestStage1(mem, stage2, GUEST_TABLES, GUEST_TABLES + GUEST_TABLES_BYTES, { granule: 4, ias: 48, oas: 48 }, 1);
  for (let off = 0; off < bytes; off += step) {
    stage2.map(RING_IPA + off, RING_PA + off, step, prot);
    stage1.map(RING_VA + off, RING_IPA + off, step, prot);
  }
  const nested = decodeStage2(stage2.stage2Fields(), decodeStage1(stage1.stage1Fields(), new Regime()));
  return { page, mem, nested, mapped: bytes, buildMs: performance.now() - t0 };
}

export interface CliffPoint {
  page: CliffPage;
  footprintBytes: number;
  /** Translations in the measured lap(s) (after one warm-up lap). */
  translations: number;
  hitRate: number;
  readsPerTranslation: number;
}

/**
 * Runs the ring of `footprintBytes` (at most the tables' mapping) through fresh caches of
 * `config`: one warm-up lap, then `translations` more (at least one lap), counted.
 * Throws if any translation faults or lands at the wrong PA.
 */
export function ringPoint(t: CliffTables, config: CacheConfig, footprintBytes: number, translations?: number): CliffPoint {
  if (!(footprintBytes > 0 && footprintBytes <= t.mapped && footprintBytes % CLIFF_BUFFER === 0)) {
    throw new RangeError(`ring footprint ${footprintBytes}: expected a multiple of ${CLIFF_BUFFER} up to the ${t.mapped} bytes mapped`);
  }
  const buffers = footprintBytes / CLIFF_BUFFER;
  const n = translations ?? buffers;
  const c = new TranslationCaches(config);
  const res = new WalkResult();
  const run = (count: number, check: boolean): void => {
    let b = 0;
    for (let i = 0; i < count; i++) {
      const off = b * CLIFF_BUFFER + 64;
      c.translate(t.mem, t.nested, 0, 0, RING_VA + off, ACC_READ, res);
      if (check && (res.fault !== 0 || res.pa !== RING_PA + off)) {
        throw new Error(`ring (${t.page} pages): VA 0x${(RING_VA + off).toString(16)} gave ${res.fault !== 0 ? `fault ${res.fault}` : `PA 0x${res.pa.toString(16)}`}, expected PA 0x${(RING_PA + off).toString(16)}`);
      }
      b = b + 1 === buffers ? 0 : b + 1;
    }
  };
  run(buffers, true);
  const before = { ...c.stats };
  run(n, false);
  return {
    page: t.page,
    footprintBytes,
    translations: n,
    hitRate: (c.stats.hits - before.hits) / n,
    readsPerTranslation: (c.stats.descriptorReads - before.descriptorReads) / n,
  };
}
