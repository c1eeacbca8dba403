/** `smmu-farm demo` (npm start): walks/s and descriptor reads per walk on the built-in nested configuration. */

import { cpus } from 'node:os';
import type { Regime } from '../pgtable/regime.js';
import { ACC_READ, WalkResult } from '../walk/result.js';
import { translate } from '../walk/walk.js';
import { buildNested4k1g } from '../workloads/nested-4k-1g.js';

export interface DemoOptions {
  seconds: number;
  fraction: number;
}

function measure(w: ReturnType<typeof buildNested4k1g>, regime: Regime, addrs: Float64Array, seconds: number): { walksPerSec: number; reads: number; faults: number } {
  const res = new WalkResult();
  const n = addrs.length;
  let reads = 0;
  let faults = 0;
  let walks = 0;
  // Warm up, then time whole batches until the time is spent.
  for (let i = 0; i < Math.min(n, 1 << 16); i++) translate(w.mem, regime, addrs[i]!, ACC_READ, res);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let c = 0;
  while (performance.now() < end) {
    for (let k = 0; k < 8192; k++) {
      if (!translate(w.mem, regime, addrs[c]!, ACC_READ, res)) faults++;
      reads += res.reads;
      c = c + 1 === n ? 0 : c + 1;
    }
    walks += 8192;
  }
  const secs = (performance.now() - t0) / 1000;
  return { walksPerSec: walks / secs, reads: reads / walks, faults };
}

export async function demoCommand(opts: DemoOptions): Promise<number> {
  if (!(opts.seconds > 0 && opts.seconds <= 60)) {
    process.stderr.write(`demo: --seconds must be in (0, 60], got ${opts.seconds}\n`);
    return 2;
  }
  if (!(opts.fraction > 0 && opts.fraction <= 1)) {
    process.stderr.write(`demo: --fraction must be in (0, 1], got ${opts.fraction}\n`);
    return 2;
  }
  const w = buildNested4k1g({ seed: 1, fraction: opts.fraction });
  const out = (l: string): boolean => process.stdout.write(l + '\n');
  out(`smmu-farm demo: nested-4k-1g (4 KiB granule, 4 levels at both stages, ${w.pages} pages of 4 KiB mapped in 16 chunks,`);
  out(`stage 2 onto random frames of 256 MiB; tables built in ${w.buildMs.toFixed(0)} ms). One thread, no caches, ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}.`);
  out('');
  const rows: Array<[string, Regime, Float64Array]> = [
    ['stage 1 only (VA->IPA)', w.s1only, w.vas],
    ['stage 2 only (IPA->PA)', w.s2only, w.ipas],
    ['nested (VA->IPA->PA)', w.nested, w.vas],
  ];
  out('| regime                 |    walks/s | ns/walk | descriptor reads/walk |');
  out('|------------------------|-----------:|--------:|----------------------:|');
  let bad = 0;
  for (const [name, regime, addrs] of rows) {
    const r = measure(w, regime, addrs, opts.seconds);
    bad += r.faults;
    out(`| ${name.padEnd(22)} | ${Math.round(r.walksPerSec).toLocaleString('en-US').padStart(10)} | ${(1e9 / r.walksPerSec).toFixed(1).padStart(7)} | ${r.reads.toFixed(2).padStart(21)} |`);
  }
  out('');
  out('A nested 4 KiB walk with 4 levels at both stages reads 24 descriptors: 4 stage-1 table fetches,');
  out('each behind a 4-level stage-2 walk (5 x 4 = 20), then 4 for the final IPA. See `npm run bench:walk` for the full benchmark.');
  if (bad > 0) {
    process.stderr.write(`demo: ${bad} walks faulted; the built-in configuration should translate every address\n`);
    return 1;
  }
  return 0;
}
