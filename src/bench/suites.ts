/**
 * The benchmark suites `smmu-farm bench` and `npm run profile` know: each
 * suite's compiled program under dist/bench/ and the base name of its
 * results files.
 */

export interface SuiteDef {
  name: string;
  description: string;
  /** The compiled benchmark program under dist/bench/ (none for `papers`). */
  program?: string;
  /** Base name of its results files in the output folder. */
  result: string;
  /**
   * Arguments that make the program do its measuring in the process `npm run profile` starts
   * (walk normally runs each variant in a child process, which a profiler of the parent misses).
   */
  profileArgs?: string[];
}

/** Implemented suites, in the order `all` runs them (`papers` last: it reads cache.json). */
export const SUITES: readonly SuiteDef[] = [
  { name: 'tables', program: 'tables', result: 'tables', description: 'shared CPU page tables vs private IOMMU tables at both stages: descriptor writes, TLBIs and syncs per change, table memory, throughput, and the time until every device sees a change (npm run bench:tables)' },
  { name: 'walk', program: 'walk', result: 'walk', profileArgs: ['--child', 'atomic'], description: 'ns and descriptor reads per walk: stage 1, stage 2 and nested on nested-4k-1g, for three descriptor-read constructions (npm run bench:walk)' },
  { name: 'atomics', program: 'atomic-read', result: 'atomic-read', description: 'ns per 64-bit descriptor read, tear-free and tearing constructions, random and cache-hot (npm run bench:atomics)' },
  { name: 'cache', program: 'cache', result: 'cache', description: 'TLB hit path, and descriptor reads, hit rate and ns per translation for every cache preset on three workloads (npm run bench:cache)' },
  { name: 'caches', program: 'caches', result: 'caches', description: 'the IOTLB cliff: TLB hit rate and reads per translation of a DMA ring against its footprint, 4 KiB vs 2 MiB pages (strategies and presets: see cache)' },
  { name: 'farm', program: 'farm', result: 'farm', description: 'farm throughput, speedup and efficiency for 1..N translation units (npm run bench:farm)' },
  { name: 'topology', program: 'topology', result: 'topology', description: 'set-up time (by phase), memory and throughput from the soc preset to hyperscale, with generated sizes between; how each grows with stream IDs (npm run bench:topology)' },
  { name: 'invalidation', program: 'invalidation', result: 'invalidation', description: 'strict vs batched vs deferred unmap invalidation through the farm; combined vs split entries under stage-2 changes (KVM\'s rule); fan-out of one change to many devices (npm run bench:invalidation)' },
  { name: 'papers', result: 'papers', description: 'PAPERS.md: our figures beside published ones (exact nested-walk reads; walk caches; reads cache.json for the rest)' },
];

/** The suite named `name`, if it is implemented. */
export function suiteNamed(name: string): SuiteDef | undefined {
  return SUITES.find((s) => s.name === name);
}
