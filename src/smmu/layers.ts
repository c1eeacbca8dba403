/**
 * Time per layer of the SMMU model's transaction path, on request (issue F
 * item 4: counters a user reads without a profiler). Set `Smmu.layers` to a
 * LayerClock and every `dma()` adds the time it spent in each layer:
 *
 *   stream match      SMR matching and the S2CR lookup (`streamIndex`)
 *   cache hit         a translation the caches answered without reading a
 *                     descriptor (TLB lookups only)
 *   walk              a translation that read descriptors: the cache lookups
 *                     that missed, the table walk and the fills
 *   fault handling    recording a context fault (FSR, FAR, FSYNR0, IPAFAR,
 *                     CBFRSYNRA), stalling, and running the interrupt handlers
 *
 * Times come from `performance.now()` around each layer; the cost of reading
 * the clock itself is measured once (`calibrate`) and taken off every timed
 * interval. With the clock off (`layers` null) the model pays one null check
 * per transaction.
 */

export class LayerClock {
  transactions = 0;
  totalMs = 0;
  streamMatchMs = 0;
  hits = 0;
  hitMs = 0;
  walks = 0;
  walkMs = 0;
  faults = 0;
  faultMs = 0;
  irqMs = 0;
  /** Timed intervals, each of which carries one clock read's cost. */
  intervals = 0;

  /** Mean cost of one `performance.now()` read in ms, measured over `n` reads. */
  static calibrate(n = 200_000): number {
    let sink = 0;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sink += performance.now();
    const t1 = performance.now();
    return sink === 0 ? 0 : (t1 - t0) / n;
  }
}

export interface LayerRow {
  layer: string;
  /** Transactions that went through the layer. */
  count: number;
  /** ns per transaction that went through it. */
  nsEach: number;
  /** ns per transaction, over all transactions: what the layer adds to the average. */
  nsPerTransaction: number;
  /** Share of the total time. */
  share: number;
}

/** The layer table of a clock: each layer's time with the clock's own cost taken off. */
export function layerRows(c: LayerClock, clockMs: number): LayerRow[] {
  const n = Math.max(1, c.transactions);
  const net = (ms: number, intervals: number): number => Math.max(0, ms - intervals * clockMs);
  // Each transaction: one interval for the whole, one for the stream match, one for the cache or walk, one for interrupts; faults one more.
  const total = net(c.totalMs, c.transactions * 4 + c.faults);
  const parts: Array<[string, number, number]> = [
    ['stream match (SMR, S2CR)', c.transactions, net(c.streamMatchMs, c.transactions)],
    ['cache hit (TLB lookups)', c.hits, net(c.hitMs, c.hits)],
    ['walk (lookups that missed, table walk, fills)', c.walks, net(c.walkMs, c.walks)],
    ['fault handling (FSR, FAR, FSYNR0 record, stall, interrupts)', c.faults, net(c.faultMs + c.irqMs, c.faults + c.transactions)],
  ];
  const accounted = parts.reduce((a, p) => a + p[2], 0);
  parts.push(['other (bank context, outcome, bookkeeping)', c.transactions, Math.max(0, total - accounted)]);
  const sum = parts.reduce((a, p) => a + p[2], 0);
  return parts.map(([layer, count, ms]) => ({
    layer,
    count,
    nsEach: count > 0 ? (ms * 1e6) / count : 0,
    nsPerTransaction: (ms * 1e6) / n,
    share: sum > 0 ? ms / sum : 0,
  }));
}
